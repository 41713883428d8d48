"""medmask.conversions.labels: label tables in the forms people keep them, and
TotalSegmentator's names extension."""

from __future__ import annotations

import json

import pytest

from medmask.conversions.labels import (
    MAX_TABLE_BYTES,
    caret_xml,
    check_table_covers,
    default_color,
    labels_arg,
    nnunet_dataset_json,
    parse_caret_xml,
    read_label_table,
    read_label_table_attrs,
)
from medmask.errors import MaskValidationError
from medmask.labeltable import LabelTable


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("text", "table"),
    [
        ('{"liver": 1, "spleen": 5}', {"liver": 1, "spleen": 5}),
        ('{"1": "liver", "5": "spleen", "0": "background"}', {"liver": 1, "spleen": 5}),
        ('["liver", "spleen"]', {"liver": 1, "spleen": 2}),
        ('{"labels": {"background": 0, "liver": 1, "spleen": 2}}', {"liver": 1, "spleen": 2}),
        ('{"labels": {"0": "background", "1": "liver", "2": "spleen"}}', {"liver": 1, "spleen": 2}),
        ("# organs\n1 liver\n5 spleen\n", {"liver": 1, "spleen": 5}),
        ("1,liver\n2,left kidney\n", {"liver": 1, "left kidney": 2}),
        ("liver\nspleen\n", {"liver": 1, "spleen": 2}),
        ('\ufeff{"liver": 3}', {"liver": 3}),  # a UTF-8 byte order mark is fine
    ],
)
def test_every_form_reads_to_the_same_kind_of_table(tmp_path, text, table):
    assert read_label_table(write(tmp_path, "t.txt", text)) == table


def test_itksnap_files_keep_colours_and_drop_clear_label(tmp_path):
    text = (
        "# ITK-SnAP Label Description File\n"
        '    0     0    0    0        0  0  0    "Clear Label"\n'
        '    1   255    0    0        1  1  1    "liver"\n'
        '    2     0  255  300        1  1  1    "left kidney"\n'
    )
    table, attrs = read_label_table_attrs(write(tmp_path, "l.txt", text))
    assert table == {"liver": 1, "left kidney": 2}
    assert attrs == {"liver": {"color": [255, 0, 0]}, "left kidney": {"color": [0, 255, 255]}}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"liver": -1, "spleen": 1}', "label of 'liver' must be positive"),
        ('{"liver": 0}', "0, the background"),
        ('{"labels": {"background": 0, "liver": [1, 2]}}', "nnU-Net region"),
        ("[1, 2]", "names"),
        ('{"1": 2}', "map to names"),
        ("7", "JSON object or list"),
        ("1 liver\n2 liver\n", "appears twice"),
        ('# ITK-SNAP\n  1 255 0 0 1 1 1 "a"\nnot a line\n', "ITK-SNAP label line"),
    ],
)
def test_bad_tables_are_refused_with_the_file_named(tmp_path, text, match):
    p = write(tmp_path, "bad.json", text)
    with pytest.raises(MaskValidationError, match=match) as info:
        read_label_table(p)
    assert "bad.json" in str(info.value)


def test_huge_and_binary_files_are_not_tables(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (MAX_TABLE_BYTES + 1))
    with pytest.raises(MaskValidationError, match="too large"):
        read_label_table(big)
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00liver")
    with pytest.raises(MaskValidationError, match="UTF-8"):
        read_label_table(binary)
    with pytest.raises(OSError):
        read_label_table(tmp_path / "missing.json")


def test_labels_arg_takes_mappings_and_files(tmp_path):
    assert labels_arg({"liver": 1}) == {"liver": 1}
    assert labels_arg(write(tmp_path, "t.json", '["a", "b"]')) == {"a": 1, "b": 2}
    with pytest.raises(MaskValidationError):
        labels_arg({"a": 0})


def test_a_merge_is_one_table_everywhere_and_refused_only_where_a_label_map_is_split(tmp_path):
    """One rule (LabelTable): names may share a label when a table is read or given; the
    readers that split a label map into masks refuse it, naming the label and the names."""
    merged = '{"kidney_left": 3, "kidney_right": 3, "liver": 1}'
    for table in (
        labels_arg({"kidney_left": 3, "kidney_right": 3}),
        read_label_table(write(tmp_path, "m.json", merged)),
    ):
        assert isinstance(table, LabelTable) and table.merges() == {
            3: ("kidney_left", "kidney_right")
        }
    with pytest.raises(MaskValidationError, match=r"label 3 is given to 2 names") as err:
        read_label_table(tmp_path / "m.json").require_one_to_one(tmp_path / "m.json")
    assert "m.json" in str(err.value)


def test_check_table_covers_names_what_would_be_lost():
    assert check_table_covers("f", [1, 2], {"a": 1, "b": 2}) == []
    with pytest.raises(MaskValidationError, match=r"f: labels \[3, 7\].*--drop-unlisted"):
        check_table_covers("f", [1, 3, 7], {"a": 1})
    assert check_table_covers("f", [1, 3, 7], {"a": 1}, drop_unlisted=True) == [3, 7]


def test_caret_xml_round_trip_with_colours_and_odd_names():
    table = {"liver": 1, "a]]>b": 2, "rib_left_1": 17}
    colors = {"liver": [255, 0, 0]}
    got, attrs = parse_caret_xml(caret_xml(table, colors))
    assert got == table
    assert attrs["liver"] == {"color": [255, 0, 0]}
    assert attrs["rib_left_1"]["color"] == default_color(2)  # the fixed palette
    assert default_color(2) == default_color(2) and default_color(2) != default_color(3)


@pytest.mark.parametrize(
    ("xml", "match"),
    [
        (b'<!DOCTYPE x [<!ENTITY e "boom">]><CaretExtension/>', "DTD or entities"),
        (b"<CaretExtension><Label", "not well formed"),
        (b'<CaretExtension><Label Key="x">a</Label></CaretExtension>', "not an integer"),
        (
            b'<CaretExtension><Label Key="1">a</Label><Label Key="2">a</Label></CaretExtension>',
            "given to labels",
        ),
    ],
)
def test_hostile_caret_xml_is_refused(xml, match):
    with pytest.raises(MaskValidationError, match=match):
        parse_caret_xml(xml, where="x.nii.gz")


def test_caret_xml_without_labels_and_background_only():
    assert parse_caret_xml(b"<CaretExtension/>") == ({}, {})
    table, _ = parse_caret_xml(b'<CaretExtension><Label Key="0">bg</Label></CaretExtension>')
    assert table == {}


def test_nnunet_dataset_json_is_what_nnunet_reads():
    ds = nnunet_dataset_json({"liver": 1, "spleen": 2}, num_training=3)
    assert ds["labels"] == {"background": 0, "liver": 1, "spleen": 2}
    assert ds["numTraining"] == 3 and ds["file_ending"] == ".nii.gz"
    json.dumps(ds)  # plain JSON
