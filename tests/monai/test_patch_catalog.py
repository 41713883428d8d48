"""PatchDataset over a catalogue (no archive opened at startup, stale archives caught in a
worker) and with partial labels: centres from annotated masks only, label_available under a
scheme, patches equal to the truth."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")
pytest.importorskip("blosc2")
pytest.importorskip("pyarrow")

from patch_support import SHAPE, box_of, make_cases, window  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from medmask import Catalog, MaskArchive  # noqa: E402
from medmask.errors import MaskValidationError, StaleCatalogError  # noqa: E402
from medmask.patches import NnUNetPolicy, PatchCase, PosNeg  # noqa: E402
from medmask.schemes import LabelScheme  # noqa: E402
from medmask_monai import PatchDataset  # noqa: E402

PATCH = (12, 16, 20)
SCHEME = LabelScheme("abd", ["liver", "kidney", "spleen"])


@pytest.fixture
def cases(tmp_path):
    """Two phantom cases; the second annotated for the liver and both kidneys only (its
    other masks stored but not annotated, e.g. a model's output)."""
    made = make_cases(tmp_path, n=2)
    with MaskArchive(made[1].archive, "a") as ar:
        ar.set_archive_attrs({"annotated": ["liver", "kidney_left", "kidney_right"]})
    return made


def test_catalogue_input_equals_path_input(cases, tmp_path):
    path = tmp_path / "cat.parquet"
    Catalog.build([c.archive for c in cases]).write(path)
    cat = Catalog.open(path)
    images = {c.archive.stem: c.nii for c in cases}
    from_cat = PatchDataset(cat, PATCH, images=images, samples_per_case=8, seed=3)
    from_paths = PatchDataset(
        [(c.nii, c.archive) for c in cases], PATCH, samples_per_case=8, seed=3
    )
    assert [c.index for c in from_cat.cases] == [c.index for c in from_paths.cases]
    for i in range(len(from_cat)):
        a, b = from_cat[i], from_paths[i]
        assert torch.equal(a["label"], b["label"]) and torch.equal(a["image"], b["image"])
    with pytest.raises(MaskValidationError, match="images="):
        PatchDataset(cat, PATCH)
    for c in cases:  # startup reads the catalogue (and the images' headers) only
        c.archive.unlink()
    PatchDataset(cat, PATCH, images=lambda case: images[case])


def test_centres_only_on_annotated_masks(cases):
    annotated = {"liver", "kidney_left", "kidney_right"}
    ds = PatchDataset(
        [(c.nii, c.archive) for c in cases],
        PATCH,
        policy=NnUNetPolicy(foreground=1.0),  # every centre on a class the case has
        samples_per_case=60,
        seed=5,
    )
    drawn = {0: set(), 1: set()}
    for i in range(len(ds)):
        item = ds[i]
        assert item["kind"] == "class"
        drawn[item["case"]].add(item["class"])
    assert drawn[1] and drawn[1] <= annotated
    assert drawn[0] - annotated  # case 0 records no annotated list: every mask
    union = PatchDataset(  # foreground centres: voxels of the annotated masks' union
        [(cases[1].nii, cases[1].archive)], PATCH, policy=PosNeg(pos=1, neg=0), samples_per_case=30
    )
    fg = np.any([cases[1].masks[n] for n in annotated], axis=0)
    others = np.any([m for n, m in cases[1].masks.items() if n not in annotated], axis=0)
    assert (fg & ~others).any()
    for i in range(len(union)):
        assert fg[tuple(union[i]["centre"].tolist())]
    explicit = PatchDataset(
        [PatchCase(cases[0].nii, cases[0].archive, classes={"spleen"})],
        PATCH,
        policy=PosNeg(pos=1, neg=0),
        samples_per_case=10,
    )
    assert {explicit[i]["class"] for i in range(10)} == {"spleen"}


@pytest.mark.parametrize("mode", ["labelmap", "channels"])
def test_scheme_and_label_available(cases, tmp_path, mode):
    Catalog.build([c.archive for c in cases]).write(tmp_path / "cat.parquet")
    cat = Catalog.open(tmp_path / "cat.parquet")
    images = {c.archive.stem: c.nii for c in cases}
    ds = PatchDataset(cat, PATCH, images=images, scheme=SCHEME, mode=mode, samples_per_case=6)
    for i in range(len(ds)):
        item = ds[i]
        k = item["case"]
        assert item["label_available"].tolist() == ([True, True, True], [True, True, False])[k]
        case = cases[k]
        box = box_of(item["centre"].tolist(), PATCH)
        kidney = case.masks["kidney_left"] | case.masks["kidney_right"]
        spleen = case.masks["spleen"] if k == 0 else np.zeros(SHAPE, bool)  # not annotated
        if mode == "labelmap":
            want = np.zeros(SHAPE, np.uint8)
            for label, m in ((1, case.masks["liver"]), (2, kidney), (3, spleen)):
                want[m] = label
            np.testing.assert_array_equal(item["label"][0].numpy(), window(want, box))
        else:
            assert item["label"].shape == (3, *PATCH)
            for ch, m in enumerate((case.masks["liver"], kidney, spleen)):
                np.testing.assert_array_equal(item["label"][ch].numpy() != 0, window(m, box))
    batch = next(iter(DataLoader(ds, batch_size=4, num_workers=2)))
    assert batch["label_available"].dtype == torch.bool and batch["label_available"].shape == (4, 3)
    # whole batches built by the dataset (ds.loader) carry the same vectors, per case
    whole = next(iter(ds.loader(4, shuffle=False, num_workers=0)))
    assert whole["label_available"].dtype == torch.bool
    expected = [([True, True, True], [True, True, False])[k] for k in whole["case"].tolist()]
    assert whole["label_available"].tolist() == expected


def test_stale_archive_is_caught_in_a_worker(cases, tmp_path):
    Catalog.build([c.archive for c in cases]).write(tmp_path / "cat.parquet")
    cat = Catalog.open(tmp_path / "cat.parquet")
    with MaskArchive(cases[0].archive, "a") as ar:
        ar.set_attrs("liver", {"description": "edited"})
    ds = PatchDataset(cat, PATCH, images={c.archive.stem: c.nii for c in cases})
    with pytest.raises(StaleCatalogError) as err:
        list(DataLoader(ds, batch_size=1, num_workers=1))
    assert str(cases[0].archive) in str(err.value) and "cat.parquet" in str(err.value)


def test_rand_crop_by_mask_index_annotated_and_catalogued(cases, tmp_path):
    """RandCropByMaskIndexd: foreground centres on annotated masks only, and a catalogue's
    ArchiveRef checked against its row when opened."""
    from monai.transforms import LoadImaged

    from medmask_monai import RandCropByMaskIndexd

    c = cases[1]  # annotated for the liver and both kidneys
    annotated = ["liver", "kidney_left", "kidney_right"]
    loaded = LoadImaged("image", ensure_channel_first=True)({"image": str(c.nii)})
    Catalog.build([c.archive]).write(tmp_path / "cat.parquet")
    ref = Catalog.open(tmp_path / "cat.parquet").refs()[0]
    crop = RandCropByMaskIndexd("image", "label", (1, 1, 1), policy=PosNeg(1, 0), num_samples=40)
    crop.set_random_state(0)
    crop(dict(loaded, label=ref))
    fg = np.any([c.masks[n] for n in annotated], axis=0)
    assert all(fg[z, y, x] for x, y, z in crop.cropper.centers)
    with MaskArchive(c.archive, "a") as ar:
        ar.set_attrs("liver", {"description": "edited"})
    fresh = RandCropByMaskIndexd("image", "label", (1, 1, 1), num_samples=1)
    with pytest.raises(StaleCatalogError, match="cat.parquet"):
        fresh(dict(loaded, label=ref))
