"""Interchange: Slicer .seg.nrrd, DICOM SEG, TotalSegmentator label maps; in and out, against
files written by slicerio/pynrrd, highdicom and pydicom as well as by medmask."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nibabel")
nrrd = pytest.importorskip("nrrd")
slicerio = pytest.importorskip("slicerio")
pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")

from interop_support import (  # noqa: E402
    assert_same_world_voxels,
    caret_labelmap,
    highdicom_seg,
    oblique_space,
    write_ct_series,
)

from medmask import MaskArchive  # noqa: E402
from medmask.cli import main  # noqa: E402
from medmask.conversions import from_archive, to_archive  # noqa: E402
from medmask.conversions.detect import detect  # noqa: E402
from medmask.conversions.dicom_seg import read_dicom_seg, read_series_geometry  # noqa: E402
from medmask.conversions.slicer import read_seg_nrrd  # noqa: E402
from medmask.errors import MaskValidationError, SpaceMismatchError  # noqa: E402
from medmask.geometry import lps_matrix  # noqa: E402

#: The interchange samples, in the folder of the ``interchange`` fixture (MEDMASK_INTERCHANGE).
SLICER_FILE = "Segmentation.seg.nrrd"
SEG_FILE = "seg_image_ct_binary.dcm"
CT2 = Path(pydicom.__file__).parent / "data" / "test_files" / "dicomdirtests" / "77654033" / "CT2"


def blobs(shape, seed=0, n=3, overlap=True):
    """``n`` boxy masks on ``shape``; the first two overlap when ``overlap``."""
    rng = np.random.default_rng(seed)
    out = []
    nz, ny, nx = shape
    for _k in range(n):
        m = np.zeros(shape, bool)
        z0, y0, x0 = rng.integers(0, nz // 2), rng.integers(0, ny // 2), rng.integers(0, nx // 2)
        m[z0 : z0 + nz // 2, y0 : y0 + ny // 2, x0 : x0 + nx // 2] = True
        out.append(m)
    if overlap:
        out[1][:] = False
        out[1][out[0].nonzero()[0][0], :3, :3] = True
        out[1] |= np.roll(out[0], 1, axis=2)
    else:
        for k in range(1, n):
            for j in range(k):
                out[k] &= ~out[j]
    return out


def cli(*argv):
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A CT series written with pydicom on an oblique grid, and its space."""
    folder = tmp_path_factory.mktemp("ct")
    space = oblique_space()
    write_ct_series(folder, space)
    return folder, space


# -- detection ----------------------------------------------------------------------------------
@pytest.mark.realdata
def test_detect_by_content_not_name(tmp_path, interchange):
    odd = tmp_path / "renamed.bin"
    odd.write_bytes((interchange / SLICER_FILE).read_bytes())
    assert detect(odd) == "seg.nrrd"
    seg = tmp_path / "noext"
    seg.write_bytes((interchange / SEG_FILE).read_bytes())
    assert detect(seg) == "dicom-seg"
    assert detect(next(CT2.iterdir())) == "dicom"
    (tmp_path / "junk.nii.gz").write_bytes(b"hello")
    with pytest.raises(MaskValidationError, match="not a format medmask recognises"):
        detect(tmp_path / "junk.nii.gz")


# -- Slicer -------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_slicer_file_round_trip_through_archive(tmp_path, interchange):
    src = interchange / SLICER_FILE
    rep = to_archive(src, tmp_path / "s.mska")
    a = slicerio.read_segmentation(str(src))
    assert rep.masks == [s["name"] for s in a["segments"]]
    with MaskArchive(tmp_path / "s.mska") as ar:
        info = ar.info("right lung")
        assert info.attrs["type"]["meaning"] == "Lung"
        assert info.attrs["type_modifier"]["meaning"] == "Right"
        assert info.attrs["color"] == [22, 197, 71]
        ribs = ar.read_array("ribs")
    assert ribs.sum() == np.count_nonzero(a["voxels"].transpose(2, 1, 0) == 1)
    assert cli("unpack", tmp_path / "s.mska", "-o", tmp_path / "back.seg.nrrd", "-q") == 0
    b = slicerio.read_segmentation(str(tmp_path / "back.seg.nrrd"))
    assert np.allclose(a["ijkToLPS"], b["ijkToLPS"], atol=1e-6)
    assert np.array_equal(a["voxels"], b["voxels"])
    for sa, sb in zip(a["segments"], b["segments"], strict=True):
        for key in ("name", "labelValue", "layer", "terminology"):
            assert sa.get(key) == sb.get(key), key
        ea, eb = sa["extent"], sb["extent"]  # ours is the tight box, inside Slicer's
        assert all(ea[2 * i] <= eb[2 * i] <= eb[2 * i + 1] <= ea[2 * i + 1] for i in range(3))
        assert np.allclose(sa["color"], sb["color"], atol=1 / 255)


def test_layered_seg_nrrd_from_slicerio_keeps_overlaps(tmp_path):
    space = oblique_space((5, 9, 11))
    masks = blobs(tuple(space.shape), seed=3)
    seg = slicerio.create_segmentation(tuple(space.shape[::-1]), lps_matrix(space))
    for k, m in enumerate(masks):
        slicerio.add_segment(
            seg, m.transpose(2, 1, 0).astype(np.uint8), {"name": f"s{k}", "labelValue": 1}
        )
    slicerio.write_segmentation(str(tmp_path / "in.seg.nrrd"), seg)
    assert nrrd.read_header(str(tmp_path / "in.seg.nrrd"))["dimension"] == 4
    to_archive(tmp_path / "in.seg.nrrd", tmp_path / "a.mska")
    with MaskArchive(tmp_path / "a.mska") as ar:
        assert ar.space is not None
        for k, m in enumerate(masks):
            assert np.array_equal(ar.read_array(f"s{k}"), m)
    from_archive(tmp_path / "a.mska", tmp_path / "out.seg.nrrd")
    back = slicerio.read_segmentation(str(tmp_path / "out.seg.nrrd"))
    assert back["voxels"].ndim == 4
    for k, m in enumerate(masks):
        got = slicerio.segment_mask(back, slicerio.segment_from_name(back, f"s{k}"))
        assert np.array_equal(got.transpose(2, 1, 0).astype(bool), m)


def test_ras_space_and_empty_segments(tmp_path):
    data = np.zeros((4, 5, 6), np.uint8)  # (x, y, z) in pynrrd's default order
    data[1:3, 2:4, 0:2] = 1
    header = {
        "space": "right-anterior-superior",
        "space directions": np.diag([1.5, 2.0, 3.0]),
        "space origin": [10.0, -5.0, 2.0],
        "kinds": ["domain"] * 3,
        "Segment0_Name": "box",
        "Segment0_LabelValue": "1",
        "Segment0_Layer": "0",
        "Segment1_Name": "nothing",
        "Segment1_LabelValue": "2",
        "Segment1_Layer": "0",
        "Segment1_Extent": "0 -1 0 -1 0 -1",
    }
    nrrd.write(str(tmp_path / "ras.seg.nrrd"), data, header)
    space, recs, _ = read_seg_nrrd(tmp_path / "ras.seg.nrrd")
    assert [r.name for r in recs] == ["box", "nothing"] and not recs[1].array.any()
    m = lps_matrix(space)
    # voxel (x=1, y=2, z=0) is at RAS (11.5, -1, 2), i.e. LPS (-11.5, 1, 2)
    assert np.allclose(m[:3, :3] @ [1, 2, 0] + m[:3, 3], [-11.5, 1.0, 2.0])
    assert recs[0].array[0, 2, 1]


@pytest.mark.parametrize(
    "change, match",
    [
        ({"space": "scanner-xyz"}, "space"),
        ({"kinds": ["domain", "domain", "space"]}, "kinds"),
        ({"Segment0_Layer": "3"}, "Layer"),
    ],
)
def test_hostile_seg_nrrd_headers(tmp_path, change, match):
    data = np.zeros((3, 3, 3), np.uint8)
    header = {
        "space": "left-posterior-superior",
        "space directions": np.eye(3),
        "space origin": [0.0, 0.0, 0.0],
        "kinds": ["domain"] * 3,
        "Segment0_Name": "a",
        "Segment0_LabelValue": "1",
        "Segment0_Layer": "0",
    }
    header.update(change)
    nrrd.write(str(tmp_path / "h.seg.nrrd"), data, header)
    with pytest.raises(MaskValidationError, match=match):
        to_archive(tmp_path / "h.seg.nrrd", tmp_path / "h.mska")
    assert not (tmp_path / "h.mska").exists()


def test_huge_nrrd_sizes_refused_before_reading(tmp_path):
    text = (
        "NRRD0004\ntype: unsigned char\ndimension: 3\nspace: left-posterior-superior\n"
        "sizes: 100000 100000 100000\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n"
        "kinds: domain domain domain\nencoding: gzip\nspace origin: (0,0,0)\n"
        "Segment0_Name:=x\nSegment0_LabelValue:=1\n\n"
    )
    (tmp_path / "big.seg.nrrd").write_bytes(text.encode() + b"\x1f\x8b")
    with pytest.raises(MaskValidationError, match="sizes"):
        read_seg_nrrd(tmp_path / "big.seg.nrrd")


def test_legacy_slicer_file_one_segment_per_layer(tmp_path):
    data = np.zeros((2, 3, 4, 5), np.uint8)  # (layer, x, y, z): Slicer <= 4.10
    data[0, 0, 0, 0] = data[1, 0, 0, 0] = data[1, 2, 3, 4] = 1
    header = {
        "space": "left-posterior-superior",
        "space directions": np.vstack([[np.nan] * 3, np.eye(3)]),
        "kinds": ["list", "domain", "domain", "domain"],
        "Segment0_Name": "a",
        "Segment1_Name": "b",
    }
    nrrd.write(str(tmp_path / "old.seg.nrrd"), data, header)
    _, recs, _ = read_seg_nrrd(tmp_path / "old.seg.nrrd")
    assert [int(r.array.sum()) for r in recs] == [1, 2] and recs[1].array[4, 3, 2]


def test_duplicate_segment_names_disambiguated_and_reported(tmp_path, capsys):
    data = np.zeros((3, 3, 3), np.uint8)
    data[0, 0, 0], data[1, 1, 1], data[2, 2, 2] = 1, 2, 3
    header = {
        "space": "left-posterior-superior",
        "space directions": np.eye(3),
        "kinds": ["domain"] * 3,
    }
    for k, name in enumerate(["liver", "liver", "liver (2)"]):
        header[f"Segment{k}_Name"] = name
        header[f"Segment{k}_LabelValue"] = str(k + 1)
        header[f"Segment{k}_Layer"] = "0"
    nrrd.write(str(tmp_path / "d.seg.nrrd"), data, header)
    assert cli("pack", tmp_path / "d.seg.nrrd", "-o", tmp_path / "d.mska") == 0
    assert "'liver' stored as 'liver (3)'" in capsys.readouterr().err
    with MaskArchive(tmp_path / "d.mska") as ar:
        assert ar.all_names() == ["liver", "liver (3)", "liver (2)"]
        assert ar.read_array("liver (3)")[1, 1, 1]


# -- DICOM SEG ----------------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_seg_same_world_voxels_as_highdicom(tmp_path, interchange):
    src = interchange / SEG_FILE
    seg = read_dicom_seg(src)
    recs = list(seg.records)
    vol = hd.seg.segread(str(src)).get_volume()
    assert_same_world_voxels(recs[0].array, seg.space, vol.array[..., 0], vol.affine)
    assert recs[0].attrs["type"]["meaning"] == "Bone"
    # onto the full grid of its source series (which has a gap of 162 slices)
    rep = to_archive(src, tmp_path / "r.mska", reference=CT2)
    with MaskArchive(tmp_path / "r.mska") as ar:
        arr = ar.read_array(rep.masks[0])
        assert_same_world_voxels(arr, ar.space, vol.array[..., 0], vol.affine)
        assert ar.space.shape[0] == 165


def test_highdicom_binary_overlapping_seg_round_trip(tmp_path, series):
    folder, space = series
    masks = blobs(tuple(space.shape), seed=1)
    highdicom_seg(folder, masks, ["a", "b", "c"], tmp_path / "in.dcm")
    # highdicom leaves out empty frames: without the series, the grid is the frames' slices
    seg = read_dicom_seg(tmp_path / "in.dcm")
    vol = hd.seg.segread(str(tmp_path / "in.dcm")).get_volume()
    for rec, k in zip(seg.records, range(3), strict=True):
        assert_same_world_voxels(rec.array, seg.space, vol.array[..., k], vol.affine)
    args = ("pack", tmp_path / "in.dcm", "-o", tmp_path / "a.mska", "--reference", folder, "-q")
    assert cli(*args) == 0
    with MaskArchive(tmp_path / "a.mska") as ar:
        for k, n in enumerate("abc"):
            arr = ar.read_array(n)
            assert_same_world_voxels(arr, ar.space, vol.array[..., k], vol.affine)
            assert np.array_equal(arr, masks[k])
    # out again (BINARY keeps overlaps), read back by highdicom
    assert (
        cli("unpack", tmp_path / "a.mska", "-o", tmp_path / "out.dcm", "--source", folder, "-q")
        == 0
    )
    back = hd.seg.segread(str(tmp_path / "out.dcm"))
    assert [s.SegmentLabel for s in back.SegmentSequence] == ["a", "b", "c"]
    vol = back.get_volume()
    for k in range(3):
        assert_same_world_voxels(masks[k], space, vol.array[..., k], vol.affine)
    ref = back.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == read_series_geometry(folder).series_uid
    assert len(ref.ReferencedInstanceSequence) == space.shape[0]
    # LABELMAP on request (overlapping masks too: tests/conversions/test_dicom_seg_export.py)
    apart = {"a": masks[0] & ~masks[1], "c": masks[2] & ~masks[0] & ~masks[1]}
    with MaskArchive(tmp_path / "b.mska", "w", space=space) as out:
        for n, m in apart.items():
            out.add(n, m)
    args = ("-o", tmp_path / "lab.dcm", "--source", folder, "--seg-type", "labelmap", "-q")
    assert cli("unpack", tmp_path / "b.mska", *args) == 0
    lm = hd.seg.segread(str(tmp_path / "lab.dcm"))
    assert lm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7"
    got = read_dicom_seg(tmp_path / "lab.dcm", reference=folder)
    for rec, (n, m) in zip(got.records, apart.items(), strict=True):
        assert rec.name == n and np.array_equal(rec.array, m)


def test_labelmap_and_fractional_segs(tmp_path, series):
    folder, space = series
    masks = blobs(tuple(space.shape), seed=2, overlap=False)
    highdicom_seg(folder, masks, ["x", "y", "z"], tmp_path / "lm.dcm", seg_type="LABELMAP")
    seg = read_dicom_seg(tmp_path / "lm.dcm", reference=folder)
    assert seg.seg_type == "LABELMAP"
    for rec, m in zip(seg.records, masks, strict=True):
        assert np.array_equal(rec.array, m)
    # FRACTIONAL with values 0 and max only: binary
    highdicom_seg(
        folder,
        masks[:2],
        ["x", "y"],
        tmp_path / "f01.dcm",
        seg_type="FRACTIONAL",
        fractional=[m.astype(float) for m in masks[:2]],
    )
    got = [r.array for r in read_dicom_seg(tmp_path / "f01.dcm", reference=folder).records]
    assert all(np.array_equal(g, m) for g, m in zip(got, masks[:2], strict=True))
    # truly fractional: refused naming --threshold, accepted with it
    frac = masks[0] * 0.4 + masks[1] * 0.6
    highdicom_seg(
        folder, masks[:1], ["p"], tmp_path / "fr.dcm", seg_type="FRACTIONAL", fractional=[frac]
    )
    with pytest.raises(MaskValidationError, match="--threshold"):
        to_archive(tmp_path / "fr.dcm", tmp_path / "fr.mska")
    assert not (tmp_path / "fr.mska").exists()
    rep = to_archive(tmp_path / "fr.dcm", tmp_path / "fr.mska", threshold=0.5, reference=folder)
    with MaskArchive(tmp_path / "fr.mska") as ar:
        assert np.array_equal(ar.read_array("p"), frac >= 0.5)
    assert rep.notes


def test_seg_export_refuses_a_source_on_another_grid(tmp_path, series):
    folder, space = series
    other = oblique_space(origin=(-19.0, 15.0, 30.0))
    write_ct_series(tmp_path / "other", other)
    masks = blobs(tuple(space.shape), seed=4)
    highdicom_seg(folder, masks, ["a", "b", "c"], tmp_path / "in.dcm")
    to_archive(tmp_path / "in.dcm", tmp_path / "a.mska", reference=folder)
    with pytest.raises(SpaceMismatchError, match="origin"):
        from_archive(tmp_path / "a.mska", tmp_path / "x.dcm", source=tmp_path / "other")
    assert not (tmp_path / "x.dcm").exists()
    # a --reference that is not the SEG's series
    with pytest.raises(MaskValidationError, match="series"):
        read_dicom_seg(tmp_path / "in.dcm", reference=tmp_path / "other")


def _edit_positions(src, dst, change):
    ds = pydicom.dcmread(src)
    for i, fg in enumerate(ds.PerFrameFunctionalGroupsSequence):
        change(i, fg)
    ds.save_as(dst)


def test_hostile_segs(tmp_path, series):
    folder, space = series
    masks = blobs(tuple(space.shape), seed=5, n=1, overlap=False)
    masks[0][:] = True
    highdicom_seg(folder, masks, ["a"], tmp_path / "in.dcm")

    def irregular(i, fg):
        p = [float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient]
        if i == 2:
            p[2] += 0.7
        fg.PlanePositionSequence[0].ImagePositionPatient = p

    def missing(i, fg):
        if i == 1:
            del fg.PlanePositionSequence

    _edit_positions(tmp_path / "in.dcm", tmp_path / "irr.dcm", irregular)
    _edit_positions(tmp_path / "in.dcm", tmp_path / "nopos.dcm", missing)
    for name, match in (("irr.dcm", "irregular|stacked"), ("nopos.dcm", "no ImagePositionPatient")):
        with pytest.raises(MaskValidationError, match=match):
            to_archive(tmp_path / name, tmp_path / "x.mska")
        assert not (tmp_path / "x.mska").exists()
    ds = pydicom.dcmread(tmp_path / "in.dcm")
    ds.NumberOfFrames = 10**9
    ds.save_as(tmp_path / "huge.dcm")
    with pytest.raises(MaskValidationError, match="out of range"):
        read_dicom_seg(tmp_path / "huge.dcm")


# -- TotalSegmentator label maps ----------------------------------------------------------------
def test_totalsegmentator_names_read_and_written(tmp_path, capsys):
    data = np.zeros((6, 5, 4), np.uint8)
    data[:2] = 1
    data[3:, :2] = 2
    data[3:, 3:] = 5
    affine = np.diag([-1.5, -1.5, 2.0, 1.0])
    caret_labelmap(
        tmp_path / "s_ml.nii.gz", data, affine, {1: "spleen", 2: "kidney_right", 5: "liver"}
    )
    assert cli("pack", tmp_path / "s_ml.nii.gz", "-o", tmp_path / "s.mska", "-q") == 0
    with MaskArchive(tmp_path / "s.mska") as ar:
        assert ar.all_names() == ["spleen", "kidney_right", "liver"]
        assert ar.info("liver").attrs["label_value"] == 5
        assert ar.info("liver").attrs["color"] == [128, 64, 255]
    # a table that misses a label: refused naming it, or dropped
    (tmp_path / "part.json").write_text(json.dumps({"spleen": 1, "liver": 5}))
    assert (
        cli(
            "pack",
            tmp_path / "s_ml.nii.gz",
            "--labels",
            tmp_path / "part.json",
            "-o",
            tmp_path / "p.mska",
        )
        == 1
    )
    assert "[2]" in capsys.readouterr().err and not (tmp_path / "p.mska").exists()
    assert (
        cli(
            "pack",
            tmp_path / "s_ml.nii.gz",
            "--labels",
            tmp_path / "part.json",
            "--drop-unlisted",
            "-o",
            tmp_path / "p.mska",
            "-q",
        )
        == 0
    )
    # ITK-SNAP label file overrides
    (tmp_path / "snap.txt").write_text(
        "################################################\n# ITK-SnAP Label Description File\n"
        '    0     0    0    0        0  0  0    "Clear Label"\n'
        '    1   255    0    0        1  1  1    "Spleen"\n'
        '    2     0  255    0        1  1  1    "Right kidney"\n'
        '    5     0    0  255        1  1  1    "Liver"\n'
    )
    to_archive(tmp_path / "s_ml.nii.gz", tmp_path / "k.mska", labels=tmp_path / "snap.txt")
    with MaskArchive(tmp_path / "k.mska") as ar:
        assert ar.all_names() == ["Spleen", "Right kidney", "Liver"]
        assert ar.info("Liver").attrs["color"] == [0, 0, 255]
    # out: the names extension and X.json, then read back without a table
    assert cli("unpack", tmp_path / "s.mska", "-o", tmp_path / "out.nii.gz", "-q") == 0
    assert json.loads((tmp_path / "out.json").read_text()) == {
        "spleen": 1,
        "kidney_right": 2,
        "liver": 3,
    }
    from medmask.conversions.nifti import nifti_label_table

    assert nifti_label_table(tmp_path / "out.nii.gz")[0] == {
        "spleen": 1,
        "kidney_right": 2,
        "liver": 3,
    }
    to_archive(tmp_path / "out.nii.gz", tmp_path / "again.mska")
    with MaskArchive(tmp_path / "again.mska") as ar, MaskArchive(tmp_path / "s.mska") as ar0:
        for n in ar0.all_names():
            assert np.array_equal(ar.read_array(n), ar0.read_array(n))
    # a chosen numbering (TotalSegmentator class map style {label: name}), a subset
    (tmp_path / "map.json").write_text(json.dumps({"7": "liver", "9": "spleen"}))
    assert (
        cli(
            "unpack",
            tmp_path / "s.mska",
            "-o",
            tmp_path / "sub.nii.gz",
            "--labels",
            tmp_path / "map.json",
            "-q",
        )
        == 0
    )
    import nibabel as nib

    lab = np.asarray(nib.load(str(tmp_path / "sub.nii.gz")).dataobj)
    assert set(np.unique(lab)) == {0, 7, 9} and np.array_equal(lab == 7, data == 5)


def test_overlap_report_and_warning_for_emptied_masks(tmp_path, capsys):
    space = oblique_space((4, 6, 6))
    big = np.zeros(space.shape, bool)
    big[:, :4, :4] = True
    small = np.zeros(space.shape, bool)
    small[1, 1, 1:3] = True
    from medmask import SegmentationMask

    with MaskArchive(tmp_path / "o.mska", "w", space=space) as ar:
        ar.add("rib", SegmentationMask(small, {"rib": 1}, space))
        ar.add("liver", SegmentationMask(big, {"liver": 1}, space))
    assert cli("unpack", tmp_path / "o.mska", "-o", tmp_path / "l.nii.gz", "--json") == 0
    out = capsys.readouterr()
    assert "warning: mask 'rib' lost all its 2 voxels" in out.err
    rep = json.loads(out.out)
    assert rep["lost"] == {"rib": 2} and rep["emptied"] == ["rib"]
    assert (
        cli("unpack", tmp_path / "o.mska", "-o", tmp_path / "s.nii.gz", "--overlap", "smaller") == 0
    )
    out = capsys.readouterr()
    assert "warning" not in out.err and "liver: 2 of 64" in out.out


# -- issue 10: outputs never lie, inputs understood ----------------------------------------------
def _folder(tmp_path):
    import nibabel as nib

    d = tmp_path / "case" / "segmentations"
    d.mkdir(parents=True)
    for k, n in enumerate(["liver", "spleen"]):
        a = np.zeros((4, 5, 6), np.uint8)
        a[k, :2, :3] = 1
        nib.save(nib.Nifti1Image(a, np.eye(4)), str(d / f"{n}.nii.gz"))
    ct = np.random.default_rng(0).integers(-1000, 2000, (4, 5, 6)).astype(np.int16)
    nib.save(nib.Nifti1Image(ct, np.eye(4)), str(tmp_path / "case" / "ct.nii.gz"))
    return tmp_path / "case"


@pytest.mark.parametrize("target", ["out.nii.gz", "out", "out.seg.nrrd"])
def test_pack_output_names_never_lie(tmp_path, capsys, target):
    case = _folder(tmp_path)
    assert cli("pack", case, "-o", tmp_path / target) == 2
    err = capsys.readouterr().err
    assert "out.mska" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case"]


def test_pack_into_existing_folder_refused_first(tmp_path, capsys):
    case = _folder(tmp_path)
    (tmp_path / "dest").mkdir()
    assert cli("pack", case, "-o", str(tmp_path / "dest") + "/") == 2
    err = capsys.readouterr().err
    assert "is a folder" in err and ".tmp" not in err
    assert list((tmp_path / "dest").iterdir()) == []


def test_pack_understands_case_layouts_and_images(tmp_path, capsys):
    case = _folder(tmp_path)
    assert cli("pack", case, "-o", tmp_path / "c.mska", "-q") == 0
    with MaskArchive(tmp_path / "c.mska") as ar:
        assert ar.all_names() == ["liver", "spleen"]
    assert cli("pack", case / "segmentations", "-o", tmp_path / "d.mska", "-q") == 0
    assert cli("pack", case / "ct.nii.gz", "-o", tmp_path / "ct.mska") == 1
    assert "looks like an image" in capsys.readouterr().err
    assert not (tmp_path / "ct.mska").exists()
    import nibabel as nib

    ct = np.random.default_rng(1).integers(0, 3000, (4, 5, 6)).astype(np.uint16)
    nib.save(nib.Nifti1Image(ct, np.eye(4)), str(tmp_path / "ct_u16.nii.gz"))
    assert cli("pack", tmp_path / "ct_u16.nii.gz", "-o", tmp_path / "u.mska") == 1
    assert "looks like an image" in capsys.readouterr().err


def test_0_255_mask_offers_binarize(tmp_path, capsys):
    import nibabel as nib

    a = np.zeros((4, 5, 6), np.uint8)
    a[1:3, 2:4, 1:5] = 255
    nib.save(nib.Nifti1Image(a, np.eye(4)), str(tmp_path / "m.nii.gz"))
    assert cli("pack", tmp_path / "m.nii.gz", "-o", tmp_path / "m.mska") == 2
    assert "exactly two values (0 and 255)" in capsys.readouterr().err
    assert cli("pack", tmp_path / "m.nii.gz", "--binarize", "-o", tmp_path / "m.mska", "-q") == 0
    with MaskArchive(tmp_path / "m.mska") as ar:
        assert np.array_equal(ar.read_array("m"), (a > 0).transpose(2, 1, 0))


def test_unpack_output_names_and_option_mixes(tmp_path, capsys):
    case = _folder(tmp_path)
    to_archive(case, tmp_path / "c.mska")
    assert cli("unpack", tmp_path / "c.mska", "--labelmap", tmp_path / "lm.mska") == 2
    assert (
        cli(
            "unpack",
            tmp_path / "c.mska",
            "-o",
            tmp_path / "dir",
            "--labelmap",
            tmp_path / "l.nii.gz",
        )
        == 2
    )
    assert cli("unpack", tmp_path / "c.mska", "-o", tmp_path / "x.dcm") == 2  # no --source
    assert cli("unpack", tmp_path / "c.mska", "-o", tmp_path / "x.mska") == 2
    assert "medmask convert" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.mska", "case"]
    assert cli("unpack", tmp_path / "c.mska", "--labelmap", tmp_path / "l.nii.gz", "-q") == 0
    assert (tmp_path / "l.nii.gz").exists() and (tmp_path / "l.json").exists()


def test_unpack_tree_writes_nnunet_layout(tmp_path):
    case = _folder(tmp_path)
    (tmp_path / "packed").mkdir()
    to_archive(case, tmp_path / "packed" / "s0001.mska")
    to_archive(case, tmp_path / "packed" / "s0002.mska")
    (tmp_path / "t.json").write_text(json.dumps({"spleen": 1}))
    assert (
        cli(
            "unpack-tree",
            tmp_path / "packed",
            "-o",
            tmp_path / "ds",
            "--format",
            "nnunet",
            "--labels",
            tmp_path / "t.json",
            "-q",
        )
        == 0
    )
    with pytest.raises(SystemExit):  # the layouts are the format table's tree formats
        cli("unpack-tree", tmp_path / "packed", "-o", tmp_path / "x", "--format", "folder")
    ds = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert ds["labels"] == {"background": 0, "spleen": 1} and ds["numTraining"] == 2
    assert sorted(p.name for p in (tmp_path / "ds" / "labelsTr").iterdir()) == [
        "s0001.nii.gz",
        "s0002.nii.gz",
    ]


def test_missing_extra_message_names_pip_install(monkeypatch):
    import sys

    from medmask.conversions import slicer
    from medmask.conversions.dicom_seg import base as dicom_seg

    monkeypatch.setitem(sys.modules, "nrrd", None)  # as if pynrrd were not installed
    monkeypatch.setitem(sys.modules, "pydicom", None)
    monkeypatch.setitem(sys.modules, "highdicom", None)
    with pytest.raises(ImportError, match=r'pip install "medmask\[nrrd\]"'):
        slicer._nrrd()
    with pytest.raises(ImportError, match=r'pip install "medmask\[dicom\]"'):
        dicom_seg._pydicom()


# -- the real case --------------------------------------------------------------------------------
@pytest.mark.realdata
def test_real_case_labelmap_warns_about_rib_right_12(real_case, tmp_path, capsys):
    import shutil

    # the two real masks concerned (rib_right_12 lies inside the sacrum), in archive order
    (tmp_path / "case").mkdir()
    for name in ("rib_right_12", "sacrum"):
        shutil.copy(real_case / f"{name}.nii.gz", tmp_path / "case" / f"{name}.nii.gz")
    assert cli("pack", tmp_path / "case", "-o", tmp_path / "s.mska", "-q") == 0
    assert cli("unpack", tmp_path / "s.mska", "-o", tmp_path / "ml.nii.gz") == 0
    out = capsys.readouterr()
    assert "mask 'rib_right_12' lost all its 13 voxels" in out.err
    assert "rib_right_12: 13 of 13" in out.out
    assert (
        cli("unpack", tmp_path / "s.mska", "-o", tmp_path / "sm.nii.gz", "--overlap", "smaller")
        == 0
    )
    assert "warning" not in capsys.readouterr().err


#: The fast real-data variant (a few masks of the case) and the whole case (``--runslow``).
WHOLE_OR_FEW = ["few", pytest.param("whole", marks=pytest.mark.slow)]


def _real_source(which: str, real_case: Path, real_subset) -> Path:
    return real_case if which == "whole" else real_subset()


@pytest.mark.realdata
@pytest.mark.parametrize("which", WHOLE_OR_FEW)
def test_real_case_every_format_round_trip(real_case, real_subset, tmp_path, which):
    """The real case (a few masks, or all): archive -> .seg.nrrd (layers) -> archive, exact."""
    to_archive(_real_source(which, real_case, real_subset), tmp_path / "s.mska")
    from_archive(tmp_path / "s.mska", tmp_path / "s.seg.nrrd")
    to_archive(tmp_path / "s.seg.nrrd", tmp_path / "back.mska")
    with MaskArchive(tmp_path / "s.mska") as a, MaskArchive(tmp_path / "back.mska") as b:
        assert a.all_names() == b.all_names()
        for n in a.all_names():
            assert np.array_equal(a.read_array(n), b.read_array(n)), n


def test_fast_frame_scan_matches_pydicom(tmp_path, series):
    from medmask.conversions.dicom_seg.frames import _frame_meta_fast

    folder, space = series
    highdicom_seg(folder, blobs(tuple(space.shape), seed=6), ["a", "b", "c"], tmp_path / "s.dcm")
    ds = pydicom.dcmread(tmp_path / "s.dcm")
    pos, seg, shared = _frame_meta_fast(ds, int(ds.NumberOfFrames), True)
    per = ds.PerFrameFunctionalGroupsSequence
    want = [[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient] for f in per]
    assert np.array_equal(pos, np.array(want)) and shared
    assert seg.tolist() == [
        int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber) for f in per
    ]


def test_a_failing_source_leaves_no_archive(tmp_path):
    from medmask.conversions.common import MaskRecord, records_to_archive

    space = oblique_space((3, 4, 5))

    def records():
        yield MaskRecord("a", np.ones(space.shape, bool))
        raise MaskValidationError("segment 2: damaged")

    with pytest.raises(MaskValidationError, match="damaged"):
        records_to_archive(records(), space, tmp_path / "x.mska")
    assert list(tmp_path.iterdir()) == []


def test_cielab_colours_round_trip():
    import itertools

    from medmask.conversions.dicom_seg import cielab_to_rgb, rgb_to_cielab

    for c in itertools.product(range(0, 256, 51), repeat=3):
        assert cielab_to_rgb(rgb_to_cielab(c)) == list(c)
    # DICOM's scaling: L* 0..100 -> 0..65535, a*/b* -128..127 -> 0..65535 (red: L* 53.24)
    L, a, b = rgb_to_cielab((255, 0, 0))
    assert abs(L * 100 / 65535 - 53.24) < 0.02 and a > 50000 and b > 49000


@pytest.mark.realdata
@pytest.mark.parametrize("which", WHOLE_OR_FEW)
def test_real_case_dicom_seg_round_trip(real_case, real_subset, tmp_path, which):
    """The real case (oblique grid, overlapping masks; a few, or all) -> DICOM SEG on a
    pydicom CT series -> archive: the same voxels; highdicom sees them at the same world
    positions."""
    to_archive(_real_source(which, real_case, real_subset), tmp_path / "s.mska")
    with MaskArchive(tmp_path / "s.mska") as ar:
        space = ar.space
    write_ct_series(tmp_path / "ct", space)
    from_archive(tmp_path / "s.mska", tmp_path / "s.dcm", source=tmp_path / "ct")
    to_archive(tmp_path / "s.dcm", tmp_path / "back.mska", reference=tmp_path / "ct")
    seg = hd.seg.segread(str(tmp_path / "s.dcm"))
    with MaskArchive(tmp_path / "s.mska") as a, MaskArchive(tmp_path / "back.mska") as b:
        assert a.all_names() == b.all_names()
        for n in a.all_names():
            assert np.array_equal(a.read_array(n), b.read_array(n)), n
        for n in ("liver", "sacrum", "rib_right_12"):
            num = a.all_names().index(n) + 1
            vol = seg.get_volume(segment_numbers=[num])
            assert_same_world_voxels(a.read_array(n), space, vol.array[..., 0], vol.affine)


# -- which medmask file: one sniff (medmask.format.sniff) behind inspect and the conversions --------
def test_is_archive_by_first_bytes_and_unpack_of_a_single_mask(tmp_path):
    from medmask import SegmentationMask
    from medmask.conversions.common import iter_archive_records
    from medmask.errors import CorruptFileError, ForeignFileError, UnsupportedFormatError
    from medmask.inspect import is_archive, sniff_file
    from medmask.spaces import Space

    space = Space(shape=(3, 4, 5))
    data = np.zeros((3, 4, 5), bool)
    data[1, 1:3, 2:4] = True
    seg = SegmentationMask(data, {"a": 1}, space)
    single = tmp_path / "a.msk"
    seg.save(single)
    packed = tmp_path / "a.mska"
    with MaskArchive(packed, mode="w", space=space) as ar:
        ar.add("a", seg)
    renamed = tmp_path / "archive.msk"  # named like a .msk: the bytes decide
    renamed.write_bytes(packed.read_bytes())
    assert is_archive(packed) and is_archive(renamed) and not is_archive(single)
    assert sniff_file(packed)[:2] == ("mska", 2) and sniff_file(single)[0] == "msk"
    for name, content, error in (
        ("short", b"MS", CorruptFileError),
        ("other", b"NRRD0004\n", ForeignFileError),  # another format: called by its name
    ):
        (tmp_path / name).write_bytes(content)
        assert not is_archive(tmp_path / name)
        with pytest.raises(error):
            sniff_file(tmp_path / name)
    future = tmp_path / "future.mska"
    future.write_bytes(b"MSKA" + bytes([99, 0]) + packed.read_bytes()[6:])
    with pytest.raises(UnsupportedFormatError, match="version 99"):
        is_archive(future)
    with pytest.raises(FileNotFoundError):
        is_archive(tmp_path / "missing.mska")
    space_read, n, records = iter_archive_records(single)  # a .msk: read as one mask
    assert n == 1 and space_read.shape == space.shape
    assert np.array_equal(next(records).array, data)
    out = tmp_path / "from_single"
    from_archive(single, out)
    assert [p.name for p in out.iterdir()] == ["a.nii.gz"]
