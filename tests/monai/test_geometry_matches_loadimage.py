"""The geometry contract: masks from archives line up with the NIfTI they came from.

``LoadMask`` on an archive must give what ``monai.transforms.LoadImage`` gives on the
NIfTI: the same ``(x, y, z)`` axes, shape and voxels, and the same RAS affine (1e-3),
for every kind of header MONAI meets (sform and qform that disagree, qform only, a
sform that contradicts pixdim, axis flips), for both archive versions and ``.msk``,
and through ``Orientationd`` / ``Spacingd`` together with the images.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from monai.data import MetaTensor  # noqa: E402
from monai.transforms import Compose, LoadImage, LoadImaged, Orientationd, Spacingd  # noqa: E402

from medmask import MaskArchive, SegmentationMask, save_mask  # noqa: E402
from medmask.nifti import folder_to_archive, nifti_files, strip_suffix  # noqa: E402
from medmask.spaces import Space  # noqa: E402
from medmask_monai import LoadMask, LoadMaskd, MaskReader  # noqa: E402

SHAPE_XYZ = (23, 17, 11)


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def ras_affine(rot: np.ndarray, spacing, origin) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = rot * np.asarray(spacing, float)
    a[:3, 3] = origin
    return a


OBLIQUE = ras_affine(rotation(0.3, -0.2, 0.5), (0.8, 0.9, 2.5), (-120.0, 30.0, 55.0))
FLIPPED = ras_affine(
    np.diag([-1.0, -1.0, 1.0]) @ rotation(0.0, 0.1, -0.25), (1.5, 1.5, 3.0), (200.0, 180.0, -40.0)
)
# same axes as OBLIQUE but a spacing that pixdim (taken from the qform) contradicts
WRONG_SPACING = ras_affine(rotation(0.3, -0.2, 0.5), (1.6, 0.9, 2.5), (-120.0, 30.0, 55.0))


def space_from_ras_affine(affine: np.ndarray, shape_xyz) -> Space:
    """Independent of ``medmask.nifti``: RAS affine -> LPS ``Space``, then ``(z, y, x)``."""
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    rot = lps[:3, :3] / spacing
    xyz = Space(
        shape=tuple(shape_xyz),
        origin=tuple(lps[:3, 3]),
        spacing=tuple(spacing),
        x_orientation=tuple(rot[:, 0]),
        y_orientation=tuple(rot[:, 1]),
        z_orientation=tuple(rot[:, 2]),
    )
    return xyz.reverse_axis_order()


def header(img: nib.Nifti1Image, kind: str) -> nib.Nifti1Image:
    """Set sform/qform as the header ``kind`` says; returns ``img``."""
    if (
        kind == "sform_and_shifted_qform"
    ):  # both set, they disagree: MONAI (nibabel) takes the sform
        img.set_sform(OBLIQUE, code=2)
        shifted = OBLIQUE.copy()
        shifted[:3, 3] += 9.0
        img.set_qform(shifted, code=1)
    elif kind == "qform_only":
        img.set_qform(OBLIQUE, code=1)
        img.set_sform(np.eye(4), code=0)
    elif kind == "sform_contradicts_pixdim":  # MONAI takes the qform, the one agreeing with pixdim
        img.set_qform(OBLIQUE, code=1)
        img.set_sform(WRONG_SPACING, code=2)
        img.header.set_zooms((0.8, 0.9, 2.5))
    elif kind == "flipped_axes":
        img.set_sform(FLIPPED, code=1)
        img.set_qform(FLIPPED, code=1)
    else:
        raise AssertionError(kind)
    return img


KINDS = ["sform_and_shifted_qform", "qform_only", "sform_contradicts_pixdim", "flipped_axes"]


def labelmap() -> np.ndarray:
    """The ``(x, y, z)`` label map of :func:`organs` (label k for the k-th; later ones win)."""
    lab = np.zeros(SHAPE_XYZ, np.uint8)
    for k, a in enumerate(organs().values(), start=1):
        lab[a == 1] = k
    return lab


def organs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    out = {}
    for name in ["liver", "spleen", "kidney_left", "kidney_right", "absent"]:
        a = np.zeros(SHAPE_XYZ, np.uint8)
        if name != "absent":
            lo = rng.integers(0, 8, 3)
            a[lo[0] : lo[0] + 11, lo[1] : lo[1] + 7, lo[2] : lo[2] + 4] = 1
            a[lo[0], lo[1], lo[2]] = 0  # not a plain box
        out[name] = a
    return out


@pytest.fixture(scope="module", params=KINDS)
def case(request, tmp_path_factory, nifti_case):
    kind = request.param
    d = nifti_case(
        tmp_path_factory.mktemp(kind),
        organs(),
        None,
        header=lambda img: header(img, kind),
        image_seed=1,
        archives={"v2.mska": None, "v1.mska": "zstd"},
    )
    seg = d / "segmentations"
    # our own route: a Space built straight from the affine MONAI reports
    ref_affine = LoadImage(image_only=True)(str(seg / "liver.nii.gz")).affine.numpy()
    space = space_from_ras_affine(ref_affine, SHAPE_XYZ)
    with MaskArchive(d / "own.mska", "w", space=space) as ar:
        for name, a in organs().items():
            ar.add(name, SegmentationMask(a.transpose(2, 1, 0).astype(bool), {name: 1}, space))
    save_mask(
        SegmentationMask(
            labelmap().transpose(2, 1, 0), {n: k for k, n in enumerate(organs(), 1)}, space
        ),
        d / "all.msk",
    )
    return d


@pytest.mark.parametrize("archive", ["v2.mska", "v1.mska", "own.mska", "all.msk"])
def test_loadmask_matches_loadimage(case, archive):
    load_nii = LoadImage(image_only=True, dtype=None)
    for k, name in enumerate(organs(), start=1):
        ref = load_nii(str(case / "segmentations" / f"{name}.nii.gz"))
        got = LoadMask(names=[name])(str(case / archive))
        assert got.shape == (1, *ref.shape) == (1, *SHAPE_XYZ)
        # a .msk holds one label map: where organs overlap, the later one kept the voxel
        expected = (labelmap() == k).astype(np.uint8) if archive.endswith(".msk") else ref.numpy()
        np.testing.assert_array_equal(got[0].numpy(), expected)
        np.testing.assert_allclose(got.affine.numpy(), ref.affine.numpy(), atol=1e-3)
        np.testing.assert_allclose(
            got.meta["original_affine"], ref.meta["original_affine"], atol=1e-3
        )
        assert tuple(got.meta["spatial_shape"]) == tuple(ref.meta["spatial_shape"])
        assert got.meta["space"] == ref.meta["space"] == "RAS"


def test_reader_matches_loadimage(case):
    ref = LoadImage(image_only=True)(str(case / "segmentations" / "spleen.nii.gz"))
    got = LoadImage(image_only=True, reader=MaskReader(names=["spleen"]))(str(case / "v2.mska"))
    assert got.shape == (1, *ref.shape) and got.dtype == ref.dtype == torch.float32
    np.testing.assert_array_equal(got[0].numpy(), ref.numpy())
    np.testing.assert_allclose(got.affine.numpy(), ref.affine.numpy(), atol=1e-3)


def test_pipeline_through_orientation_and_spacing(case):
    """The same transforms on the NIfTI label and on the archive label give the same result."""
    names = ["liver", "spleen", "kidney_left"]
    common = [
        Orientationd(["image", "label"], axcodes="RAS"),
        Spacingd(["image", "label"], pixdim=(1.13, 1.07, 1.93), mode=("bilinear", "nearest")),
    ]
    loaded = LoadImaged(["image", *names], ensure_channel_first=True)(
        {"image": str(case / "ct.nii.gz")}
        | {n: str(case / "segmentations" / f"{n}.nii.gz") for n in names}
    )
    lab = torch.zeros_like(loaded["liver"].as_tensor())
    for k, n in enumerate(names, start=1):
        lab[loaded[n].as_tensor() != 0] = k
    label = MetaTensor(lab, meta=loaded["liver"].meta)
    ref = Compose(common)({"image": loaded["image"], "label": label})
    got = Compose(
        [LoadImaged("image", ensure_channel_first=True), LoadMaskd("label", names=names), *common]
    )({"image": str(case / "ct.nii.gz"), "label": str(case / "v2.mska")})
    # Spacing(d) can turn a 1e-7 affine difference into another output grid (sampling points
    # on voxel boundaries), so the archive gives LoadImage's affine to float64 rounding
    own_affine = LoadMask(names=["liver"])(str(case / "v2.mska")).affine
    assert (own_affine - loaded["liver"].affine).abs().max() < 1e-9
    assert got["label"].shape == ref["label"].shape == (1, *got["image"].shape[1:])
    np.testing.assert_array_equal(got["label"].numpy(), ref["label"].numpy())
    np.testing.assert_allclose(got["label"].affine.numpy(), ref["label"].affine.numpy(), atol=1e-3)
    np.testing.assert_allclose(got["image"].affine.numpy(), got["label"].affine.numpy(), atol=1e-3)


# -- the real case ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_archive(real_case, tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "s0000.mska"
    folder_to_archive(real_case, out)
    return out


REAL_ORGANS = ["femur_left", "hip_right", "urinary_bladder", "iliac_artery_right", "liver"]


@pytest.mark.realdata
def test_real_case_few_organs(real_case, real_archive):
    load_nii = LoadImage(image_only=True, dtype=None)
    combined = LoadMask(names=REAL_ORGANS)(str(real_archive))
    for k, name in enumerate(REAL_ORGANS, start=1):
        ref = load_nii(str(real_case / f"{name}.nii.gz"))
        got = LoadMask(names=[name])(str(real_archive))
        assert got.shape == (1, 294, 192, 179) and ref.shape == (294, 192, 179)
        np.testing.assert_array_equal(got[0].numpy(), ref.numpy())
        np.testing.assert_allclose(got.affine.numpy(), ref.affine.numpy(), atol=1e-3)
        assert ((combined[0] == k) <= (ref != 0)).all()  # overlaps: a later name may take voxels


@pytest.mark.realdata
def test_real_case_every_affine(real_case, real_archive):
    """All 117 files (affines differ by up to 1.6e-4) share the archive's one grid."""
    got = LoadMask(names=["colon"])(str(real_archive))
    worst = 0.0
    files = nifti_files(real_case)
    assert len(files) == 117
    for f in files:  # header only: nibabel's img.affine is what MONAI reports for these files
        img = nib.load(str(f))
        assert img.shape == tuple(got.meta["spatial_shape"])
        worst = max(worst, float(np.abs(got.affine.numpy() - img.affine).max()))
    assert 0 < worst < 1e-3


@pytest.mark.slow
@pytest.mark.realdata
def test_real_case_every_mask(real_case, real_archive):
    load_nii = LoadImage(image_only=True, dtype=None)
    for f in nifti_files(real_case):
        ref = load_nii(str(f))
        got = LoadMask(names=[strip_suffix(f.name)])(str(real_archive))
        np.testing.assert_array_equal(got[0].numpy(), ref.numpy())
        np.testing.assert_allclose(got.affine.numpy(), ref.affine.numpy(), atol=1e-3)
