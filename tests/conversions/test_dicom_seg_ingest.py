"""DICOM SEG ingest: frames read as a stream (a 12,000-frame SEG), segments built straight
into their boxes on several threads (equal to highdicom's volumes), SEG series of several
instances, identifiers, and every bad input: truncated files, segments on different frames
of reference, frames that make no grid without the referenced series."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")

from interop_support import (  # noqa: E402
    assert_same_world_voxels,
    highdicom_seg,
    oblique_space,
    write_ct_series,
)
from seg_support import SegGrid, SegIds, square_frames, write_seg  # noqa: E402

from medmask import MaskArchive  # noqa: E402
from medmask.conversions import to_archive  # noqa: E402
from medmask.conversions.common import NeedsOptionError  # noqa: E402
from medmask.conversions.dicom_seg import read_dicom_seg  # noqa: E402
from medmask.conversions.dicom_seg.header import read_dicom_header  # noqa: E402
from medmask.conversions.pipeline import case_threads  # noqa: E402
from medmask.errors import MaskValidationError  # noqa: E402
from medmask.geometry import lps_matrix  # noqa: E402

FRAMES = 12_000


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct")
    space = oblique_space(shape_zyx=(14, 20, 24))
    write_ct_series(folder, space)
    return folder, space


def _masks(shape, n, seed):
    rng = np.random.default_rng(seed)
    out = []
    nz, ny, nx = shape
    for k in range(n):
        m = np.zeros(shape, bool)
        if k % 4 == 3:  # every fourth mask empty: highdicom leaves its frames out
            out.append(m)
            continue
        z0, y0, x0 = rng.integers(0, nz - 4), rng.integers(0, ny - 6), rng.integers(0, nx - 6)
        m[z0 : z0 + rng.integers(2, 5), y0 : y0 + 6, x0 : x0 + 5] = True
        m[z0, y0, x0 + 5 :] = True  # a thin tail: boxes are not cubes
        out.append(m)
    return out


# -- streaming: never all frames in memory ---------------------------------------------------
@pytest.fixture(scope="module")
def big_seg(tmp_path_factory):
    """A BINARY SEG of 12,000 frames of 256 x 256 (98 MB of bits): 400 segments of 30
    slices each, a square per slice."""
    grid = SegGrid(256, 256)
    segments = []
    for k in range(400):
        z0 = k % 50
        segments.append(
            (
                f"s{k:03d}",
                square_frames(grid, list(range(z0, z0 + 30)), (7 * k) % 200, (13 * k) % 200, 40),
            )
        )
    path = tmp_path_factory.mktemp("big") / "big.dcm"
    write_seg(path, grid, segments)
    return path, grid


def test_a_12000_frame_seg_is_read_as_a_stream(big_seg, tmp_path):
    path, grid = big_seg
    frame_bytes = FRAMES * grid.rows * grid.cols // 8
    assert path.stat().st_size > frame_bytes
    tracemalloc.start()
    try:
        with case_threads(2):
            report = to_archive(path, tmp_path / "big.mska")
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the frames' bits alone are 98 MB (786 MB unpacked); a few segments are in memory
    assert peak < frame_bytes / 4, f"peak {peak:,} bytes for {frame_bytes:,} bytes of frames"
    assert len(report.masks) == 400
    with MaskArchive(tmp_path / "big.mska") as ar:
        assert ar.space.shape == (79, 256, 256)
        for k in (0, 137, 399):
            box = ar.info(f"s{k:03d}").bbox
            z0, top, left = k % 50, (7 * k) % 200, (13 * k) % 200
            assert box == (z0, z0 + 30, top, top + 40, left, left + 40)
            assert ar.info(f"s{k:03d}").voxels == 30 * 40 * 40


def test_a_seg_is_told_from_other_dicom_by_its_header_alone(big_seg, series):
    """Sorting a collection reads a file's first bytes (its SOP class and identifiers), never
    its per-frame groups or pixel data: for the 12,000-frame SEG, a small fraction of it."""
    from medmask.conversions.dicom_seg import SEG_SOP_CLASS

    path, _grid = big_seg
    asked: list[int] = []

    def read(n: int) -> bytes:
        asked.append(n)
        with open(path, "rb") as fh:
            return fh.read(n)

    header = read_dicom_header(path, read=read)
    assert header.is_seg and header.sop_class == SEG_SOP_CLASS
    assert max(asked) * 50 < path.stat().st_size, (asked, path.stat().st_size)
    ct = sorted(series[0].glob("*.dcm"))[0]
    other = read_dicom_header(ct)
    assert other is not None and not other.is_seg
    assert other.sop_class == "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage


# -- equal to highdicom, on several threads ------------------------------------------------------
@pytest.mark.parametrize("threads", [1, 3])
def test_boxed_segments_equal_highdicom_volumes(tmp_path, series, threads):
    folder, space = series
    masks = _masks(tuple(space.shape), 9, seed=threads)
    names = [f"m{k}" for k in range(9)]
    highdicom_seg(folder, masks, names, tmp_path / "in.dcm")
    seg = hd.seg.segread(str(tmp_path / "in.dcm"))
    with case_threads(threads):
        to_archive(tmp_path / "in.dcm", tmp_path / "own.mska")
        to_archive(tmp_path / "in.dcm", tmp_path / "full.mska", reference=folder)
    with MaskArchive(tmp_path / "own.mska") as own, MaskArchive(tmp_path / "full.mska") as full:
        assert own.all_names() == names == full.all_names()
        for k, n in enumerate(names):
            assert np.array_equal(full.read_array(n), masks[k])  # the series' full grid
            if not masks[k].any():
                assert own.info(n).voxels == 0
                continue
            vol = seg.get_volume(segment_numbers=[k + 1], combine_segments=False)
            assert_same_world_voxels(own.read_array(n), own.space, vol.array[..., 0], vol.affine)


# -- a SEG series of several instances ------------------------------------------------------------
def test_instances_of_one_series_make_one_archive(tmp_path):
    grid = SegGrid(32, 40)
    ids = SegIds(series="1.2.3.4.5", frame_of_reference="1.2.3.9", study="1.2.3.7")
    a = write_seg(
        tmp_path / "a.dcm",
        grid,
        [("liver", square_frames(grid, [0, 1, 2], 3, 4, 5))],
        ids=ids,
    )
    b = write_seg(
        tmp_path / "b.dcm",
        grid,
        [
            ("liver", square_frames(grid, [6, 7], 10, 11, 6)),
            ("spleen", square_frames(grid, [3], 0, 0, 2)),
        ],
        ids=ids,
        instance_number=2,
    )
    with read_dicom_seg(a, instances=[b]) as seg:
        assert seg.names == ["liver", "liver (2)", "spleen"] and seg.renamed == {
            "liver (2)": "liver"
        }
        assert seg.space.shape == (8, 32, 40)
        recs = list(seg.records)
        assert isinstance(seg.ids["SOPInstanceUID"], list) and len(seg.ids["SOPInstanceUID"]) == 2
    assert np.flatnonzero(recs[0].array.any(axis=(1, 2))).tolist() == [0, 1, 2]
    assert np.flatnonzero(recs[1].array.any(axis=(1, 2))).tolist() == [6, 7]
    assert recs[2].array[3, :2, :2].all() and recs[2].array.sum() == 4
    m = lps_matrix(seg.space)
    assert np.allclose(m[:3, 3], grid.position(0)) and np.isclose(m[2, 2], grid.step)


def test_instances_on_different_frames_of_reference_are_refused(tmp_path):
    grid = SegGrid(16, 16)
    a = write_seg(
        tmp_path / "a.dcm",
        grid,
        [("a", square_frames(grid, [0], 1, 1, 3))],
        ids=SegIds(series="1.2.3", frame_of_reference="1.2.3.100"),
    )
    b = write_seg(
        tmp_path / "b.dcm",
        grid,
        [("b", square_frames(grid, [1], 1, 1, 3))],
        ids=SegIds(series="1.2.3", frame_of_reference="1.2.3.200"),
    )
    with pytest.raises(MaskValidationError, match="another frame of reference") as info:
        read_dicom_seg(a, instances=[b])
    assert "b.dcm" in str(info.value) and "1.2.3.200" in str(info.value)
    assert "not comparable" in str(info.value)


# -- identifiers -------------------------------------------------------------------------------
def test_identifiers_from_the_header(tmp_path):
    grid = SegGrid(8, 8)
    ids = SegIds(patient="PAT-7", study="1.2.3.7", series="1.2.3.8", sop_instance="1.2.3.9")
    path = write_seg(tmp_path / "s.dcm", grid, [("x", square_frames(grid, [0], 0, 0, 2))], ids=ids)
    header = read_dicom_header(path)
    assert header.is_seg and header.series_uid == "1.2.3.8"
    assert header.referenced_series == [ids.referenced_series]
    assert header.ids == {
        "PatientID": "PAT-7",
        "StudyInstanceUID": "1.2.3.7",
        "SeriesInstanceUID": ids.referenced_series,
        "SegSeriesInstanceUID": "1.2.3.8",
        "SOPInstanceUID": "1.2.3.9",
        "Modality": "SEG",
        "AlgorithmName": "TotalSegmentator",
        "AlgorithmVersion": "2.4.0",
    }
    assert header.attribute("PatientID") == "PAT-7" and header.attribute("Nope") is None
    report = to_archive(path, tmp_path / "s.mska")
    assert report.ids == header.ids
    with MaskArchive(tmp_path / "s.mska") as ar:  # `medmask pack` keeps them as `source`
        assert ar.archive_attrs["source"] == {**header.ids, "path": "s.dcm"}
        assert ar.grid_kind == "segmentation"  # no reference series given
    to_archive(path, tmp_path / "v1.mska", codec="zstd")  # version 1 holds none
    with MaskArchive(tmp_path / "v1.mska") as ar:
        assert ar.archive_attrs == {} and len(ar) == 1
    (tmp_path / "plain.txt").write_text("not DICOM")
    assert read_dicom_header(tmp_path / "plain.txt") is None


def test_identifiers_of_segments_by_different_algorithms_are_strings(tmp_path):
    """Distinct algorithm names/versions of a SEG's segments are joined by DICOM's ``\\``:
    the reserved keys of the archive's ``source`` attribute must be strings."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from medmask.attrs import validate_archive_attrs
    from medmask.conversions.dicom_seg import seg_identifiers

    segs = []
    for name, version in (("TotalSegmentator", "2.4.0"), ("MOOSE", "3.0"), ("MOOSE", "3.0")):
        seg, ident = Dataset(), Dataset()
        seg.SegmentAlgorithmName = name
        ident.AlgorithmName, ident.AlgorithmVersion = name, version
        seg.SegmentationAlgorithmIdentificationSequence = Sequence([ident])
        segs.append(seg)
    ds = Dataset()
    ds.PatientID, ds.SOPInstanceUID = "P1", "1.2.3"
    ds.SegmentSequence = Sequence(segs)
    ids = seg_identifiers(ds)
    assert ids["AlgorithmName"] == "TotalSegmentator\\MOOSE"
    assert ids["AlgorithmVersion"] == "2.4.0\\3.0"
    assert validate_archive_attrs({"source": ids})["source"] == ids


# -- bad input ---------------------------------------------------------------------------------
def test_truncated_seg_is_named_truncated(tmp_path, series):
    folder, space = series
    masks = _masks(tuple(space.shape), 4, seed=5)
    whole = highdicom_seg(folder, masks, list("abcd"), tmp_path / "whole.dcm").read_bytes()
    for cut, where in ((len(whole) - 500, "pixels"), (len(whole) // 8, "header")):
        bad = tmp_path / f"cut_{where}.dcm"
        bad.write_bytes(whole[:cut])
        with pytest.raises(MaskValidationError) as info:
            to_archive(bad, tmp_path / f"{where}.mska")
        assert str(bad) in str(info.value) and "truncated or damaged" in str(info.value), where
        assert not (tmp_path / f"{where}.mska").exists()


def test_missing_reference_packs_on_own_positions_or_says_what_is_missing(tmp_path):
    grid = SegGrid(12, 12)
    regular = write_seg(
        tmp_path / "regular.dcm", grid, [("a", square_frames(grid, [0, 2, 3], 1, 1, 4))]
    )
    report = to_archive(regular, tmp_path / "r.mska")
    assert any("hold no segment" in n for n in report.notes)
    with MaskArchive(tmp_path / "r.mska") as ar:
        assert ar.space.shape == (4, 12, 12)
        assert ar.read_array("a").any(axis=(1, 2)).tolist() == [True, False, True, True]
    # positions 0, 1 and 2.5 steps: no regular grid; the referenced series is named
    odd = write_seg(tmp_path / "odd.dcm", grid, [("a", square_frames(grid, [0, 1, 2.5], 1, 1, 4))])
    with pytest.raises(MaskValidationError, match="irregular slice spacing") as info:
        to_archive(odd, tmp_path / "o.mska")
    text = str(info.value)
    assert "odd.dcm" in text and SegIds().referenced_series in text and "--reference" in text


def test_truly_fractional_seg_needs_a_threshold(tmp_path, series):
    folder, space = series
    masks = _masks(tuple(space.shape), 1, seed=3)
    highdicom_seg(
        folder,
        masks,
        ["p"],
        tmp_path / "fr.dcm",
        seg_type="FRACTIONAL",
        fractional=[masks[0] * 0.4],
    )
    with pytest.raises(NeedsOptionError, match="--threshold"):
        to_archive(tmp_path / "fr.dcm", tmp_path / "fr.mska")
    to_archive(tmp_path / "fr.dcm", tmp_path / "fr.mska", threshold=0.3)
    with MaskArchive(tmp_path / "fr.mska") as ar:
        assert ar.read_array("p").sum() == masks[0].sum()


def test_a_seg_file_is_closed_after_packing(tmp_path):
    grid = SegGrid(8, 8)
    path = write_seg(tmp_path / "s.dcm", grid, [("x", square_frames(grid, [0, 1], 0, 0, 2))])
    seg = read_dicom_seg(path)
    list(seg.records)
    assert seg._sources[0]._fd is not None
    seg.close()
    assert seg._sources[0]._fd is None


def test_frames_are_read_once_each(tmp_path, monkeypatch):
    """Each segment reads its own frames, once (no whole-file reads, no repeats)."""
    from medmask.conversions.dicom_seg import pixels

    grid = SegGrid(16, 16)
    segments = [(f"s{k}", square_frames(grid, [k, k + 1, k + 2], k, k, 3)) for k in range(5)]
    path = write_seg(tmp_path / "s.dcm", grid, segments)
    reads: list[tuple[int, int]] = []
    real = pixels.FrameSource._pread

    def counting(self, start, end):
        reads.append((start, end))
        return real(self, start, end)

    monkeypatch.setattr(pixels.FrameSource, "_pread", counting)
    with case_threads(2):
        to_archive(path, tmp_path / "s.mska")
    frame = 16 * 16 // 8
    assert sorted(reads) == [(3 * k * frame, 3 * (k + 1) * frame) for k in range(5)]


def test_header_of_a_truncated_file_is_an_error_naming_it(tmp_path):
    grid = SegGrid(8, 8)
    path = write_seg(tmp_path / "s.dcm", grid, [("x", square_frames(grid, [0], 0, 0, 2))])
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(path.read_bytes()[:300])
    with pytest.raises(MaskValidationError, match="truncated or damaged") as info:
        read_dicom_header(cut)
    assert str(cut) in str(info.value)
