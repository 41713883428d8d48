"""LabelTable: one rule for every painter of label maps (merges allowed, 0 refused)."""

from __future__ import annotations

import numpy as np
import pytest

from medmask import LabelMapping
from medmask.errors import MaskNotFoundError, MaskValidationError
from medmask.labeltable import LabelTable


def test_a_merge_is_one_label_for_several_names():
    t = LabelTable({"liver": 1, "kidney_left": 3, "kidney_right": 3})
    assert t.labels() == [1, 3]
    assert t.names_of(3) == ("kidney_left", "kidney_right")
    assert t.merges() == {3: ("kidney_left", "kidney_right")}
    assert not t.is_one_to_one
    assert t.max_label() == 3
    assert t.channel_of("kidney_right") == 1 and t.channel_of("liver") == 0
    # one entry per label for consumers such as nnU-Net's dataset.json
    assert t.class_table() == {"liver": 1, "kidney_left+kidney_right": 3}
    named = LabelTable(t, class_names={3: "kidney"})
    assert named.class_table() == {"liver": 1, "kidney": 3}
    assert LabelTable(named) == named and LabelTable(named).class_name(3) == "kidney"


def test_built_from_a_list_a_mapping_or_a_label_mapping():
    assert LabelTable(["liver", "spleen"]).to_dict() == {"liver": 1, "spleen": 2}
    assert LabelTable(LabelMapping({"a": 4, "b": 2})).to_dict() == {"a": 4, "b": 2}
    assert (
        LabelTable({"a": np.int64(7)})["a"] == 7
        and type(LabelTable({"a": np.uint8(7)})["a"]) is int
    )
    assert len(LabelTable()) == 0 and LabelTable().max_label() == 0
    assert LabelTable(n for n in ["x", "y"])["y"] == 2


@pytest.mark.parametrize(
    "table, words",
    [
        ({"liver": 0}, "background"),
        ({"liver": -2}, "positive"),
        ({"liver": True}, "integer"),
        ({"liver": 1.0}, "integer"),
        ({"liver": "1"}, "integer"),
        ({"": 1}, "empty"),
        ({3: 1}, "strings"),
        (["liver", "spleen", "liver"], "more than once"),
        ("liver", r"pass \['liver'\]"),
        (42, "mapping"),
        ({"big": 2**64}, "64 bits"),
    ],
)
def test_bad_tables_are_refused(table, words):
    with pytest.raises(MaskValidationError, match=words):
        LabelTable(table)


def test_class_names_are_checked():
    t = {"a": 1, "b": 2}
    with pytest.raises(MaskValidationError, match="no name of the table uses"):
        LabelTable(t, class_names={5: "x"})
    with pytest.raises(MaskValidationError, match="given to labels 1 and 2"):
        LabelTable(t, class_names={1: "x", 2: "x"})
    with pytest.raises(MaskValidationError, match="non-empty"):
        LabelTable(t, class_names={1: ""})


def test_splitting_a_label_map_needs_one_name_per_label():
    assert LabelTable({"a": 1, "b": 2}).require_one_to_one() is not None
    with pytest.raises(MaskValidationError, match="cannot be split") as err:
        LabelTable({"a": 1, "b": 1}).require_one_to_one(where="labels.json")
    assert err.value.path == "labels.json"


@pytest.mark.parametrize(
    "top, plain, torch_safe",
    [
        (1, "uint8", "uint8"),
        (255, "uint8", "uint8"),
        (256, "uint16", "int16"),
        (32767, "uint16", "int16"),
        (32768, "uint16", "int32"),
        (65536, "uint32", "int32"),
        (2**31, "uint32", "int64"),
        (2**32, "uint64", "int64"),
    ],
)
def test_smallest_dtype_holds_the_largest_label(top, plain, torch_safe):
    t = LabelTable({"a": 1, "b": top})
    assert t.smallest_dtype() == np.dtype(plain)
    assert t.smallest_dtype(torch_safe=True) == np.dtype(torch_safe)
    assert np.iinfo(t.smallest_dtype()).max >= top


def test_torch_safe_refuses_what_int64_cannot_hold():
    with pytest.raises(MaskValidationError, match="torch-safe"):
        LabelTable({"a": 2**63}).smallest_dtype(torch_safe=True)


def test_lookups_json_subset_equality():
    t = LabelTable({"liver": 1, "kidney_left": 2, "kidney_right": 2}, class_names={2: "kidney"})
    with pytest.raises(MaskNotFoundError, match="did you mean: 'liver'"):
        t["livr"]
    with pytest.raises(MaskNotFoundError, match="labels: \\[1, 2\\]"):
        t.names_of(9)
    assert LabelTable.from_json(t.to_json()) == t.to_dict()
    assert LabelTable.from_json('["a", "b"]').to_dict() == {"a": 1, "b": 2}
    with pytest.raises(MaskValidationError, match="not valid JSON"):
        LabelTable.from_json("{")
    with pytest.raises(MaskValidationError, match="object or a list"):
        LabelTable.from_json("3")
    sub = t.subset(["kidney_right", "nothing"])
    assert sub.to_dict() == {"kidney_right": 2} and sub.class_name(2) == "kidney"
    assert t == {"liver": 1, "kidney_left": 2, "kidney_right": 2}
    assert hash(t) == hash(LabelTable(t)) and t != LabelTable(t.to_dict())
    assert "kidney" in repr(t) and "liver" in t and list(t) == t.names()
    with pytest.raises(TypeError):
        t["spleen"] = 3  # immutable
