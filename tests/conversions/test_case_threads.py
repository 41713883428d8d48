"""One case on every core: the ordered, bounded thread pool, masks prepared (encoded) on
several threads and stored in order, identical archives whatever the thread count, and
peak memory bounded by a few masks, not the case."""

from __future__ import annotations

import threading
import time
import tracemalloc

import nibabel as nib
import numpy as np
import pytest

from medmask import MaskArchive
from medmask.conversions import to_archive
from medmask.conversions.common import MaskRecord, records_to_archive
from medmask.conversions.nifti import folder_to_archive
from medmask.conversions.pipeline import case_threads, current_threads, ordered_map
from medmask.errors import MaskValidationError
from medmask.geometry import space_to_affine
from medmask.spaces import Space
from medmask.storage import PreparedMask

SPACE = Space(shape=(24, 20, 16), spacing=(0.9, 0.8, 2.0)).reverse_axis_order()  # (z, y, x)


# -- the pool -----------------------------------------------------------------------------------
def test_jobs_run_at_once_and_results_come_in_order():
    barrier = threading.Barrier(3, timeout=10)

    def job(k: int) -> int:
        if k < 3:
            barrier.wait()  # three jobs must be running at the same time, or this times out
        time.sleep(0.01 * (5 - k % 5))  # later items finish first
        return k * k

    assert list(ordered_map(job, range(12), threads=3)) == [k * k for k in range(12)]


def test_items_in_flight_are_bounded():
    taken, given = [], []

    def items():
        for k in range(50):
            taken.append(k)
            yield k

    peak = 0
    for r in ordered_map(lambda k: k, items(), threads=2, ahead=1):
        given.append(r)
        peak = max(peak, len(taken) - len(given))
    assert given == list(range(50)) and peak <= 3


def test_an_error_comes_in_its_turn_and_nothing_keeps_running():
    running = []

    def job(k: int) -> int:
        running.append(k)
        if k == 4:
            raise ValueError("item 4")
        time.sleep(0.005)
        return k

    got = []
    with pytest.raises(ValueError, match="item 4"):
        for r in ordered_map(job, range(100), threads=2):
            got.append(r)
    assert got == [0, 1, 2, 3] and len(running) < 20  # the rest was never started


def test_one_thread_runs_in_the_caller():
    me = threading.get_ident()
    assert set(ordered_map(lambda _k: threading.get_ident(), range(5), threads=1)) == {me}
    with case_threads(1):
        assert current_threads() == 1
    with case_threads(3):
        assert current_threads() == 3
    with pytest.raises(ValueError, match="at least 1"), case_threads(0):
        pass


# -- prepare on threads, store in order -----------------------------------------------------------
def test_prepared_masks_are_stored_in_add_order(tmp_path):
    rng = np.random.default_rng(0)
    masks = {f"m{k}": rng.random(tuple(SPACE.shape)) > 0.7 for k in range(6)}
    with MaskArchive(tmp_path / "a.mska", "w", space=SPACE) as ar:
        ready = list(ordered_map(lambda kv: ar.prepare(kv[0], kv[1]), masks.items(), threads=3))
        assert all(isinstance(r, PreparedMask) for r in ready)
        for (name, _m), r in zip(reversed(masks.items()), reversed(ready), strict=True):
            ar.add(name, r)  # stored in the order added
        with pytest.raises(MaskValidationError, match="prepared for"):
            ar.add("other", ready[0])
    with MaskArchive(tmp_path / "a.mska") as ar:
        assert ar.all_names() == list(reversed(masks))
        for name, m in masks.items():
            assert np.array_equal(ar.read_array(name), m)


def test_a_box_at_an_origin_is_the_mask_on_the_grid(tmp_path):
    box = np.zeros((3, 4, 5), bool)
    box[1, 1:3, 2:] = True
    full = np.zeros(tuple(SPACE.shape), bool)
    full[5:8, 2:6, 7:12] = box
    with MaskArchive(tmp_path / "b.mska", "w", space=SPACE) as ar:
        ar.add("boxed", ar.prepare("boxed", box, origin=(5, 2, 7)))
        with pytest.raises(MaskValidationError, match="does not fit"):
            ar.prepare("out", box, origin=(22, 0, 0))
        with pytest.raises(MaskValidationError, match="boolean"):
            ar.prepare("int", box.astype(np.uint8), origin=(0, 0, 0))
    with MaskArchive(tmp_path / "b.mska") as ar:
        assert np.array_equal(ar.read_array("boxed"), full)
        assert ar.info("boxed").bbox == (6, 7, 3, 5, 9, 12)


def test_records_to_archive_keeps_order_and_attrs_on_any_thread_count(tmp_path):
    rng = np.random.default_rng(1)
    masks = [rng.random(tuple(SPACE.shape)) > 0.8 for _ in range(7)]

    def jobs():
        for k, m in enumerate(masks):
            if k % 2:
                yield lambda m=m, k=k: MaskRecord(f"r{k}", m, {"label_value": k + 1})
            else:  # a box of the grid
                yield MaskRecord(f"r{k}", m[2:20], {"label_value": k + 1}, origin=(2, 0, 0))

    outs = []
    for threads in (1, 4):
        out = tmp_path / f"t{threads}.mska"
        records_to_archive(jobs(), SPACE, out, threads=threads)
        outs.append(out.read_bytes())
        with MaskArchive(out) as ar:
            assert ar.all_names() == [f"r{k}" for k in range(7)]
            assert [ar.info(k).attrs["label_value"] for k in range(7)] == list(range(1, 8))
            for k, m in enumerate(masks):
                want = m.copy()
                if not k % 2:
                    want[:2] = want[20:] = False
                assert np.array_equal(ar.read_array(k), want)
    assert outs[0] == outs[1]  # the same bytes whatever the thread count


# -- a NIfTI case ---------------------------------------------------------------------------------
def _nifti_case(folder, n, seed=0, space=SPACE):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    affine = space_to_affine(space)
    for k in range(n):
        m = np.zeros(tuple(space.shape), np.uint8)
        z, y, x = rng.integers(0, 10, 3)
        m[z : z + 8, y : y + 6, x : x + 5] = 1
        nib.save(nib.Nifti1Image(m.transpose(2, 1, 0), affine), folder / f"organ_{k:02d}.nii.gz")


def test_a_nifti_case_gives_the_same_archive_on_any_thread_count(tmp_path):
    _nifti_case(tmp_path / "case", 9)
    got = []
    for threads in (1, 2, 5):
        with case_threads(threads):
            rep = to_archive(tmp_path / "case", tmp_path / f"c{threads}.mska")
        assert rep.masks == [f"organ_{k:02d}" for k in range(9)]
        got.append((tmp_path / f"c{threads}.mska").read_bytes())
    assert got[0] == got[1] == got[2]


def test_peak_memory_is_a_few_masks_not_the_case(tmp_path):
    n = 40
    space = Space(shape=(128, 128, 64), spacing=(0.9, 0.8, 2.0)).reverse_axis_order()
    _nifti_case(tmp_path / "case", n, seed=2, space=space)
    mask_bytes = int(np.prod(space.shape))  # one mask, 1 MiB (the files hold uint8 masks)
    tracemalloc.start()
    try:
        folder_to_archive(tmp_path / "case", tmp_path / "c.mska", threads=2)
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 2 threads, 2 masks queued ahead, each read (uint8) and held as a mask: ~10 masks at
    # most, against 40 in the case
    assert peak < 12 * mask_bytes, f"peak {peak:,} bytes; one mask is {mask_bytes:,}"
