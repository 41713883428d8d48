"""DICOM SEG export (issue 22, items 8 and 9): built by medmask, checked by highdicom and
pydicom; LABELMAP SEGs from overlapping masks with the label maps' --overlap rules and loss
report; progress on stderr whatever stdout is.

The SEGs are read back with highdicom (``segread``, ``get_volume``: the same voxels at the
same world positions), with pydicom validating every value on reading (``RAISE``), and
with medmask's own reader.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop_support import assert_same_world_voxels, oblique_space, write_ct_series  # noqa: E402

from medmask import MaskArchive, SegmentationMask  # noqa: E402
from medmask.conversions import NeedsOptionError, from_archive, to_archive  # noqa: E402
from medmask.conversions.dicom_seg import write_dicom_seg  # noqa: E402
from medmask.errors import MaskValidationError, SpaceMismatchError  # noqa: E402

hd = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")
EXE = shutil.which("medmask", path=str(Path(sys.executable).parent))
SHAPE = (7, 12, 10)  # (z, y, x)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct")
    space = oblique_space(SHAPE)
    write_ct_series(folder, space)
    return folder, space


def _masks() -> dict[str, np.ndarray]:
    big = np.zeros(SHAPE, bool)
    big[1:6, 2:10, 1:8] = True
    small = np.zeros(SHAPE, bool)
    small[3:5, 4:6, 5:9] = True  # half inside big
    inside = np.zeros(SHAPE, bool)
    inside[2, 3, 2:4] = True  # all inside big
    far = np.zeros(SHAPE, bool)
    far[6, 0:2, 8:10] = True
    return {"big": big, "small": small, "inside": inside, "far": far, "none": np.zeros(SHAPE, bool)}


@pytest.fixture
def archive(tmp_path, series):
    _, space = series
    masks = _masks()
    path = tmp_path / "case.mska"
    with MaskArchive(path, "w", space=space) as ar:
        for name, m in masks.items():
            attrs = None
            if name == "big":
                attrs = {
                    "color": [200, 30, 40],
                    "description": "the big one",
                    "type": {"scheme": "SCT", "value": "10200004", "meaning": "Liver"},
                }
            ar.add(name, SegmentationMask(m, {name: 1}, space), attrs=attrs)
        two = np.zeros(SHAPE, np.uint8)
        two[0, 0:3, 0:3], two[0, 5:8, 0:3] = 1, 2
        ar.add("pair", SegmentationMask(two, {"left": 1, "right": 2}, space))
    return path, masks, two


def _validated(path: Path):
    """The dataset, every value decoded by pydicom with its validation raising."""
    from pydicom import config

    saved = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.RAISE
    try:
        ds = pydicom.dcmread(path)
        n = sum(1 for el in ds.iterall() if el.value is not None or el.is_empty)
        pydicom.dataset.validate_file_meta(ds.file_meta, enforce_standard=True)
    finally:
        config.settings.reading_validation_mode = saved
    assert n > 100
    return ds


def test_binary_seg_reads_back_the_same_voxels(archive, series, tmp_path):
    path, masks, two = archive
    folder, space = series
    res = write_dicom_seg(path, tmp_path / "seg.dcm", folder)
    ds = _validated(tmp_path / "seg.dcm")
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and ds.SegmentationType == "BINARY"
    assert ds.SegmentsOverlap == "YES" and ds.BitsAllocated == 1
    seg = hd.seg.segread(str(tmp_path / "seg.dcm"))
    names = ["big", "small", "inside", "far", "none", "pair:left", "pair:right"]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == names
    assert res.numbers == {n: k + 1 for k, n in enumerate(names)}
    expected = [*masks.values(), two == 1, two == 2]
    # one frame per non-empty slice of each segment
    assert (
        int(ds.NumberOfFrames) == res.frames == sum(int(m.any(axis=(1, 2)).sum()) for m in expected)
    )
    for k, m in enumerate(expected):
        if not m.any():
            continue
        vol = seg.get_volume(segment_numbers=[k + 1], combine_segments=False)
        assert_same_world_voxels(m, space, vol.array[..., 0], vol.affine)
    big = seg.SegmentSequence[0]
    assert big.SegmentDescription == "the big one"
    assert big.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Liver"
    ref = seg.ReferencedSeriesSequence[0]
    assert len(ref.ReferencedInstanceSequence) == SHAPE[0]
    # medmask reads it back exactly on the series' grid
    to_archive(tmp_path / "seg.dcm", tmp_path / "back.mska", reference=folder)
    with MaskArchive(tmp_path / "back.mska") as back:
        for n, m in zip(names, expected, strict=True):
            np.testing.assert_array_equal(back.read_array(n), m)
        assert back.info("big").attrs["color"] == [200, 30, 40]


@pytest.mark.parametrize("rule", ["last", "first", "smaller"])
def test_labelmap_seg_of_overlapping_masks_follows_the_label_map_rules(
    archive, series, tmp_path, rule
):
    path, _masks_, _two = archive
    folder, _space = series
    names = ["big", "small", "inside", "far"]
    rep = from_archive(
        path, tmp_path / "lm.dcm", source=folder, labelmap_seg=True, overlap=rule, names=names
    )
    nii = from_archive(
        path, tmp_path / "lm.nii.gz", overlap=rule, labels={n: k + 1 for k, n in enumerate(names)}
    )
    # the same painter: the same voxels lost, the same report
    assert (rep.lost, rep.emptied, rep.voxels) == (nii.lost, nii.emptied, nii.voxels)
    took = (
        {"small": ["big"], "inside": ["big"]} if rule == "first" else {"big": ["small", "inside"]}
    )
    assert rep.taken_by == nii.taken_by == took  # who took the voxels is named too
    assert rep.lost  # the masks overlap: something was lost, and reported
    ds = _validated(tmp_path / "lm.dcm")
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7" and ds.BitsAllocated == 8
    assert ds.SegmentSequence[0].SegmentNumber == 0  # the background
    import nibabel as nib

    labels = np.asarray(nib.load(str(tmp_path / "lm.nii.gz")).dataobj).transpose(2, 1, 0)
    to_archive(tmp_path / "lm.dcm", tmp_path / "back.mska", reference=folder)
    with MaskArchive(tmp_path / "back.mska") as back:
        for k, n in enumerate(names):
            np.testing.assert_array_equal(back.read_array(n), labels == k + 1)
    seg = hd.seg.segread(str(tmp_path / "lm.dcm"))
    assert [int(v) for v in seg.segment_numbers] == [1, 2, 3, 4]


def _run(*args, stderr_tty: bool = False):
    cmd = [EXE, *map(str, args)] if EXE else [sys.executable, "-m", "medmask", *map(str, args)]
    if not stderr_tty:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a real width
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    err = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        err += chunk
    out = proc.stdout.read()
    proc.wait(timeout=300)
    os.close(master)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err.decode("utf-8", "replace"))


def test_the_command_line_reports_losses_names_both_masks_and_shows_progress(
    archive, series, tmp_path
):
    path, _masks_, _two = archive
    folder, _space = series
    r = _run(
        "unpack", path, "-o", tmp_path / "lm.dcm", "--source", folder, "--seg-type", "labelmap"
    )
    assert r.returncode == 0, r.stderr
    assert "voxels lost to overlaps (rule --overlap last: the later mask wins):" in r.stdout
    assert "  big: 14 of 280 (to small, inside)" in r.stdout
    r = _run(
        "unpack", path, "-o", tmp_path / "lm2.dcm", "--source", folder, "--seg-type", "labelmap",
        "--overlap", "first",
    )  # fmt: skip
    assert r.returncode == 0
    assert "mask 'inside' lost all its 2 voxels to big" in r.stderr  # both masks named
    assert "  small: " in r.stdout and "(to big)" in r.stdout
    r = _run("unpack", path, "-o", tmp_path / "b.dcm", "--source", folder, "--overlap", "first")
    assert r.returncode == 2 and "--overlap settles overlaps in label maps" in r.stderr
    # stdout a pipe, stderr a terminal: the progress bar is there
    r = _run("unpack", path, "-o", tmp_path / "p.dcm", "--source", folder, stderr_tty=True)
    assert r.returncode == 0 and "wrote " in r.stdout
    assert "unpacking:" in r.stderr and "/7 [" in r.stderr, r.stderr  # tqdm, 7 segments


def test_binary_overlap_rules_and_bad_inputs(archive, series, tmp_path):
    path, _masks_, _two = archive
    folder, space = series
    with pytest.raises(NeedsOptionError, match="BINARY SEG keeps them"):
        from_archive(path, tmp_path / "x.dcm", source=folder, overlap="smaller")
    with pytest.raises(MaskValidationError, match="overlap must be one of"):
        write_dicom_seg(path, tmp_path / "x.dcm", folder, labelmap=True, overlap="biggest")
    other = tmp_path / "other.mska"
    shifted = oblique_space(SHAPE, origin=(-19.0, 15.0, 30.0))
    with MaskArchive(other, "w", space=shifted) as ar:
        ar.add("a", SegmentationMask(_masks()["big"], {"a": 1}, shifted))
    with pytest.raises(SpaceMismatchError, match="the source series' grid is not the archive's"):
        write_dicom_seg(other, tmp_path / "x.dcm", folder)
    assert not (tmp_path / "x.dcm").exists()
    # a .msk: its labels, one segment each
    msk = tmp_path / "pair.msk"
    two = np.zeros(SHAPE, np.uint8)
    two[1:3, 1:3, 1:3], two[4:6, 4:6, 4:6] = 1, 2
    SegmentationMask(two, {"l": 1, "r": 2}, space).save(msk)
    res = write_dicom_seg(msk, tmp_path / "msk.dcm", folder)
    assert list(res.numbers) == ["pair:l", "pair:r"]
    seg = hd.seg.segread(str(tmp_path / "msk.dcm"))
    vol = seg.get_volume(segment_numbers=[2], combine_segments=False)
    assert_same_world_voxels(two == 2, space, vol.array[..., 0], vol.affine)
    assert json.dumps(res.numbers)  # plain data
    # masks that do not overlap: SegmentsOverlap says so
    write_dicom_seg(path, tmp_path / "apart.dcm", folder, names=["big", "far"])
    assert _validated(tmp_path / "apart.dcm").SegmentsOverlap == "NO"


@pytest.mark.realdata
def test_the_real_case_exports_and_reads_back_exactly(real_case, tmp_path):
    to_archive(real_case, tmp_path / "case.mska")
    with MaskArchive(tmp_path / "case.mska") as ar:
        space = ar.space
        names = ar.all_names()
    write_ct_series(tmp_path / "ct", space)
    res = write_dicom_seg(tmp_path / "case.mska", tmp_path / "seg.dcm", tmp_path / "ct")
    assert res.frames == 1275  # the non-empty slices of the 21 non-empty masks
    _validated(tmp_path / "seg.dcm")
    seg = hd.seg.segread(str(tmp_path / "seg.dcm"))
    assert len(seg.SegmentSequence) == 117
    with MaskArchive(tmp_path / "case.mska") as ar:
        for n in ("colon", "urinary_bladder", "femur_left", "rib_right_12"):
            vol = seg.get_volume(segment_numbers=[names.index(n) + 1], combine_segments=False)
            assert_same_world_voxels(ar.read_array(n), space, vol.array[..., 0], vol.affine)
