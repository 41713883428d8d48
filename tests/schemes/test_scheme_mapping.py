"""LabelScheme.map: names onto a scheme at index level; merges, gaps, unknowns, coverage."""

from __future__ import annotations

import numpy as np
import pytest

from medmask import MaskArchive
from medmask.schemes import (
    Coverage,
    LabelScheme,
    VocabularyError,
    coverage,
    get_scheme,
    load_class_map,
    scheme_names,
)
from medmask.spaces import Space

LOBES = [
    "lung_upper_lobe_left",
    "lung_lower_lobe_left",
    "lung_upper_lobe_right",
    "lung_middle_lobe_right",
    "lung_lower_lobe_right",
]


def accounted(mapping, names):
    """Every input name is used, unknown or unused, exactly once."""
    used = [n for c in mapping.classes for n in c.sources]
    groups = [set(used), set(mapping.unknown), set(mapping.unused)]
    assert sum(len(g) for g in groups) == len(set(names))
    assert set().union(*groups) == set(names)


# -- built-in and user schemes ---------------------------------------------------------------
def test_built_in_schemes_by_short_name():
    assert get_scheme("totalseg").name == "totalseg_v2" and len(get_scheme("totalseg")) == 117
    assert get_scheme("amos").labels() == list(range(1, 16))
    assert get_scheme("amos").label_of("aorta") == 8  # any spelling of the class
    assert get_scheme("amos").class_of("arota").canonical == "aorta"
    assert {"totalseg", "amos", "btcv", "flare22", "abdomenatlas"} <= set(scheme_names())
    with pytest.raises(VocabularyError, match="did you mean: 'amos'"):
        get_scheme("amso")


@pytest.mark.parametrize(
    "classes, kwargs, words",
    [
        ({"liver": 1, "spleen": 1}, {}, "label 1 is given to 'liver', 'spleen'"),
        ({"liver": 0}, {}, "background"),
        ({"lung": 1, "lung_left": 2}, {}, "overlap: both contain"),
        ({"gallbladder": 1, "gall_bladder": 2}, {}, "both mean 'gallbladder'"),
        ({"kidney": 1, "kidney_left": 2}, {}, "must not overlap"),
        ({"livr": 1}, {}, "did you mean: 'liver'"),
        ({"cancer": 1}, {}, "msd_task03_liver"),
        ({"tumour": 1}, {"canonical": {"tumour": "no_such_class"}}, "no known class"),
    ],
)
def test_bad_schemes_are_refused(classes, kwargs, words):
    with pytest.raises(VocabularyError, match=words):
        LabelScheme("mine", classes, **kwargs)


def test_a_scheme_of_ones_own():
    s = LabelScheme("mine", ["liver", "kidneys", "tumour"], canonical={"tumour": "liver_tumor"})
    assert [(c.name, c.label, c.canonical) for c in s] == [
        ("liver", 1, "liver"),
        ("kidneys", 2, "kidney"),
        ("tumour", 3, "liver_tumor"),
    ]
    liver_case = ["liver", "cancer"]
    m = s.map(liver_case, source="msd_task03_liver")
    assert m.label_table().to_dict() == {"liver": 1, "cancer": 3}
    assert m.not_available() == ["kidneys"] and m.availability() == [True, False, True]
    assert s.table().to_dict() == {"liver": 1, "kidneys": 2, "tumour": 3}


# -- mapping rules ---------------------------------------------------------------------------
def test_a_derived_class_is_the_union_of_its_parts():
    s = LabelScheme("organs", {"liver": 1, "kidney": 2, "lung": 3})
    names = ["liver", "kidney_right", *LOBES, "kidney_left", "spleen"]
    m = s.map(names)
    assert m["kidney"].sources == ("kidney_right", "kidney_left")  # archive order
    assert m["lung"].sources == tuple(LOBES) and m["lung"].is_merge
    t = m.label_table()
    assert t.merges() == {2: ("kidney_right", "kidney_left"), 3: tuple(LOBES)}
    assert t.class_table() == {"liver": 1, "kidney": 2, "lung": 3}
    assert m.unused == {"spleen": "the scheme has no class for it"}
    accounted(m, names)


def test_partial_derived_classes_are_reported_not_painted():
    s = LabelScheme("organs", {"lung": 1, "kidney": 2})
    m = s.map(["lung_upper_lobe_left", "lung_lower_lobe_left", "kidney_left"])
    assert m["lung"].status == "partial" and m["kidney"].status == "partial"
    assert set(m["lung"].missing) == {
        "lung_upper_lobe_right",
        "lung_middle_lobe_right",
        "lung_lower_lobe_right",
    }
    assert len(m.label_table()) == 0
    assert m.label_table(include_partial=True)["kidney_left"] == 2
    assert m.partial() == ["lung", "kidney"] and m.available(include_partial=True) == m.partial()


def test_a_whole_mask_wins_over_parts_and_parts_are_explained():
    s = LabelScheme("organs", {"lung": 1})
    names = ["lung", "lung_upper_lobe_left"]
    m = s.map(names)
    assert m["lung"].sources == ("lung",)
    assert m.unused["lung_upper_lobe_left"] == "class 'lung' is made from lung"
    accounted(m, names)


def test_a_coarser_class_cannot_be_split():
    m = LabelScheme("lr", {"kidney_left": 1, "kidney_right": 2}).map(["kidney"])
    assert m.available() == []
    assert "coarser class cannot be split" in m.unused["kidney"]


def test_unknown_names_are_reported_with_close_matches_never_dropped():
    names = ["livr", "spleen", "ct", "combined_labels", "kidney_lefft"]
    m = get_scheme("btcv").map(names)
    assert set(m.unknown) == {"livr", "ct", "combined_labels", "kidney_lefft"}
    assert "did you mean: 'liver'" in m.unknown["livr"]
    assert "'kidney_left'" in m.unknown["kidney_lefft"]
    assert m["spleen"].sources == ("spleen",)
    assert "unknown: 'livr'" in m.summary()
    accounted(m, names)


def test_two_spellings_of_one_class_are_both_painted_and_reported():
    m = get_scheme("totalseg").map(["gall_bladder", "gallbladder"])
    assert m["gallbladder"].sources == ("gall_bladder", "gallbladder")
    assert m.duplicates == {"gallbladder": ("gall_bladder", "gallbladder")}


def test_source_scoped_names():
    liver = get_scheme("msd_task03_liver")
    m = get_scheme("totalseg").map(liver.names(), source="msd_task03_liver")
    assert m["liver"].sources == ("liver",) and "cancer" in m.unused
    assert get_scheme("totalseg").map(["cancer"]).unknown  # without its source: unknown
    amos = load_class_map("amos22").table.names()
    m = get_scheme("abdomenatlas").map(amos, source="amos22")
    assert m["aorta"].sources == ("arota",) and m["postcava"].sources == ("postcava",)
    assert m["bladder"].sources == ("bladder",) and m.unknown == {}


def test_names_must_be_strings():
    with pytest.raises(VocabularyError, match="strings"):
        get_scheme("btcv").map(["liver", 3])


# -- the real TotalSegmentator case ----------------------------------------------------------
@pytest.fixture(scope="module")
def real_names(real_case):
    return sorted(p.name.removesuffix(".nii.gz") for p in real_case.glob("*.nii.gz"))


@pytest.mark.realdata
def test_real_case_maps_fully_onto_totalseg(real_names):
    m = get_scheme("totalseg").map(real_names)
    assert len(real_names) == 117
    assert m.unknown == {} and m.unused == {} and m.duplicates == {}
    assert m.available() == get_scheme("totalseg").names()
    assert m.label_table() == load_class_map("totalseg_v2").table.to_dict()


@pytest.mark.realdata
def test_real_case_onto_btcv(real_names):
    m = get_scheme("btcv").map(real_names)
    assert m.unknown == {} and m.not_available() == [] and not any(c.is_merge for c in m.classes)
    assert m.label_table().to_dict() == {
        "spleen": 1,
        "kidney_right": 2,
        "kidney_left": 3,
        "gallbladder": 4,
        "esophagus": 5,
        "liver": 6,
        "stomach": 7,
        "aorta": 8,
        "inferior_vena_cava": 9,
        "portal_vein_and_splenic_vein": 10,
        "pancreas": 11,
        "adrenal_gland_right": 12,
        "adrenal_gland_left": 13,
    }
    assert len(m.unused) == 117 - 13
    accounted(m, real_names)


@pytest.mark.realdata
def test_real_case_onto_amos(real_names):
    m = get_scheme("amos").map(real_names)
    assert m.unknown == {}
    assert m["prostate/uterus"].status == "partial"
    assert m["prostate/uterus"].sources == ("prostate",)
    assert m["prostate/uterus"].missing == ("uterus",)
    assert m.not_available() == ["prostate/uterus"]
    t = m.label_table()
    assert len(t) == 14 and t.is_one_to_one
    assert t["urinary_bladder"] == 14 and t["inferior_vena_cava"] == 9 and t["aorta"] == 8
    assert t.class_name(8) == "arota" and t.class_name(4) == "gall bladder"
    assert m.label_table(include_partial=True)["prostate"] == 15
    accounted(m, real_names)


@pytest.mark.realdata
def test_real_case_onto_abdomenatlas_merges_lobes(real_names):
    m = get_scheme("abdomenatlas").map(real_names)
    assert set(m["lung_left"].sources) == {"lung_upper_lobe_left", "lung_lower_lobe_left"}
    assert len(m["lung_right"].sources) == 3
    assert m.not_available() == ["celiac_trunk", "hepatic_vessel", "intestine", "rectum"]
    t = m.label_table()
    assert t.merges()[21] == ("lung_lower_lobe_left", "lung_upper_lobe_left")
    assert t["inferior_vena_cava"] == 7 and t["gallbladder"] == 2


@pytest.mark.realdata
def test_real_case_onto_totalseg_v1_and_back(real_names):
    m = get_scheme("totalseg_v1").map(real_names)
    assert len(m.available()) == 97
    assert "coarser class cannot be split" in m.unused["heart"]
    v1_names = load_class_map("totalseg_v1").table.names()
    back = get_scheme("totalseg").map(v1_names)
    assert set(back["heart"].sources) == {
        "heart_myocardium",
        "heart_atrium_left",
        "heart_ventricle_left",
        "heart_atrium_right",
        "heart_ventricle_right",
    }
    assert set(back.unused) == {"pulmonary_artery", "face"}
    assert len(back.available()) == 98 and back.unknown == {}


# -- coverage --------------------------------------------------------------------------------
def test_coverage_present_empty_not_annotated():
    s = LabelScheme("c", {"liver": 1, "kidney": 2, "spleen": 3, "lung": 4})
    names = ["liver", "kidney_left", "kidney_right", "lung_upper_lobe_left"]
    m = s.map(names)
    cov = coverage(
        m, {"liver": 100, "kidney_left": 0, "kidney_right": 0, "lung_upper_lobe_left": 5}
    )
    assert cov == {
        "liver": Coverage.PRESENT,
        "kidney": Coverage.EMPTY,
        "spleen": Coverage.NOT_ANNOTATED,
        "lung": Coverage.NOT_ANNOTATED,  # partial
    }
    assert cov["liver"] == "present"
    partial = coverage(m, {n: np.int64(1) for n in names}, include_partial=True)
    assert partial["lung"] is Coverage.PRESENT and partial["kidney"] is Coverage.PRESENT
    with pytest.raises(VocabularyError, match="no voxel count for its mask 'kidney_right'"):
        coverage(m, {"liver": 1, "kidney_left": 0})
    with pytest.raises(VocabularyError, match="non-negative integer"):
        coverage(m, {"liver": -1, "kidney_left": 0, "kidney_right": 0})


# -- merges paint unions (phantoms in a real archive) ----------------------------------------
SHAPE = (6, 10, 12)


def _phantoms() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    out = {}
    for k, name in enumerate(["liver", "kidney_left", "kidney_right", *LOBES, "spleen"]):
        m = rng.random(SHAPE) < 0.15
        m[k % SHAPE[0], k, :3] = True  # never empty
        out[name] = m
    return out


@pytest.fixture()
def phantom_archive(tmp_path):
    path = tmp_path / "case.mska"
    space = Space(shape=SHAPE, spacing=(2.0, 1.0, 1.0))
    with MaskArchive(path, "w", space=space) as ar:
        for name, m in _phantoms().items():
            ar.add(name, m)
    return path


def _paint(path, table) -> np.ndarray:
    """The reference painter: each mask's voxels get its label, in label order."""
    out = np.zeros(SHAPE, table.smallest_dtype())
    with MaskArchive(path) as ar:
        for label in table.labels():
            for name in table.names_of(label):
                out[ar.read_array(name) != 0] = label
    return out


def test_merges_paint_unions(phantom_archive):
    scheme = LabelScheme("organs", {"liver": 1, "kidney": 2, "lung": 3})
    with MaskArchive(phantom_archive) as ar:
        names = ar.all_names()
        voxels = {i.name: i.voxels for i in ar.infos()}
    m = scheme.map(names)  # index level: names only
    table = m.label_table()
    painted = _paint(phantom_archive, table)
    ph = _phantoms()
    kidney = ph["kidney_left"] | ph["kidney_right"]
    lung = np.logical_or.reduce([ph[n] for n in LOBES])
    np.testing.assert_array_equal(painted == 3, lung)  # painted last: the whole union
    np.testing.assert_array_equal(painted == 2, kidney & ~lung)
    np.testing.assert_array_equal(painted == 1, ph["liver"] & ~kidney & ~lung)
    assert not (painted[ph["spleen"] & ~(kidney | lung | ph["liver"])]).any()
    assert coverage(m, voxels) == {c: Coverage.PRESENT for c in ("liver", "kidney", "lung")}


def test_the_monai_loader_paints_the_same_unions(phantom_archive):
    pytest.importorskip("monai")
    from medmask_monai import LoadMask

    with MaskArchive(phantom_archive) as ar:
        names = ar.all_names()
    m = LabelScheme("organs", {"liver": 1, "kidney": 2, "lung": 3}).map(names)
    table = m.label_table()
    loaded = LoadMask(names=table)(str(phantom_archive))  # LabelTable is a Mapping
    expected = _paint(phantom_archive, table)
    np.testing.assert_array_equal(loaded[0].numpy().transpose(2, 1, 0), expected)
    channels = LoadMask(names=table, mode="channels")(str(phantom_archive))
    ph = _phantoms()
    np.testing.assert_array_equal(
        channels[1].numpy().transpose(2, 1, 0), ph["kidney_left"] | ph["kidney_right"]
    )
