"""RandCropByMaskIndex(d): the same crops and metadata as MONAI's RandCropByPosNegLabel /
SpatialCropd give for the same centres (image from LoadImaged, label from LoadMaskd in full),
label crops read by window, centres from the index, the grid checked."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from monai.data import DataLoader, Dataset  # noqa: E402
from monai.transforms import (  # noqa: E402
    Compose,
    LoadImaged,
    RandCropByPosNegLabel,
    SpatialCropd,
)
from patch_support import make_cases  # noqa: E402

from medmask.errors import MaskNotFoundError, SpaceMismatchError  # noqa: E402
from medmask.patches import ClassRatios  # noqa: E402
from medmask_monai import LoadMaskd, RandCropByMaskIndex, RandCropByMaskIndexd  # noqa: E402

SIZE = (16, 12, 8)  # (x, y, z), MONAI's order


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    c = make_cases(tmp_path_factory.mktemp("crops"), n=1)[0]
    item = {"image": str(c.nii), "label": str(c.archive)}
    loaded = LoadImaged("image", ensure_channel_first=True)(item)
    return c, loaded


@pytest.mark.parametrize(
    ("names", "mode"),
    [(None, "labelmap"), (["aorta", "liver", "kidney_left"], "channels")],
)
def test_the_crops_are_monais_for_the_same_centres(case, names, mode):
    c, loaded = case
    crop = RandCropByMaskIndexd("image", "label", SIZE, names=names, mode=mode, num_samples=4)
    crop.set_random_state(0)
    out = crop(dict(loaded))
    assert len(out) == 4
    full = LoadMaskd("label", names=names, mode=mode)({"label": str(c.archive)})["label"]
    for i, o in enumerate(out):
        centre = o["image"].meta["crop_center"]
        ref = RandCropByPosNegLabel(SIZE)
        ref.centers = (centre,)
        img, lab = ref(loaded["image"], randomize=False)[0], ref(full, randomize=False)[0]
        assert torch.equal(o["image"].as_tensor(), img.as_tensor())
        assert torch.equal(o["image"].affine, img.affine)
        assert o["image"].meta["patch_index"] == i and o["label"].meta["patch_index"] == i
        assert o["label"].meta["crop_center"] == centre
        assert torch.equal(o["label"].as_tensor(), lab.as_tensor().to(o["label"].dtype))
        assert torch.allclose(o["label"].affine, img.affine)
        spatial = SpatialCropd(["image"], roi_center=centre, roi_size=SIZE)(
            {"image": loaded["image"]}
        )
        assert torch.equal(o["image"].as_tensor(), spatial["image"].as_tensor())


def test_the_random_state_gives_the_same_centres(case):
    _, loaded = case

    def centres(seed):
        crop = RandCropByMaskIndexd("image", "label", SIZE, num_samples=6)
        crop.set_random_state(seed)
        return [o["image"].meta["crop_center"] for o in crop(dict(loaded))]

    assert centres(1) == centres(1) and centres(1) != centres(2)


def test_randomize_draws_the_centres_the_crops_then_use(case):
    """``randomize`` alone draws ``centers``; a call with ``randomize=False`` crops at them;
    the dictionary transform's ``randomize`` draws nothing (its cropper draws per call)."""
    c, loaded = case
    crop = RandCropByMaskIndex(SIZE, policy=ClassRatios({"liver": 1}, 0), num_samples=3)
    crop.set_random_state(4)
    crop.randomize(str(c.archive), loaded["image"])
    drawn = [tuple(int(v) for v in ctr) for ctr in crop.centers]
    assert len(drawn) == 3
    out = crop(loaded["image"], str(c.archive), randomize=False)
    assert [tuple(int(v) for v in o.meta["crop_center"]) for o in out] == drawn
    again = RandCropByMaskIndex(SIZE, policy=ClassRatios({"liver": 1}, 0), num_samples=3)
    again.set_random_state(4)
    again(loaded["image"], str(c.archive))  # randomize, then crop: the same draws
    assert [tuple(int(v) for v in ctr) for ctr in again.centers] == drawn
    dict_crop = RandCropByMaskIndexd("image", "label", SIZE, num_samples=2)
    dict_crop.set_random_state(0)
    before = dict_crop.cropper.R.get_state()[1].copy()
    dict_crop.randomize()
    assert (dict_crop.cropper.R.get_state()[1] == before).all()


def test_class_centres_lie_on_the_class(case):
    c, loaded = case
    crop = RandCropByMaskIndex(
        (1, 1, 1),
        names=["liver"],
        mode="channels",
        policy=ClassRatios({"liver": 1}, 0),
        num_samples=50,
    )
    crop.set_random_state(0)
    crop(loaded["image"], str(c.archive))
    for (x, y, z), lab in zip(crop.centers, crop.label_crops(loaded["image"])):
        assert c.masks["liver"][z, y, x] and int(lab.sum()) == 1


def test_an_image_on_another_grid_is_refused(case):
    c, loaded = case
    moved = loaded["image"].clone()
    moved.affine[0, 3] += 0.37
    crop = RandCropByMaskIndexd("image", "label", SIZE)
    with pytest.raises(SpaceMismatchError) as info:
        crop({"image": moved, "label": str(c.archive)})
    assert str(c.archive) in str(info.value) and str(c.nii) in str(info.value)
    plain = torch.zeros((1, 5, 5, 5))
    with pytest.raises(SpaceMismatchError, match="records no geometry"):
        crop({"image": plain, "label": str(c.archive)})


def test_an_unknown_name_is_an_error_with_close_matches(case):
    c, loaded = case
    crop = RandCropByMaskIndexd("image", "label", SIZE, names=["livr"])
    with pytest.raises(MaskNotFoundError, match="did you mean: 'liver'"):
        crop(dict(loaded))


def test_in_a_monai_chain_with_workers(case):
    c, _ = case
    chain = Compose(
        [
            LoadImaged("image", ensure_channel_first=True),
            RandCropByMaskIndexd("image", "label", SIZE, num_samples=2),
        ]
    )
    ds = Dataset([{"image": str(c.nii), "label": str(c.archive)}] * 4, chain)
    batches = list(DataLoader(ds, batch_size=2, num_workers=2))
    assert len(batches) == 2
    for b in batches:
        assert b["image"].shape == (4, 1, *SIZE) and b["label"].shape == (4, 1, *SIZE)
    centres = [tuple(t.tolist()) for b in batches for t in b["image"].meta["crop_center"]]
    assert len(set(centres)) > 1
