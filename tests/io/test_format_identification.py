"""The format table answers "what kind of file is this?" from real files' first bytes: every
built-in entry is recognised from bytes written by its own tools (nibabel, pynrrd, Slicer,
highdicom, pydicom, zipfile, pyarrow...), gzip is looked into, a DICOM SEG is told from other
DICOM by its file meta alone, and damaged or hostile bytes never raise."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from medmask import MaskArchive, SegmentationMask, save_mask
from medmask.io import Target
from medmask.io.formats import (
    HEAD_BYTES,
    SEG_SOP_CLASSES,
    FileFormat,
    dicom_sop_class,
    formats,
    get_format,
    identify,
    identify_target,
)
from medmask.spaces import Space

#: The interchange samples, in the folder of the ``interchange`` fixture (MEDMASK_INTERCHANGE).
SLICER_FILE = "Segmentation.seg.nrrd"
SEG_FILE = "seg_image_ct_binary.dcm"


def kind(data: bytes) -> str | None:
    fmt = identify(data[:HEAD_BYTES])
    return None if fmt is None else fmt.kind


def _nifti_bytes(klass_name: str = "Nifti1Image", endian: str = "<", dtype=np.uint8) -> bytes:
    nib = pytest.importorskip("nibabel")
    klass = getattr(nib, klass_name)
    header = klass.header_class(endianness=endian)
    img = klass(np.zeros((4, 5, 6), dtype), np.eye(4), header=header)
    return img.to_bytes()


def _space() -> Space:
    return Space(shape=(3, 4, 5), spacing=(1.0, 1.0, 1.0))


# -- every built-in entry, from real bytes -------------------------------------------------------
def test_medmask_files(tmp_path):
    space = _space()
    seg = SegmentationMask(np.ones((3, 4, 5), bool), {"m": 1}, space)
    save_mask(seg, tmp_path / "m.msk")
    with MaskArchive(tmp_path / "a.mska", "w", space=space) as ar:
        ar.add_segmask(seg, "m")
    assert kind((tmp_path / "m.msk").read_bytes()) == "msk"
    assert kind((tmp_path / "a.mska").read_bytes()) == "mska"
    save_mask(seg, tmp_path / "v1.msk", codec="zstd")
    assert kind((tmp_path / "v1.msk").read_bytes()) == "msk"


@pytest.mark.parametrize(
    ("klass", "endian"),
    [("Nifti1Image", "<"), ("Nifti1Image", ">"), ("Nifti2Image", "<"), ("Nifti2Image", ">")],
)
def test_nifti_plain_and_gzipped_any_byte_order(klass, endian):
    raw = _nifti_bytes(klass, endian)
    assert kind(raw) == "nifti"
    assert kind(gzip.compress(raw)) == "nifti"  # .nii.gz: the gzip stream is looked into
    assert kind(gzip.compress(raw)[:64]) == "nifti"  # the first compressed bytes suffice


def test_nifti_written_by_nibabel_to_disk_is_identified_by_path(tmp_path):
    nib = pytest.importorskip("nibabel")
    img = nib.Nifti1Image(np.zeros((4, 5, 6), np.uint8), np.eye(4))
    nib.save(img, str(tmp_path / "m.nii.gz"))
    nib.save(img, str(tmp_path / "m.nii"))
    (tmp_path / "renamed.bin").write_bytes((tmp_path / "m.nii.gz").read_bytes())
    for name in ("m.nii.gz", "m.nii", "renamed.bin"):
        assert identify_target(tmp_path / name).kind == "nifti", name


@pytest.mark.realdata
def test_slicer_sample_is_a_seg_nrrd(interchange):
    assert kind((interchange / SLICER_FILE).read_bytes()) == "seg.nrrd"


def test_our_own_seg_nrrd_and_plain_nrrd(tmp_path):
    nrrd = pytest.importorskip("nrrd")
    from medmask.conversions.common import MaskRecord
    from medmask.conversions.slicer import write_seg_nrrd

    space = _space()
    write_seg_nrrd([MaskRecord("m", np.ones((3, 4, 5), bool))], space, tmp_path / "o.seg.nrrd")
    assert kind((tmp_path / "o.seg.nrrd").read_bytes()) == "seg.nrrd"
    nrrd.write(str(tmp_path / "image.nrrd"), np.zeros((4, 5, 6), np.int16))
    raw = (tmp_path / "image.nrrd").read_bytes()
    assert kind(raw) == "nrrd"
    assert kind(gzip.compress(raw)) == "nrrd"  # a gzipped NRRD image is still an image


@pytest.mark.realdata
def test_the_highdicom_seg_sample_is_a_dicom_seg(interchange):
    seg = (interchange / SEG_FILE).read_bytes()
    assert kind(seg) == "dicom-seg"
    assert dicom_sop_class(seg) in SEG_SOP_CLASSES


def test_images_from_pydicom_are_dicom():
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    assert kind(ct) == "dicom"
    assert dicom_sop_class(ct) == pydicom.uid.CTImageStorage


@pytest.mark.realdata
def test_a_seg_is_told_by_its_file_meta_alone(interchange):
    """No pixel data and no dataset: the first few hundred bytes say it is a SEG."""
    seg = (interchange / SEG_FILE).read_bytes()
    meta_end = 132 + 12 + int.from_bytes(seg[140:144], "little")  # (0002,0000) group length
    assert kind(seg[:meta_end]) == "dicom-seg"
    sop_at = seg.index(b"\x02\x00\x02\x00UI")  # (0002,0002) Media Storage SOP Class UID
    assert kind(seg[: sop_at + 10]) == "dicom"  # the SOP class cut off: just DICOM


@pytest.mark.parametrize("seg_type", ["BINARY", "LABELMAP", "FRACTIONAL"])
def test_every_seg_type_highdicom_writes(tmp_path, seg_type):
    pytest.importorskip("highdicom")
    from interop_support import highdicom_seg, oblique_space, write_ct_series

    space = oblique_space()
    write_ct_series(tmp_path / "ct", space)
    m = np.zeros(tuple(int(s) for s in space.shape), bool)
    m[1:3, 2:5, 3:6] = True
    out = highdicom_seg(
        tmp_path / "ct",
        [m],
        ["liver"],
        tmp_path / "seg.dcm",
        seg_type=seg_type,
        fractional=[m.astype(np.float32) * 0.5],
    )
    assert identify_target(out).kind == "dicom-seg"
    assert identify_target(next((tmp_path / "ct").iterdir())).kind == "dicom"


def test_containers_and_outputs(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "hello")
    assert kind(buf.getvalue()) == "zip"
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    assert kind(empty.getvalue()) == "zip"
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    assert kind((tmp_path / "x.npz").read_bytes()) == "zip"  # no npz entry: a zip
    assert kind(gzip.compress(b"hello, not a NIfTI image" * 30)) == "gzip"
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "t.parquet")
    assert kind((tmp_path / "t.parquet").read_bytes()) == "parquet"
    plt = pytest.importorskip("matplotlib.pyplot")
    plt.imsave(tmp_path / "p.png", np.zeros((4, 4)))
    assert kind((tmp_path / "p.png").read_bytes()) == "png"
    # JSON and CSV are known by name only: their bytes say nothing reliable
    assert kind(json.dumps({"liver": 1}).encode()) is None
    assert kind(b"name,voxels\nliver,3\n") is None


def test_folders_missing_files_and_urls(tmp_path):
    (tmp_path / "case").mkdir()
    assert identify_target(tmp_path / "case").kind == "folder"
    ds = tmp_path / "Dataset001"
    (ds / "labelsTr").mkdir(parents=True)
    (ds / "dataset.json").write_text('{"labels": {"background": 0}}')
    assert identify_target(ds).kind == "nnunet"
    with pytest.raises(FileNotFoundError):
        identify_target(tmp_path / "missing.nii.gz")
    with pytest.raises(ValueError, match="Target"):
        identify_target("memory://bucket/x.msk")
    fsspec = pytest.importorskip("fsspec")
    with fsspec.open("memory://formats/x.bin", "wb") as fh:
        fh.write(gzip.compress(_nifti_bytes()))
    assert identify_target(Target.of("memory://formats/x.bin")).kind == "nifti"
    assert identify_target(Target.of("memory://formats/")) is None


# -- robustness ---------------------------------------------------------------------------------
def _identify_every_cut(data: bytes) -> None:
    for cut in range(0, min(len(data), 700), 7):
        identify(data[:cut])  # any answer, never an exception


def test_truncated_and_random_bytes_never_raise():
    samples = [
        _nifti_bytes(),
        gzip.compress(_nifti_bytes()),
        b"NRRD0004\ntype: short\n",
        b"\0" * 128 + b"DICM" + b"\x02\x00\x02\x00UI\xff\xff",  # length beyond the data
        b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00OB\0\0\xff\xff\xff\xff",  # undefined length
        b"MSKA",
        b"\x1f\x8b\x08\x00garbage",
    ]
    rng = np.random.default_rng(0)
    samples += [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in (0, 1, 347, 5000)]
    for data in samples:
        _identify_every_cut(data)


@pytest.mark.realdata
def test_truncated_samples_never_raise(interchange):
    for name in (SEG_FILE, SLICER_FILE):
        _identify_every_cut((interchange / name).read_bytes()[:4096])


def test_lookup_order_and_entries_are_declared():
    table = formats()
    kinds = [f.kind for f in table]
    assert len(kinds) == len(set(kinds))
    fallback = [f.fallback for f in table]
    assert fallback == sorted(fallback)  # the specific entries come first
    assert kinds.index("seg.nrrd") < kinds.index("nrrd")
    assert kinds.index("dicom-seg") < kinds.index("dicom")
    for fmt in table:
        assert isinstance(fmt, FileFormat) and fmt.title
        assert all(s.startswith(".") and s == s.lower() for s in fmt.suffixes)
        if fmt.capabilities.unpack or fmt.capabilities.tree:
            assert fmt.output_name, fmt.kind
        assert fmt.unpack_requires <= fmt.unpack_options
    with pytest.raises(KeyError, match="known"):
        get_format("no-such-format")


def test_a_descriptor_without_its_converter_says_so():
    """The core can identify a file without medmask.conversions; converting one needs it."""
    from medmask.io.formats.builtin import Nifti

    with pytest.raises(Exception, match="needs medmask.conversions"):
        Nifti().read("x.nii.gz", "x.mska")
    with pytest.raises(Exception, match="'medmask pack' does not read these"):
        get_format("zip").read("x.zip", "x.mska")
