"""The measuring parts of benchmarks/bench_patches.py and benchmarks/study_window_layouts.py:
the patch check catches misplaced or mislabelled patches; every window-reader prototype paints
exactly the label map it claims (overlaps, windows past the grid, one organ)."""

from __future__ import annotations

import numpy as np
import pytest
from bench_scripts import load_script


@pytest.fixture(scope="module")
def small_case():
    patchcase = load_script("_patchcase")
    rng = np.random.default_rng(3)
    shape = (40, 36, 50)
    names = ["a_big", "b_mid", "c_small", "d_empty", "e_overlaps_a"]
    crops = {}
    for name, (lo, hi) in {
        "a_big": ((2, 2, 3), (38, 30, 45)),
        "b_mid": ((10, 5, 20), (25, 20, 41)),
        "c_small": ((30, 30, 2), (33, 34, 7)),
        "e_overlaps_a": ((5, 10, 10), (20, 25, 30)),
    }.items():
        box = (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])
        crop = rng.random(tuple(b - a for a, b in zip(lo, hi))) < 0.4
        crop[0, 0, 0] = crop[-1, -1, -1] = True  # the box is tight
        crops[name] = (crop, box)
    crops["d_empty"] = None
    return patchcase.Case(shape, np.eye(4), names, crops)


def test_patch_check_accepts_true_patches_and_rejects_wrong_ones(small_case):
    bench = load_script("bench_patches")
    truth = small_case.label_map(dtype=np.uint8)
    gts = [truth, truth[::-1].copy()]
    code = bench.position_code(small_case.shape)
    z, y, x = 4, 6, 10
    patch = code[z : z + 16, y : y + 16, x : x + 16].copy()
    lab = truth[None, z : z + 16, y : y + 16, x : x + 16].copy()
    centre_fg = (int(truth[z + 8, y + 8, x + 8] > 0), int(lab.any()))
    assert bench.check_one(patch, lab, gts, small_case.shape, "labelmap") == centre_fg
    padded = patch.copy()
    padded[:3] = 0  # padding (nnU-Net pads past the grid) is not checked
    assert bench.check_one(padded, lab, gts, small_case.shape, "labelmap") == centre_fg

    wrong = lab.copy()
    wrong[0, 5, 5, 5] += 1
    with pytest.raises(AssertionError, match="differs from the truth in 1 voxels"):
        bench.check_one(patch, wrong, gts, small_case.shape, "labelmap")
    with pytest.raises(AssertionError, match="not a box"):
        bench.check_one(patch[:, ::-1].copy(), lab, gts, small_case.shape, "labelmap")
    mixed = patch.copy()
    mixed[0] *= -1
    with pytest.raises(AssertionError, match="mixes two cases"):
        bench.check_one(mixed, lab, gts, small_case.shape, "labelmap")
    # case 1 (negative codes) is checked against its own truth
    neg = -patch
    with pytest.raises(AssertionError, match="differs from the truth"):
        bench.check_one(neg, lab, gts, small_case.shape, "labelmap")
    assert bench.check_one(neg, gts[1][None, z : z + 16, y : y + 16, x : x + 16], gts,
                           small_case.shape, "labelmap")[1] == int(gts[1][z : z + 16, y : y + 16, x : x + 16].any())  # fmt: skip


def test_organ_channels_check(small_case):
    bench = load_script("bench_patches")
    organs = ["a_big", "b_mid"]
    truth = small_case.label_map(organs, dtype=np.uint8)
    code = bench.position_code(small_case.shape)
    sl = (slice(5, 25), slice(3, 23), slice(15, 35))
    chans = np.stack([small_case.full(n)[sl] for n in organs]).astype(np.uint8)
    # b_mid is painted over a_big in the truth: channels must follow the truth's painting
    chans[0] &= ~chans[1].astype(bool)
    bench.check_one(code[sl], chans, [truth, truth], small_case.shape, "organs")
    chans[1, 0, 0, 0] ^= 1
    with pytest.raises(AssertionError, match="organ channel 1"):
        bench.check_one(code[sl], chans, [truth, truth], small_case.shape, "organs")


@pytest.mark.parametrize(
    "spec",
    [dict(), dict(slab=4), dict(slab=8, min_payload=200), dict(slab=4, rows=8)],
    ids=["whole", "slab4", "slab8-threshold", "chunks"],
)
def test_window_readers_paint_the_label_map(small_case, tmp_path, spec):
    study = load_script("study_window_layouts")
    lay = study.build_layout(small_case, tmp_path, "lay", **spec)

    def pad(a: np.ndarray) -> np.ndarray:
        out = np.zeros(tuple(s + 40 for s in a.shape), np.uint8)
        out[20:-20, 20:-20, 20:-20] = a
        return out

    truth = pad(small_case.label_map(dtype=np.uint8))
    organ = pad(small_case.full("b_mid").astype(np.uint8))
    windows = [(0, 40, 0, 36, 0, 50), (3, 19, 7, 30, 9, 33), (-5, 11, 20, 44, 40, 60)]
    for unpack in ("rows", "full"):
        for paint in study.PAINTERS:
            read = study.make_reader(lay, unpack=unpack, paint=paint, skip_empty=True)
            for w in windows:
                cut = tuple(slice(w[2 * a] + 20, w[2 * a + 1] + 20) for a in range(3))
                assert np.array_equal(read(w), truth[cut]), (unpack, paint, w)
                assert np.array_equal(read(w, ["b_mid"]), organ[cut]), (unpack, paint, w)
            read.close()


def test_slab_layouts_record_voxels_and_keep_whole_blobs_small(small_case, tmp_path):
    study = load_script("study_window_layouts")
    whole = study.build_layout(small_case, tmp_path, "whole")
    slabs = study.build_layout(small_case, tmp_path, "slabs", slab=8, min_payload=200)
    for name, mb in slabs.masks.items():
        assert sum(p.voxels for p in mb.pieces) == small_case.voxels(name)
        if len(mb.pieces) == 1:  # under the threshold: the very codec-1 blob
            assert mb.length == whole.masks[name].length
    assert slabs.table_bytes == sum(
        8 + 8 * len(m.pieces) for m in slabs.masks.values() if len(m.pieces) > 1
    )
    assert "d_empty" not in slabs.masks


def test_row_counts_draw_only_mask_voxels(small_case):
    study = load_script("study_window_layouts")
    crop, box = small_case.crops["b_mid"]
    rc = study.RowCounts(np.packbits(crop, axis=2), box)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(3000):
        z, y, x = rc.draw(rng)
        assert crop[z - box[0], y - box[2], x - box[4]]
        seen.add((z, y, x))
    assert len(seen) > 0.6 * crop.sum()  # draws spread over the mask, not one corner
