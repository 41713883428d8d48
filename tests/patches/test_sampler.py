"""Crop centres from an archive's index (medmask.patches): the requested class frequencies
(chi-square over 20,000 draws), every foreground centre on a voxel of its mask, uniform
voxels, bounded caches, reproducible streams, and the bad cases (empty masks, a grid the
masks fill)."""

from __future__ import annotations

import numpy as np
import pytest

from medmask import MaskArchive
from medmask.errors import MaskValidationError
from medmask.patches import (
    ANYWHERE,
    BACKGROUND,
    CLASS,
    FOREGROUND,
    CaseIndex,
    CentreSampler,
    ClassRatios,
    MaskVoxels,
    NnUNetPolicy,
    PosNeg,
    patch_box,
)
from medmask.phantoms import phantom_case
from medmask.spaces import default_space

#: chi-square critical values at p = 0.001 by degrees of freedom (a fixed seed makes each
#: test deterministic; a sampler that ignores the ratios lands orders of magnitude above)
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32, 8: 26.12}


def chi_square(observed: dict, expected_share: dict) -> float:
    n = sum(observed.values())
    return sum(
        (observed.get(k, 0) - n * p) ** 2 / (n * p) for k, p in expected_share.items() if p > 0
    )


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """A phantom case (overlapping organs; spleen empty, plus an empty organ) as an archive."""
    masks, space = phantom_case(5, (24, 40, 40))
    masks["empty_organ"] = np.zeros((24, 40, 40), bool)
    path = tmp_path_factory.mktemp("phantom") / "case.mska"
    with MaskArchive(path, "w", space=space) as ar:
        for name, m in masks.items():
            ar.add(name, m)
    return path, masks


def draws(path, policy, n, seed=0, **kw):
    sampler = CentreSampler(policy, **{k: v for k, v in kw.items() if k in ("foreground",)})
    rng = np.random.default_rng(seed)
    with MaskArchive(path) as ar:
        case = CaseIndex.of(ar, kw.get("names"))
        out = [sampler.draw(ar, case, rng, allowed=kw.get("allowed")) for _ in range(n)]
    return out, sampler


def test_class_ratios_match_over_20000_draws_and_centres_lie_on_their_mask(phantom):
    path, masks = phantom
    ratios = {"liver": 1.0, "kidney_left": 2.0, "aorta": 3.0, "spleen": 4.0, "empty_organ": 5.0}
    present = {n: r for n, r in ratios.items() if masks[n].any()}
    assert set(present) == {"liver", "kidney_left", "aorta"}  # spleen: empty in this case
    centres, _ = draws(path, ClassRatios(ratios, background=2.0), 20_000)
    counts: dict = {}
    union = np.logical_or.reduce([m for m in masks.values()])
    for c in centres:
        key = c.name if c.kind == CLASS else c.kind
        counts[key] = counts.get(key, 0) + 1
        if c.kind == CLASS:
            assert masks[c.name][c.zyx], f"centre {c.zyx} is not a voxel of {c.name}"
        else:
            assert c.kind == BACKGROUND and not union[c.zyx]
    total = sum(present.values()) + 2.0
    expected = {**{n: r / total for n, r in present.items()}, BACKGROUND: 2.0 / total}
    assert set(counts) == set(expected)  # the empty organ's share went to the others
    assert chi_square(counts, expected) < CHI2_999[len(expected) - 1]


def test_nnunet_policy_a_third_on_foreground_class_uniform_among_present(phantom):
    path, masks = phantom
    centres, _ = draws(path, NnUNetPolicy(), 20_000, seed=1)
    present = [n for n, m in masks.items() if m.any()]
    kinds = {CLASS: 0, ANYWHERE: 0}
    per_class = dict.fromkeys(present, 0)
    for c in centres:
        kinds[c.kind] += 1
        if c.kind == CLASS:
            per_class[c.name] += 1
            assert masks[c.name][c.zyx]
    assert chi_square(kinds, {CLASS: 1 / 3, ANYWHERE: 2 / 3}) < CHI2_999[1]
    uniform = {n: 1 / len(present) for n in present}
    assert chi_square(per_class, uniform) < CHI2_999[len(present) - 1]


def test_partial_labels_draw_foreground_only_from_annotated_classes(phantom):
    path, masks = phantom
    centres, _ = draws(path, NnUNetPolicy(foreground=1.0), 600, allowed={"liver", "aorta"})
    assert {c.name for c in centres} == {"liver", "aorta"}


def overlap_case(tmp_path):
    """Two small masks overlapping on part of their voxels, on a 6x6x6 grid."""
    a = np.zeros((6, 6, 6), bool)
    b = np.zeros((6, 6, 6), bool)
    a[1:3, 1:4, 1:3] = True  # 12 voxels
    b[2:4, 2:4, 1:4] = True  # 12 voxels, 4 shared with a
    path = tmp_path / "overlap.mska"
    with MaskArchive(path, "w", space=default_space(a.shape)) as ar:
        ar.add("a", a)
        ar.add("b", b)
    return path, a, b


def test_pos_neg_foreground_is_uniform_over_the_union_of_overlapping_masks(tmp_path):
    path, a, b = overlap_case(tmp_path)
    union = a | b
    centres, _ = draws(path, PosNeg(pos=3, neg=1), 20_000, seed=2)
    kinds = {FOREGROUND: 0, BACKGROUND: 0}
    per_voxel: dict = {}
    for c in centres:
        kinds[c.kind] += 1
        if c.kind == FOREGROUND:
            assert union[c.zyx]
            per_voxel[c.zyx] = per_voxel.get(c.zyx, 0) + 1
        else:
            assert not union[c.zyx]
    assert chi_square(kinds, {FOREGROUND: 0.75, BACKGROUND: 0.25}) < CHI2_999[1]
    voxels = [tuple(int(v) for v in zyx) for zyx in np.argwhere(union)]
    assert len(voxels) == 20 and set(per_voxel) == set(voxels)
    # without the 1/cover acceptance the 4 shared voxels would come twice as often
    stat = chi_square(per_voxel, dict.fromkeys(voxels, 1 / 20))
    assert stat < 43.82  # df 19, p = 0.001


def test_mask_voxels_draws_each_voxel_equally_often():
    rng = np.random.default_rng(7)
    crop = rng.random((3, 4, 21)) < 0.3  # rows of 21 voxels: packing pads the last byte
    crop[0, 0, 0] = crop[-1, -1, -1] = True
    box = (10, 13, 5, 9, 30, 51)
    mv = MaskVoxels(crop, box, "m")
    assert mv.total == int(crop.sum()) and mv.nbytes < crop.size
    seen: dict = {}
    for _ in range(20_000):
        z, y, x = mv.draw(rng)
        assert crop[z - 10, y - 5, x - 30]
        assert (z, y, x) in mv
        seen[(z, y, x)] = seen.get((z, y, x), 0) + 1
    truth = {(z + 10, y + 5, x + 30) for z, y, x in np.argwhere(crop)}
    assert set(seen) == truth
    n = len(truth)
    assert chi_square(seen, dict.fromkeys(truth, 1 / n)) < 1.4 * n  # df n - 1: mean n - 1
    sample = mv.sample(rng, 10)
    assert len({tuple(v) for v in sample}) == 10
    assert all(crop[z - 10, y - 5, x - 30] for z, y, x in sample)


def test_a_mask_without_voxels_is_a_clear_error_never_a_loop(phantom):
    with pytest.raises(MaskValidationError, match="no voxels"):
        MaskVoxels(np.zeros((2, 2, 2), bool), (0, 2, 0, 2, 0, 2), "empty_organ")
    path, _ = phantom
    # documented fallback: a case offering none of the requested classes centres anywhere
    centres, _ = draws(path, ClassRatios({"empty_organ": 1}, background=0), 50)
    assert {c.kind for c in centres} == {ANYWHERE}
    sampler = CentreSampler(NnUNetPolicy())
    with MaskArchive(path) as ar, pytest.raises(MaskValidationError) as info:
        sampler.voxels(ar, CaseIndex.of(ar), "empty_organ")
    assert info.value.mask == "empty_organ" and str(path) in str(info.value)


def test_background_on_a_grid_the_masks_fill_gives_up_with_a_clear_error(tmp_path):
    path = tmp_path / "full.mska"
    with MaskArchive(path, "w", space=default_space((4, 4, 4))) as ar:
        ar.add("everything", np.ones((4, 4, 4), bool))
    sampler = CentreSampler(PosNeg(pos=0, neg=1), max_tries=50)
    with MaskArchive(path) as ar, pytest.raises(MaskValidationError, match="no background voxel"):
        sampler.draw(ar, CaseIndex.of(ar), np.random.default_rng(0))


def test_the_cache_stays_within_its_budget_and_decodes_once_per_mask(phantom):
    path, masks = phantom
    present = [n for n, m in masks.items() if m.any()]
    big = CentreSampler(NnUNetPolicy(foreground=1.0))
    with MaskArchive(path) as ar:
        case = CaseIndex.of(ar)
        rng = np.random.default_rng(0)
        for _ in range(500):
            big.draw(ar, case, rng)
        assert big.cache.misses == len(present)  # one decode per mask, then cached
        sizes = [big.voxels(ar, case, n).nbytes for n in present]
        tiny = CentreSampler(NnUNetPolicy(foreground=1.0), cache_bytes=max(sizes) + 1)
        for _ in range(500):
            tiny.draw(ar, case, rng)
            assert tiny.cache.nbytes <= max(sizes) + 1
        assert tiny.cache.misses > len(present)  # evicted and decoded again: bounded


def test_a_seed_gives_the_same_centres_another_seed_others(phantom):
    path, _ = phantom
    a, _ = draws(path, NnUNetPolicy(), 200, seed=11)
    b, _ = draws(path, NnUNetPolicy(), 200, seed=11)
    c, _ = draws(path, NnUNetPolicy(), 200, seed=12)
    assert a == b and a != c


def test_a_replaced_mask_is_never_drawn_from_stale_rows(tmp_path):
    path = tmp_path / "edit.mska"
    first = np.zeros((8, 8, 8), bool)
    first[1, 1, 1] = True
    second = np.zeros((8, 8, 8), bool)
    second[6, 6, 6] = True
    with MaskArchive(path, "w", space=default_space(first.shape)) as ar:
        ar.add("m", first)
    sampler = CentreSampler(NnUNetPolicy(foreground=1.0))
    rng = np.random.default_rng(0)
    with MaskArchive(path) as ar:
        assert sampler.draw(ar, CaseIndex.of(ar), rng).zyx == (1, 1, 1)
    with MaskArchive(path, "a") as ar:
        ar.replace("m", second)
    with MaskArchive(path) as ar:
        assert sampler.draw(ar, CaseIndex.of(ar), rng).zyx == (6, 6, 6)


def test_centres_move_onto_the_image_grid_by_the_offset(phantom):
    path, masks = phantom
    sampler = CentreSampler(NnUNetPolicy(foreground=1.0))
    rng = np.random.default_rng(3)
    with MaskArchive(path) as ar:
        case = CaseIndex.of(ar)
        for _ in range(100):
            c = sampler.draw(ar, case, rng, grid_shape=(40, 60, 60), offset=(5, -2, 7))
            z, y, x = c.zyx
            assert masks[c.name][z - 5, y + 2, x - 7]


def test_patch_box_pads_or_shifts_inside():
    assert patch_box((1, 10, 18), (4, 4, 4), (20, 20, 20)) == (-1, 3, 8, 12, 16, 20)
    assert patch_box((1, 10, 19), (4, 4, 4), (20, 20, 20), fit="shift") == (0, 4, 8, 12, 16, 20)
    assert patch_box((3, 3, 3), (8, 2, 2), (5, 5, 5), fit="shift")[:2] == (-1, 7)  # too large
    with pytest.raises(MaskValidationError, match="fit"):
        patch_box((0, 0, 0), (2, 2, 2), (4, 4, 4), fit="crop")


def test_policies_refuse_bad_ratios():
    with pytest.raises(MaskValidationError):
        PosNeg(0, 0)
    with pytest.raises(MaskValidationError):
        PosNeg(-1, 1)
    with pytest.raises(MaskValidationError):
        ClassRatios({"liver": float("nan")})
    with pytest.raises(MaskValidationError):
        ClassRatios({"liver": 0}, background=0)
    with pytest.raises(MaskValidationError):
        NnUNetPolicy(1.5)
