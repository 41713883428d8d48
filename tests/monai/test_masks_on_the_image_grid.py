"""Masks on the image's grid, never silently shifted (issue 22, item 1).

The issue's scenario on the real case: a DICOM SEG written by highdicom, whose first slice
has no segment (so no frame), packed without --reference, gets a grid one slice short of
the CT's. ``pack`` says so and records ``grid: segmentation``; ``LoadMaskd(like="image")``
puts the masks back on the CT's grid exactly (the patches of a MONAI training chain are
those of the masks packed from the NIfTI files); without ``like=`` the chain refuses to
run instead of training on labels shifted by one slice. Then the rules on synthetic grids.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, LoadImaged, Orientationd, RandCropByPosNegLabeld

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from interop_support import highdicom_seg, write_ct_series  # noqa: E402

from medmask import MaskArchive, SegmentationMask  # noqa: E402
from medmask.conversions import to_archive  # noqa: E402
from medmask.errors import MaskValidationError, SpaceMismatchError  # noqa: E402
from medmask.geometry import affine_to_space, space_to_affine  # noqa: E402
from medmask_monai import LoadMask, LoadMaskd  # noqa: E402

pytestmark = pytest.mark.realdata  # every test here reads the sample data

EXE = shutil.which("medmask", path=str(Path(sys.executable).parent))
#: Organs of the real case; femur_left starts at slice 1, liver is empty: slice 0 has none.
ORGANS = ["femur_left", "colon", "urinary_bladder", "hip_right", "liver"]


def run(*args):
    cmd = [EXE, *map(str, args)] if EXE else [sys.executable, "-m", "medmask", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def seg_case(real_case, tmp_path_factory):
    """The real case's organs as an archive on the CT's grid, a CT (series and NIfTI) on
    that grid, and highdicom's SEG of the organs packed without --reference."""
    d = tmp_path_factory.mktemp("segcase")
    (d / "masks").mkdir()
    for organ in ORGANS:
        (d / "masks" / f"{organ}.nii.gz").symlink_to(real_case / f"{organ}.nii.gz")
    to_archive(d / "masks", d / "full.mska")
    with MaskArchive(d / "full.mska") as ar:
        space = ar.space
        masks = [ar.read_array(n) for n in ORGANS]
    assert not any(m[0].any() for m in masks)  # the scenario: nothing on the first slice
    write_ct_series(d / "ct", space)
    ref = nib.load(str(real_case / "femur_left.nii.gz"))
    ct = np.random.default_rng(1).integers(-1000, 1500, ref.shape).astype(np.int16)
    nib.save(nib.Nifti1Image(ct, ref.affine, ref.header), str(d / "ct.nii.gz"))
    highdicom_seg(d / "ct", masks, ORGANS, d / "seg.dcm")
    packed = run("pack", d / "seg.dcm", "-o", d / "from_seg.mska")
    assert packed.returncode == 0, packed.stderr
    return d, space, packed


def test_pack_says_the_grid_is_the_segmentation_s_and_records_it(seg_case):
    d, space, packed = seg_case
    notes = [line for line in packed.stderr.splitlines() if "note:" in line]
    assert len(notes) == 1  # one line
    assert "the archive's grid is the extent of the SEG's frames (178 slices" in notes[0]
    assert "--reference DICOM_DIR" in notes[0] and "like='image'" in notes[0]
    with MaskArchive(d / "from_seg.mska") as ar:
        assert ar.space.shape[0] == space.shape[0] - 1  # one slice short, as in the issue
        attrs = dict(ar.archive_attrs)
        assert attrs["grid"] == "segmentation" and set(attrs) == {"grid", "source"}
        assert attrs["source"]["path"] == "seg.dcm"  # and the SEG's identifiers
    info = run("info", d / "from_seg.mska")
    assert "'grid': 'segmentation'" in info.stdout
    stats = run("stats", d / "from_seg.mska")
    assert "1 file on the segmentation's own grid, not the image's" in stats.stdout
    with_ref = run("pack", d / "seg.dcm", "--reference", d / "ct", "-o", d / "ref.mska")
    assert with_ref.returncode == 0 and "note:" not in with_ref.stderr
    with MaskArchive(d / "ref.mska") as ar:
        assert ar.archive_attrs["grid"] == "image" and set(ar.archive_attrs) == {"grid", "source"}


def _chain(label: Path, ct: Path, **like) -> Compose:
    return Compose(
        [
            LoadImaged("image", ensure_channel_first=True),
            LoadMaskd("label", names=ORGANS, **like),
            Orientationd(["image", "label"], axcodes="RAS"),
            RandCropByPosNegLabeld(
                ["image", "label"], "label", spatial_size=(48, 48, 32), num_samples=4
            ),
        ]
    )


def test_like_image_puts_the_masks_on_the_ct_grid_exactly(seg_case):
    d, space, _ = seg_case
    item = {"image": str(d / "ct.nii.gz"), "label": str(d / "from_seg.mska")}
    loaded = LoadMaskd("label", names=ORGANS, like="image")(
        LoadImaged("image", ensure_channel_first=True)(item)
    )
    truth = LoadMask(names=ORGANS)(str(d / "full.mska"))
    assert loaded["label"].shape == truth.shape == loaded["image"].shape
    assert torch.equal(loaded["label"].as_tensor(), truth.as_tensor())
    np.testing.assert_allclose(loaded["label"].affine, loaded["image"].affine, atol=1e-6)
    # a MONAI training chain gives the patches of the masks packed from the NIfTI files
    shifted = _chain(d / "from_seg.mska", d / "ct.nii.gz", like="image")
    reference = _chain(d / "full.mska", d / "ct.nii.gz")
    shifted.set_random_state(7)
    reference.set_random_state(7)
    got = shifted(item)
    want = reference({"image": item["image"], "label": str(d / "full.mska")})
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a["label"].as_tensor(), b["label"].as_tensor())
        assert torch.equal(a["image"].as_tensor(), b["image"].as_tensor())


def test_without_like_the_chain_refuses_to_train_on_shifted_labels(seg_case):
    d, _, _ = seg_case
    item = {"image": str(d / "ct.nii.gz"), "label": str(d / "from_seg.mska")}
    with pytest.raises(RuntimeError) as err:  # MONAI's Compose wraps what a transform raises
        _chain(d / "from_seg.mska", d / "ct.nii.gz")(item)
    assert isinstance(err.value.__cause__, SpaceMismatchError)
    text = str(err.value.__cause__)
    assert "the masks of 'label' are not on the grid of 'image'" in text
    assert "shape(z,y,x)=(178, 192, 294)" in text and "shape(z,y,x)=(179, 192, 294)" in text
    assert "pass like='image'" in text


# -- the rules, on synthetic grids ---------------------------------------------------------------
AFF = np.array(
    [[-1.2, 0.3, 0.0, 40.0], [0.3, 1.2, 0.0, -20.0], [0.0, 0.0, 2.0, 10.0], [0, 0, 0, 1.0]]
)
IMAGE_SHAPE = (20, 16, 12)  # (x, y, z)


def _archive(path: Path, offset_xyz, shape_xyz, boxes) -> Path:
    """An archive on the lattice of AFF whose voxel 0 is image voxel ``offset_xyz``."""
    aff = AFF.copy()
    aff[:3, 3] = AFF[:3, :3] @ np.asarray(offset_xyz, float) + AFF[:3, 3]
    space = affine_to_space(aff, shape_xyz)
    with MaskArchive(path, "w", space=space) as ar:
        for name, box in boxes.items():
            a = np.zeros(space.shape, bool)
            a[box] = True
            ar.add(name, SegmentationMask(a, {name: 1}, space))
    return path


def _image(affine=AFF, shape=IMAGE_SHAPE) -> MetaTensor:
    return MetaTensor(torch.zeros((1, *shape)), affine=torch.as_tensor(affine))


def test_offsets_pad_and_crop_exactly(tmp_path):
    boxes = {"a": np.s_[0:2, 1:3, 2:5], "b": np.s_[3:5, 1:4, 0:3]}  # (z, y, x); row y=0 empty
    path = _archive(tmp_path / "a.mska", (3, -1, 2), (8, 9, 6), boxes)
    for like in (_image(), (AFF, IMAGE_SHAPE)):
        out = LoadMask(names=["a", "b"], like=like)(str(path))
        want = np.zeros((1, 12, 16, 20), np.uint8)  # (C, z, y, x) of the image
        want[0, 2:4, 0:2, 5:8] = 1  # box a moved by (dz, dy, dx) = (2, -1, 3): the empty
        want[0, 5:7, 0:3, 3:6] = 2  # row y=0 cropped, z padded from 6 to 12 slices
        assert torch.equal(out.as_tensor(), torch.from_numpy(want.transpose(0, 3, 2, 1)))
        np.testing.assert_allclose(out.affine.numpy(), AFF)
        assert tuple(out.meta["spatial_shape"]) == IMAGE_SHAPE
    channels = LoadMask(names=["a", "b"], mode="channels", like=_image())(str(path))
    assert channels.shape == (2, *IMAGE_SHAPE) and int(channels.sum()) == int((want > 0).sum())


def test_voxels_outside_the_image_are_named_not_dropped(tmp_path):
    path = _archive(tmp_path / "a.mska", (0, 0, 10), (20, 16, 4), {"tail": np.s_[1:3, 2:4, 2:4]})
    with pytest.raises(SpaceMismatchError, match=r"masks \['tail'\] have voxels outside"):
        LoadMask(like=_image())(str(path))


def test_another_lattice_names_both_grids(tmp_path):
    half = _archive(tmp_path / "h.mska", (0.5, 0, 0), IMAGE_SHAPE, {"a": np.s_[1:2, 1:2, 1:2]})
    with pytest.raises(SpaceMismatchError) as err:
        LoadMask(like=_image())(str(half))
    text = str(err.value)
    assert text.startswith(str(half)) and "0.6 mm off the image's voxel centres" in text
    assert "masks shape(z,y,x)=(12, 16, 20)" in text and "image shape(z,y,x)=(12, 16, 20)" in text
    coarse = AFF.copy()
    coarse[:3, 2] *= 2
    with pytest.raises(SpaceMismatchError, match=r"spacing \(z, y, x\) \(2, "):
        LoadMask(like=_image(coarse, (20, 16, 6)))(str(half))


def test_loadmaskd_like_needs_a_loaded_image(tmp_path):
    path = _archive(tmp_path / "a.mska", (0, 0, 0), IMAGE_SHAPE, {"a": np.s_[1:2, 1:2, 1:2]})
    with pytest.raises(MaskValidationError, match=r"d\['image'\] holds a str, not a loaded image"):
        LoadMaskd("label", like="image")({"label": str(path), "image": "ct.nii.gz"})
    out = LoadMaskd("label", like="image")({"label": str(path), "image": _image()})
    assert out["label"].shape == (1, *IMAGE_SHAPE)
    # the same grid is accepted by the default check; check_grid=False skips a mismatch
    LoadMaskd("label")({"label": str(path), "image": _image()})
    other = _image(space_to_affine(affine_to_space(AFF, IMAGE_SHAPE)) * 2)
    other.affine[3, 3] = 1
    LoadMaskd("label", check_grid=False)({"label": str(path), "image": other})
    with pytest.raises(SpaceMismatchError, match="not one lattice: resample"):
        LoadMaskd("label")({"label": str(path), "image": other})


def test_a_cropped_seg_nrrd_says_so_and_goes_back_on_the_image_grid(tmp_path):
    # Slicer saves a segmentation on its segments' extent and says where that lies in the
    # image it segmented (ReferenceImageExtentOffset, Reference image geometry): a crop
    # packs to a grid that is not the image's, which pack says and the archive records
    nrrd = pytest.importorskip("nrrd")
    sample = Path(__file__).resolve().parents[2].parent / "shared/data/interchange"
    sample = sample / "Segmentation.seg.nrrd"
    if not sample.exists():
        pytest.skip(f"Slicer's sample file is not at {sample}")
    data, header = nrrd.read(str(sample), index_order="F")  # (i, j, k) or (layer, i, j, k)
    full = run("pack", sample, "-o", tmp_path / "full.mska")
    assert full.returncode == 0 and "note:" not in full.stderr
    with MaskArchive(tmp_path / "full.mska") as ar:
        assert dict(ar.archive_attrs) == {"grid": "image"}  # the whole image: 128 x 128 x 34
        space, names = ar.space, ar.all_names()
        want = {n: ar.read_array(n) for n in names}
    cropped = data[..., 3:30]  # slices 3..29 of 34
    head = dict(header)
    head["sizes"] = np.array(cropped.shape)
    step = np.asarray(header["space directions"], float)[-1]  # the k axis
    head["space origin"] = np.asarray(header["space origin"], float) + 3 * step
    head["Segmentation_ReferenceImageExtentOffset"] = "0 0 3"
    nrrd.write(str(tmp_path / "crop.seg.nrrd"), cropped, head, index_order="F")
    packed = run("pack", tmp_path / "crop.seg.nrrd", "-o", tmp_path / "crop.mska")
    assert packed.returncode == 0, packed.stderr
    notes = [line for line in packed.stderr.splitlines() if "note:" in line]
    assert (
        len(notes) == 1 and "27 slices of 128 x 128 at voxel offset (i, j, k) (0, 0, 3)" in notes[0]
    )
    assert "not the image Slicer segmented (34 slices of 128 x 128)" in notes[0]
    assert "like='image'" in notes[0]
    with MaskArchive(tmp_path / "crop.mska") as ar:
        assert dict(ar.archive_attrs) == {"grid": "segmentation"}
    # like= the image puts them back where they were, voxel for voxel
    affine = space_to_affine(space)
    out = LoadMask(names=names, mode="channels", like=(affine, tuple(space.shape[::-1])))(
        str(tmp_path / "crop.mska")
    )
    for c, n in enumerate(names):
        kept = np.zeros_like(want[n])
        kept[3:30] = want[n][3:30]  # what the crop holds, on the image's slices
        assert kept.any()
        np.testing.assert_array_equal(out[c].numpy().transpose(2, 1, 0) > 0, kept, err_msg=n)
