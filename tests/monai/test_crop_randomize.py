"""RandCropByMaskIndex(d).randomize: MONAI's two-step protocol (draw, then crop with
``randomize=False``) on the array transform; the dictionary one draws inside ``__call__``."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from monai.transforms import LoadImaged  # noqa: E402
from patch_support import make_cases  # noqa: E402

from medmask_monai import RandCropByMaskIndex, RandCropByMaskIndexd  # noqa: E402

SIZE = (8, 6, 4)  # (x, y, z), MONAI's order


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    c = make_cases(tmp_path_factory.mktemp("randomize"), n=1)[0]
    item = LoadImaged("image", ensure_channel_first=True)({"image": str(c.nii)})
    return c, item["image"]


def test_randomize_draws_the_centres_the_crops_use(case):
    c, image = case
    crop = RandCropByMaskIndex(SIZE, names=["liver"], num_samples=3)
    crop.set_random_state(5)
    assert crop.centers is None
    crop.randomize(str(c.archive), image)
    drawn = crop.centers
    assert len(drawn) == 3
    shape = image.shape[1:]
    assert all(0 <= v < n for centre in drawn for v, n in zip(centre, shape, strict=True))
    patches = crop(image, randomize=False)  # the drawn centres, not new ones
    assert [p.meta["crop_center"] for p in patches] == [tuple(d) for d in drawn]
    again = RandCropByMaskIndex(SIZE, names=["liver"], num_samples=3)
    again.set_random_state(5)
    again.randomize(str(c.archive), image)
    assert again.centers == drawn


def test_the_dictionary_transform_draws_in_call_only(case):
    c, image = case
    crop = RandCropByMaskIndexd("image", "label", SIZE, num_samples=2)
    crop.set_random_state(0)
    crop.randomize({"image": image, "label": str(c.archive)})
    assert crop.cropper.centers is None  # nothing drawn yet
    out = crop({"image": image, "label": str(c.archive)})
    assert [o["image"].meta["crop_center"] for o in out] == [
        tuple(v) for v in crop.cropper.centers
    ]  # fmt: skip
