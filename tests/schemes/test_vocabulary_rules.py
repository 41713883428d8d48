"""The canonical vocabulary: synonyms resolve, merges expand, bad tables are refused."""

from __future__ import annotations

import pytest

from medmask.errors import MaskValidationError
from medmask.schemes import Vocabulary, VocabularyError, default_vocabulary, name_key

LOBES = (
    "lung_upper_lobe_left",
    "lung_lower_lobe_left",
    "lung_upper_lobe_right",
    "lung_middle_lobe_right",
    "lung_lower_lobe_right",
)


@pytest.mark.parametrize(
    "name, canonical",
    [
        ("gallbladder", "gallbladder"),
        ("gall_bladder", "gallbladder"),
        ("Gall Bladder", "gallbladder"),
        ("postcava", "inferior_vena_cava"),
        ("inferior vena cava", "inferior_vena_cava"),
        ("IVC", "inferior_vena_cava"),
        ("rkid", "kidney_right"),
        ("right kidney", "kidney_right"),
        ("left adrenal gland", "adrenal_gland_left"),
        ("arota", "aorta"),
        ("bladder", "urinary_bladder"),
        ("prostate/uterus", "prostate_or_uterus"),
        ("portal vein and splenic vein", "portal_vein_and_splenic_vein"),
        ("Vertebrae_l1", "vertebrae_L1"),
        ("left atrium", "heart_atrium_left"),
        ("lungs", "lung"),
    ],
)
def test_synonyms_resolve_for_any_source(name, canonical):
    assert default_vocabulary().canonical(name) == canonical


def test_scoped_synonyms_need_their_source():
    v = default_vocabulary()
    assert v.resolve("cancer") is None
    assert v.canonical("cancer", "msd_task03_liver") == "liver_tumor"
    assert v.canonical("cancer", "msd_task06_lung") == "lung_tumor"
    assert v.canonical("cancer", "msd_task07_pancreas") == "pancreatic_tumor"
    assert v.canonical("Tumour", "msd_task08_hepaticvessel") == "liver_tumor"
    assert v.canonical("sto", "btcv") == "stomach" and v.resolve("sto") is None
    with pytest.raises(VocabularyError, match="msd_task03_liver \\(liver_tumor\\)"):
        v.canonical("cancer")
    # a source without scoped synonyms still resolves the global ones
    assert v.canonical("arota", "amos22") == "aorta"


def test_derived_classes_expand_to_their_parts():
    v = default_vocabulary()
    assert v.parts("lung") == ("lung_left", "lung_right")
    assert set(v.leaves("lung")) == set(LOBES)
    assert v.leaves("kidney") == ("kidney_left", "kidney_right")
    assert v.leaves("liver") == ("liver",)
    assert set(v.leaves("prostate_or_uterus")) == {
        "prostate_peripheral_zone",
        "prostate_transition_zone",
        "uterus",
    }
    assert "lung" in v and "nonsense" not in v and v.parts("liver") is None


def test_unknown_names_get_close_matches():
    with pytest.raises(VocabularyError, match="did you mean: 'liver'"):
        default_vocabulary().canonical("livr")


def test_name_key():
    assert name_key(" Prostate/Uterus ") == "prostate_uterus"
    with pytest.raises(VocabularyError, match="no letter or digit"):
        name_key("--")
    with pytest.raises(VocabularyError, match="strings"):
        name_key(3)


BASE = ["liver", "kidney_left", "kidney_right", "spleen"]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        # two synonym entries giving one name two classes (also once normalised)
        (
            {"synonyms": [("lkid", "kidney_left"), ("lkid", "kidney_right")]},
            "cannot mean two classes",
        ),
        (
            {"synonyms": {"Left Kid": "kidney_left", "left_kid": "kidney_right"}},
            "cannot mean two classes",
        ),
        ({"scoped": {"x": [("a", "liver"), ("A", "spleen")]}}, "cannot mean two classes"),
        ({"synonyms": {"liver": "spleen"}}, "cannot re-point a canonical name"),
        ({"synonyms": {"milz": "splen"}}, "not a class.*did you mean: 'spleen'"),
        ({"derived": {"kidney": ["kidney_left", "kidney_rigth"]}}, "no class.*kidney_right"),
        ({"derived": {"a": ["b"], "b": ["a"]}}, "cycle: a -> b -> a"),
        ({"derived": {"a": ["liver", "a"]}}, "cycle: a -> a"),
        ({"derived": {"both": ["liver", "liver"]}}, "twice"),
        ({"derived": {"none": []}}, "list of parts"),
        ({"derived": {"one": "liver"}}, "list of parts"),
        ({"scoped": {"": {"a": "liver"}}}, "source id"),
    ],
)
def test_bad_vocabularies_are_refused_when_built(kwargs, words):
    with pytest.raises(VocabularyError, match=words) as err:
        Vocabulary(BASE, **kwargs)
    assert isinstance(err.value, MaskValidationError) and isinstance(err.value, ValueError)


def test_classes_equal_once_normalised_are_refused():
    with pytest.raises(VocabularyError, match="one name once normalised"):
        Vocabulary(["Liver", "liver"])


def test_a_longer_cycle_is_named():
    with pytest.raises(
        VocabularyError, match="cycle: .*a -> b -> c -> a|cycle: .*b -> c -> a -> b"
    ):
        Vocabulary(["x"], derived={"a": ["b", "x"], "b": ["c"], "c": ["a"]})


def test_extend_checks_the_union_and_keeps_the_original():
    v = default_vocabulary()
    mine = v.extend(synonyms={"Leber": "liver"}, derived={"kidneys_and_liver": ["kidney", "liver"]})
    assert mine.canonical("leber") == "liver" and v.resolve("leber") is None
    assert set(mine.leaves("kidneys_and_liver")) == {"kidney_left", "kidney_right", "liver"}
    with pytest.raises(VocabularyError, match="cannot mean two classes"):
        v.extend(synonyms={"postcava": "aorta"})
    with pytest.raises(VocabularyError, match="cycle"):
        v.extend(derived={"lung_left": ["lung"]})
