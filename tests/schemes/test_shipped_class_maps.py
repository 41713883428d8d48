"""The shipped class maps: each loads, has its cited count, source, and published names."""

from __future__ import annotations

import json

import pytest

from medmask.schemes import (
    ClassMap,
    VocabularyError,
    class_map_ids,
    default_vocabulary,
    get_scheme,
    load_class_map,
)

#: Class counts as the cited sources publish them.
COUNTS = {
    "totalseg_v2": 117,
    "totalseg_v1": 104,
    "abdomenatlas_1_1": 25,
    "amos22": 15,
    "btcv": 13,
    "flare22": 13,
    "msd_task01_braintumour": 3,
    "msd_task02_heart": 1,
    "msd_task03_liver": 2,
    "msd_task04_hippocampus": 2,
    "msd_task05_prostate": 2,
    "msd_task06_lung": 1,
    "msd_task07_pancreas": 2,
    "msd_task08_hepaticvessel": 2,
    "msd_task09_spleen": 1,
    "msd_task10_colon": 1,
}


def test_every_shipped_map_is_listed():
    assert set(class_map_ids()) == set(COUNTS)


@pytest.mark.parametrize("map_id", sorted(COUNTS))
def test_map_loads_with_its_count_and_source(map_id):
    cmap = load_class_map(map_id)
    assert cmap.id == map_id and len(cmap) == COUNTS[map_id]
    assert cmap.table.labels() == list(range(1, COUNTS[map_id] + 1))  # all are 1..N
    assert cmap.table.is_one_to_one
    assert cmap.source["url"].startswith("http") and cmap.source.get("version")
    # every published name means a class of the canonical vocabulary (with its source)
    vocab = default_vocabulary()
    unresolved = [n for n in cmap.table if vocab.resolve(n, map_id) is None]
    assert unresolved == []
    assert len(get_scheme(map_id)) == COUNTS[map_id]


@pytest.mark.parametrize(
    "map_id, label, name",
    [
        ("totalseg_v2", 1, "spleen"),
        ("totalseg_v2", 51, "heart"),
        ("totalseg_v2", 63, "inferior_vena_cava"),
        ("totalseg_v2", 117, "costal_cartilages"),
        ("totalseg_v1", 44, "heart_myocardium"),
        ("totalseg_v1", 93, "face"),
        ("totalseg_v1", 104, "urinary_bladder"),
        ("abdomenatlas_1_1", 2, "gall_bladder"),
        ("abdomenatlas_1_1", 7, "postcava"),
        ("abdomenatlas_1_1", 13, "celiac_trunk"),
        ("abdomenatlas_1_1", 25, "rectum"),
        ("amos22", 4, "gall bladder"),
        ("amos22", 8, "arota"),  # sic: the dataset's own spelling
        ("amos22", 9, "postcava"),
        ("amos22", 15, "prostate/uterus"),
        ("btcv", 10, "portal vein and splenic vein"),
        ("btcv", 13, "left adrenal gland"),
        ("flare22", 1, "liver"),
        ("flare22", 2, "right kidney"),
        ("flare22", 13, "left kidney"),
        ("msd_task01_braintumour", 3, "enhancing tumour"),
        ("msd_task03_liver", 2, "cancer"),
        ("msd_task05_prostate", 1, "PZ"),
        ("msd_task08_hepaticvessel", 2, "Tumour"),
        ("msd_task10_colon", 1, "colon cancer primaries"),
    ],
)
def test_names_and_numbers_as_published(map_id, label, name):
    assert load_class_map(map_id).name_of(label) == name


def test_totalseg_v1_to_v2_changes_are_recorded_and_consistent():
    v2, v1 = load_class_map("totalseg_v2"), load_class_map("totalseg_v1")
    changes = v2.extra["from_v1"]
    only_v1 = set(v1.table) - set(v2.table)
    assert only_v1 == set(changes["merged"]["heart"]) | set(changes["moved_to_other_tasks"])
    assert set(changes["new_in_v2"]) == set(v2.table) - set(v1.table)
    assert len(set(v1.table) & set(v2.table)) == 97
    assert v1.table["aorta"] == 7 and v2.table["aorta"] == 52  # renumbered, not renamed
    assert default_vocabulary().parts("heart") == tuple(changes["merged"]["heart"])


@pytest.mark.realdata
def test_real_case_names_are_the_v2_class_map(real_case):
    names = {p.name.removesuffix(".nii.gz") for p in real_case.glob("*.nii.gz")}
    assert names == set(load_class_map("totalseg_v2").table)


def _doc(**over):
    doc = {
        "id": "mine",
        "title": "a test map",
        "count": 2,
        "source": {"url": "https://example.org", "version": "1"},
        "classes": {"1": "liver", "2": "spleen"},
    }
    doc.update(over)
    return json.dumps(doc)


def test_a_class_map_file_of_ones_own():
    cmap = ClassMap.from_json(_doc(), "mine.json")
    assert cmap.table.to_dict() == {"liver": 1, "spleen": 2} and cmap.name_of(2) == "spleen"


@pytest.mark.parametrize(
    "text, words",
    [
        (_doc(classes={"1": "liver", "01": "spleen"}), "label 1 is given twice"),
        ('{"id": "x", "classes": {"1": "a", "1": "b"}}', "repeats the key '1'"),
        (_doc(classes={"1": "liver", "2": "liver"}), "given to labels 1 and 2"),
        (_doc(classes={"0": "background", "1": "liver"}), "background"),
        (_doc(classes={"one": "liver"}), "not a label number"),
        (_doc(count=3), "'count' says 3"),
        (_doc(source={"version": "1"}), "'url'"),
        (_doc(classes={}), "non-empty"),
        ('{"id": "x"}', "field 'title' is missing"),
        ("[1, 2]", "JSON object"),
        ("{", "not valid JSON"),
    ],
)
def test_bad_class_maps_are_refused(text, words):
    with pytest.raises(VocabularyError, match=words):
        ClassMap.from_json(text, "bad.json")


def test_unknown_map_lists_close_matches():
    with pytest.raises(VocabularyError, match="did you mean: 'amos22'"):
        load_class_map("amos2022")
