"""NIfTI conversion: geometry as MONAI reports it, round trips, clear errors, nothing half written."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medmask import MaskArchive
from medmask.errors import MaskValidationError, SpaceMismatchError
from medmask.nifti import (
    affine_to_space,
    archive_to_folder,
    archive_to_labelmap,
    folder_to_archive,
    labelmap_to_archive,
    labelmap_to_msk,
    nifti_to_segmask,
    read_label_table,
    safe_filename,
    space_to_affine,
)

OBLIQUE = np.array(
    [[-0.6, 0.55, 0.0, 120.0], [0.55, 0.6, 0.1, -40.0], [0.0, -0.09, 2.49, 33.0], [0, 0, 0, 1]],
    float,
)


def orthonormalise(aff):
    a = aff.copy()
    q, _ = np.linalg.qr(a[:3, :3])
    a[:3, :3] = q * [0.8, 0.85, 2.5]
    return a


AFF = orthonormalise(OBLIQUE)


def save(path, data, affine=AFF, qform=None):
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=2)
    img.set_qform(qform if qform is not None else affine, code=1)
    nib.save(img, str(path))


def test_affine_space_round_trip():
    space = affine_to_space(AFF, (7, 8, 9))
    assert tuple(space.shape) == (9, 8, 7)
    np.testing.assert_allclose(space_to_affine(space), AFF, atol=1e-9)
    with pytest.raises(MaskValidationError, match="sheared"):
        affine_to_space(
            np.array([[1, 0.5, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]]), (2, 2, 2)
        )


@pytest.mark.parametrize(
    "case",
    [
        "agreeing forms",
        "qform contradicts",
        "oblique qform wins",
        "sform only",
        "qform only",
    ],
)
def test_geometry_is_what_monai_reports(tmp_path, case):
    """img.affine (sform first) unless pixdim contradicts it; checked against MONAI itself."""
    monai_transforms = pytest.importorskip("monai.transforms")
    data = np.zeros((7, 8, 9), np.uint8)
    data[2:4, 3:5, 1:8] = 1
    img = nib.Nifti1Image(data, None)
    if case == "agreeing forms":
        img.set_qform(AFF, code=1)
        img.set_sform(AFF + [[0, 0, 0, 0.4], [0] * 4, [0] * 4, [0] * 4], code=2)
    elif case == "qform contradicts":
        img.set_sform(AFF, code=2)
        img.set_qform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)  # pixdim follows the qform
    elif case == "oblique qform wins":  # MONAI copies the qform into the float32 sform fields
        img.set_qform(AFF, code=1)  # pixdim follows the qform
        img.set_sform(np.diag([3.0, 3.0, 3.0, 1.0]), code=2)
    elif case == "sform only":
        img.set_sform(AFF, code=2)
        img.set_qform(None, code=0)
    else:
        img.set_qform(AFF, code=1)
        img.set_sform(None, code=0)
    nib.save(img, str(tmp_path / "m.nii.gz"))
    seg = nifti_to_segmask(tmp_path / "m.nii.gz")
    monai_affine = monai_transforms.LoadImage(image_only=True)(
        str(tmp_path / "m.nii.gz")
    ).affine.numpy()
    np.testing.assert_allclose(space_to_affine(seg.space), monai_affine, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(seg.data, data.transpose(2, 1, 0).astype(bool))
    assert seg.mapping == {"m": 1}


def test_folder_round_trip(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    arrays = {}
    for name in ["liver", "spleen", "empty organ"]:
        a = np.zeros((12, 10, 8), np.uint8)
        if name != "empty organ":
            a[rng.integers(0, 6) :, 2:7, 1:5] = 1
        arrays[name] = a
        # float32 rounding of the affine, as in real files: same grid
        save(
            src / f"{name}.nii.gz",
            a,
            AFF + rng.normal(0, 1e-5, (4, 4)) * [[1, 1, 1, 1]] * [1, 1, 1, 0],
        )
    names = folder_to_archive(src, tmp_path / "a.mska")
    assert names == sorted(arrays)
    out = archive_to_folder(tmp_path / "a.mska", tmp_path / "out")
    for name, a in arrays.items():
        img = nib.load(out[name])
        np.testing.assert_array_equal(np.asarray(img.dataobj), a)
        np.testing.assert_allclose(img.affine, nib.load(src / f"{name}.nii.gz").affine, atol=1e-3)
    assert out["empty organ"].name == "empty_organ.nii.gz"


def test_grid_mismatch_and_bad_data_leave_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    save(src / "a.nii.gz", np.ones((4, 4, 4), np.uint8))
    shifted = AFF.copy()
    shifted[0, 3] += 1.0
    save(src / "b.nii.gz", np.ones((4, 4, 4), np.uint8), shifted)
    with pytest.raises(SpaceMismatchError, match="b.nii.gz.*differs from the archive's grid"):
        folder_to_archive(src, tmp_path / "a.mska")
    assert not (tmp_path / "a.mska").exists()
    (src / "b.nii.gz").unlink()
    save(src / "c.nii.gz", np.full((4, 4, 4), 3, np.uint8))
    with pytest.raises(MaskValidationError, match="binary mask holds values"):
        folder_to_archive(src, tmp_path / "a.mska")
    (src / "c.nii.gz").unlink()
    save(src / "d.nii.gz", np.full((4, 4, 4), 0.5, np.float32))
    with pytest.raises(MaskValidationError, match="float"):
        folder_to_archive(src, tmp_path / "a.mska")
    (src / "d.nii.gz").unlink()
    save(src / "e.nii.gz", np.ones((4, 4, 4, 2), np.uint8))
    with pytest.raises(MaskValidationError, match="3-D"):
        folder_to_archive(src, tmp_path / "a.mska")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_labelmap_routes(tmp_path):
    lab = np.zeros((10, 9, 8), np.uint8)
    lab[1:4] = 1
    lab[5:7] = 3
    save(tmp_path / "lab.nii.gz", lab)
    (tmp_path / "labels.json").write_text(json.dumps({"liver": 1, "kidney": 3, "absent": 4}))
    table = read_label_table(tmp_path / "labels.json")
    counts = labelmap_to_archive(tmp_path / "lab.nii.gz", table, tmp_path / "a.mska")
    assert counts == {"liver": 3 * 72, "kidney": 2 * 72, "absent": 0}
    seg = labelmap_to_msk(tmp_path / "lab.nii.gz", table, tmp_path / "m.msk")
    np.testing.assert_array_equal(seg.data, lab.transpose(2, 1, 0))
    back, overlap = archive_to_labelmap(tmp_path / "a.mska", tmp_path / "back.nii.gz")
    assert overlap == 0
    assert back == {"liver": 1, "kidney": 2, "absent": 3}
    with pytest.raises(MaskValidationError, match=r"labels \[3\] are not in the label table"):
        labelmap_to_archive(tmp_path / "lab.nii.gz", {"liver": 1}, tmp_path / "x.mska")
    assert not (tmp_path / "x.mska").exists()
    (tmp_path / "classes.json").write_text(json.dumps(["spleen", "kidney_right"]))
    assert read_label_table(tmp_path / "classes.json") == {"spleen": 1, "kidney_right": 2}


def test_overlaps_are_reported(tmp_path):
    space = affine_to_space(AFF, (6, 6, 6))
    from medmask import SegmentationMask

    a = np.zeros((6, 6, 6), bool)
    a[:3] = True
    b = np.zeros((6, 6, 6), bool)
    b[2:5] = True
    with MaskArchive(tmp_path / "a.mska", "w", space=space) as ar:
        ar.add("a", SegmentationMask(a, {"a": 1}, space))
        ar.add("b", SegmentationMask(b, {"b": 1}, space))
    _, overlap = archive_to_labelmap(tmp_path / "a.mska", tmp_path / "l.nii.gz")
    assert overlap == 36


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "/abs/path",
        "a/b\\c",
        "nul\0byte",
        "..",
        ".",
        "",
        "CON",
        "ünï cødé",
        "x" * 500,
    ],
)
def test_safe_filename_never_escapes(tmp_path, name):
    f = safe_filename(name)
    assert f and "/" not in f and "\\" not in f and "\0" not in f and not f.startswith(".")
    assert (tmp_path / f).resolve().parent == tmp_path.resolve()


def test_unreadable_and_float_files(tmp_path):
    (tmp_path / "junk.nii.gz").write_bytes(b"this is not gzip")
    with pytest.raises(MaskValidationError, match="junk.nii.gz: cannot read as NIfTI"):
        nifti_to_segmask(tmp_path / "junk.nii.gz")
    save(tmp_path / "ok.nii.gz", np.ones((5, 5, 5), np.uint8))
    (tmp_path / "cut.nii.gz").write_bytes((tmp_path / "ok.nii.gz").read_bytes()[:100])
    with pytest.raises(MaskValidationError, match="cut.nii.gz: cannot read"):
        nifti_to_segmask(tmp_path / "cut.nii.gz")
    with pytest.raises(FileNotFoundError):
        nifti_to_segmask(tmp_path / "missing.nii.gz")
    ones = np.zeros((5, 5, 5), np.float32)
    ones[1:3] = 1
    save(tmp_path / "f.nii.gz", ones)
    with pytest.raises(MaskValidationError, match="float data.*allow_float"):
        nifti_to_segmask(tmp_path / "f.nii.gz")
    seg = nifti_to_segmask(tmp_path / "f.nii.gz", allow_float=True)
    np.testing.assert_array_equal(seg.data, ones.transpose(2, 1, 0) != 0)
    save(tmp_path / "neg.nii.gz", np.full((3, 3, 3), -1, np.int16))
    with pytest.raises(MaskValidationError, match="negative"):
        nifti_to_segmask(tmp_path / "neg.nii.gz", binary=False)
    save(tmp_path / "single.nii.gz", np.ones((3, 4, 5, 1), np.uint8))  # singleton 4th axis: fine
    assert nifti_to_segmask(tmp_path / "single.nii.gz").shape == (5, 4, 3)


def test_mismatched_shape_is_named(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    save(src / "a.nii.gz", np.ones((4, 4, 4), np.uint8))
    save(src / "b.nii.gz", np.ones((4, 4, 5), np.uint8))
    with pytest.raises(
        SpaceMismatchError, match=r"b.nii.gz.*shape .*\(5, 4, 4\) instead of \(4, 4, 4\)"
    ):
        folder_to_archive(src, tmp_path / "a.mska")
    assert not (tmp_path / "a.mska").exists()


def test_resample_only_when_asked(tmp_path):
    """A grid shifted by whole voxels resamples to an exact shift; within tolerance is no-op."""
    src = tmp_path / "src"
    src.mkdir()
    a = np.zeros((10, 12, 8), np.uint8)
    a[3:6, 4:9, 2:5] = 1
    save(src / "a.nii.gz", a)
    shifted = AFF.copy()
    shifted[:3, 3] += AFF[:3, 0] * 2  # origin moved by two voxels along x
    save(src / "b.nii.gz", a, shifted)
    with pytest.raises(SpaceMismatchError, match=r"b.nii.gz.*origin .*\(by 1.18 mm\)"):
        folder_to_archive(src, tmp_path / "r.mska")
    from medmask.nifti import MaskResampledWarning

    with pytest.warns(MaskResampledWarning, match="b.nii.gz"):
        folder_to_archive(src, tmp_path / "r.mska", resample=True)
    with MaskArchive(tmp_path / "r.mska") as ar:
        b = ar.read_array("b").transpose(2, 1, 0)
        assert ar.read_array("a").transpose(2, 1, 0).sum() == a.sum()
    expected = np.zeros_like(a, bool)
    expected[5:8, 4:9, 2:5] = True  # b's voxel i sits at a's voxel i + 2
    np.testing.assert_array_equal(b, expected)


def test_label_tables_and_msk_coverage(tmp_path):
    (tmp_path / "map.json").write_text(json.dumps({"1": "spleen", "2": "kidney_right"}))
    assert read_label_table(tmp_path / "map.json") == {"spleen": 1, "kidney_right": 2}
    (tmp_path / "t.txt").write_text("# comment\n1 liver\n5, portal vein\n")
    assert read_label_table(tmp_path / "t.txt") == {"liver": 1, "portal vein": 5}
    (tmp_path / "dup.json").write_text(json.dumps({"a": 1, "b": 1}))
    assert read_label_table(tmp_path / "dup.json").merges() == {1: ("a", "b")}  # a merge
    lab = np.zeros((5, 5, 5), np.uint8)
    lab[0] = 1
    lab[3] = 7
    save(tmp_path / "lab.nii.gz", lab)
    for split in (labelmap_to_msk, labelmap_to_archive):  # a merge cannot be split
        with pytest.raises(MaskValidationError, match="label 1 is given to 2 names") as err:
            split(tmp_path / "lab.nii.gz", tmp_path / "dup.json", tmp_path / "m.mska")
        assert "dup.json" in str(err.value)
    with pytest.raises(MaskValidationError, match=r"labels \[7\] are not in the label table"):
        labelmap_to_msk(tmp_path / "lab.nii.gz", {"liver": 1}, tmp_path / "m.msk")
    assert not (tmp_path / "m.msk").exists()
    (tmp_path / "full.json").write_text(json.dumps({"liver": 1, "kidney": 7}))
    seg = labelmap_to_msk(tmp_path / "lab.nii.gz", tmp_path / "full.json", tmp_path / "m.msk")
    assert seg.mapping == {"liver": 1, "kidney": 7}
    np.testing.assert_array_equal(seg.data, lab.transpose(2, 1, 0))


def test_labelmap_export_of_a_multilabel_mask(tmp_path):
    space = affine_to_space(AFF, (4, 4, 4))
    from medmask import SegmentationMask

    lab = np.zeros((4, 4, 4), np.uint8)
    lab[0] = 3
    lab[1] = 5
    single = np.zeros((4, 4, 4), bool)
    single[2] = True
    with MaskArchive(tmp_path / "m.mska", "w", space=space) as ar:
        ar.add("organs", SegmentationMask(lab, {"bg": 0, "liver": 3, "spleen": 5}, space))
        ar.add("aorta", SegmentationMask(single, {"x": 1}, space))
    table, overlap = archive_to_labelmap(tmp_path / "m.mska", tmp_path / "l.nii.gz")
    assert table == {"liver": 1, "spleen": 2, "aorta": 3} and overlap == 0
    out = np.asarray(nib.load(tmp_path / "l.nii.gz").dataobj).transpose(2, 1, 0)
    assert [int((out == k).sum()) for k in (1, 2, 3)] == [16, 16, 16]


@pytest.mark.realdata
def test_real_case_round_trip(real_case, tmp_path):
    names = folder_to_archive(real_case, tmp_path / "s.mska")
    assert len(names) == 117
    out = archive_to_folder(tmp_path / "s.mska", tmp_path / "out")
    worst = 0.0
    voxels = {}
    for name in names:
        a, b = nib.load(real_case / f"{name}.nii.gz"), nib.load(out[name])
        data = np.asarray(a.dataobj)
        voxels[name] = int(np.count_nonzero(data))
        assert np.array_equal(data, np.asarray(b.dataobj)), name  # (fast; 117 large arrays)
        assert b.get_data_dtype() == a.get_data_dtype()
        worst = max(worst, float(np.abs(a.affine - b.affine).max()))
    assert worst < 1e-3
    # the multi-label route: out as one label map (overlaps counted), back in, out again
    table, overlap = archive_to_labelmap(tmp_path / "s.mska", tmp_path / "lab.nii.gz")
    lab_img = nib.load(tmp_path / "lab.nii.gz")
    lab = np.asarray(lab_img.dataobj).transpose(2, 1, 0)
    assert len(table) == 117
    np.testing.assert_allclose(lab_img.affine, nib.load(out[names[0]]).affine, atol=1e-6)
    assert sum(voxels.values()) - int(np.count_nonzero(lab)) == overlap  # every lost voxel reported
    counts = labelmap_to_archive(tmp_path / "lab.nii.gz", table, tmp_path / "s2.mska")
    assert sum(counts.values()) == int(np.count_nonzero(lab))
    with MaskArchive(tmp_path / "s.mska") as first, MaskArchive(tmp_path / "s2.mska") as second:
        for name in names:
            got = second.read_array(name)
            assert np.array_equal(got, lab == table[name]), name
            assert not np.any(got & ~first.read_array(name))  # never a voxel that was not there
    back, overlap2 = archive_to_labelmap(tmp_path / "s2.mska", tmp_path / "lab2.nii.gz")
    assert overlap2 == 0 and back == table
    lab2 = np.asarray(nib.load(tmp_path / "lab2.nii.gz").dataobj).transpose(2, 1, 0)
    assert np.array_equal(lab2, lab)


def test_export_is_atomic_and_keeps_the_usual_permissions(tmp_path):
    import os
    import stat

    from medmask import SegmentationMask

    space = affine_to_space(AFF, (4, 5, 6))
    seg = SegmentationMask(np.ones((6, 5, 4), bool), {"m": 1}, space)
    plain = tmp_path / "plain.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.uint8), AFF), str(plain))
    out = tmp_path / "m.nii.gz"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out.symlink_to(victim)  # replaced as a link, never written through
    from medmask.nifti import segmask_to_nifti

    segmask_to_nifti(seg, out)
    assert victim.read_text() == "precious" and not out.is_symlink()
    assert stat.S_IMODE(os.stat(out).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nii.gz", "plain.nii.gz", "victim.txt"]
    back = nib.load(out)
    np.testing.assert_allclose(back.affine, AFF, atol=1e-5)
    assert back.header.get_xyzt_units()[0] == "mm" and np.asarray(back.dataobj).all()
    segmask_to_nifti(seg, tmp_path / "raw.nii")  # uncompressed too
    assert nib.load(tmp_path / "raw.nii").shape == (4, 5, 6)
