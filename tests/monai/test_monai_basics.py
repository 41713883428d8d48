"""medmask_monai with real MONAI, torch and DataLoader workers."""

from __future__ import annotations

import pickle

import nibabel as nib
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from monai.data import MetaTensor  # noqa: E402
from monai.transforms import Compose, LoadImage, LoadImaged, Orientationd, Spacingd  # noqa: E402
from torch.utils.data import DataLoader, DistributedSampler  # noqa: E402

from medmask import MaskArchive, SegmentationMask, save_mask  # noqa: E402
from medmask.errors import MaskNotFoundError  # noqa: E402
from medmask.nifti import affine_to_space  # noqa: E402
from medmask_monai import (  # noqa: E402
    LoadMask,
    LoadMaskd,
    MaskArchiveDataset,
    MaskReader,
    SelectLabels,
    SelectLabelsd,
)

Q, _ = np.linalg.qr(np.array([[0.9, -0.3, 0.1], [0.35, 0.9, -0.2], [0.0, 0.25, 0.95]]))
AFF = np.eye(4)
AFF[:3, :3] = Q * [0.8, 0.9, 2.5]
AFF[:3, 3] = [-120.0, 30.0, 55.0]
SHAPE_XYZ = (20, 18, 12)


def organ_arrays():
    rng = np.random.default_rng(0)
    out = {}
    for name in ["liver", "spleen", "kidney_left", "kidney_right"]:
        a = np.zeros(SHAPE_XYZ, np.uint8)
        lo = rng.integers(0, 8, 3)
        a[lo[0] : lo[0] + 9, lo[1] : lo[1] + 7, lo[2] : lo[2] + 5] = 1
        out[name] = a
    return out


def sform_not_qform(img):
    """sform (code 2) = AFF; qform (code 1) shifted by 7 mm: MONAI follows the sform."""
    img.set_sform(AFF, code=2)
    shifted = AFF.copy()
    shifted[:3, 3] += 7.0
    img.set_qform(shifted, code=1)
    return img


@pytest.fixture(scope="module")
def case(tmp_path_factory, nifti_case):
    d = nifti_case(
        tmp_path_factory.mktemp("case"),
        organ_arrays(),
        AFF,
        header=sform_not_qform,
        image_seed=None,
        archives={"case.mska": None},
    )
    nib.save(
        nib.Nifti1Image(np.random.default_rng(1).normal(size=SHAPE_XYZ).astype(np.float32), AFF),
        str(d / "ct.nii.gz"),
    )
    return d


def test_geometry_matches_loadimage(case):
    load_nii = LoadImage(image_only=True)
    for name in organ_arrays():
        ref = load_nii(str(case / "segmentations" / f"{name}.nii.gz"))
        got = LoadMask(names=[name])(str(case / "case.mska"))
        assert isinstance(got, MetaTensor) and got.shape == (1, *ref.shape)
        np.testing.assert_array_equal(got[0].numpy() != 0, ref.numpy() != 0)
        np.testing.assert_allclose(got.affine.numpy(), ref.affine.numpy(), atol=1e-3)
        assert tuple(got.meta["spatial_shape"]) == tuple(ref.meta["spatial_shape"])


def test_names_modes_dtype_missing(case):
    path = str(case / "case.mska")
    arrays = organ_arrays()
    everything = LoadMask()(path)
    assert everything.meta["labels"] == {n: k for k, n in enumerate(sorted(arrays), start=1)}
    both = LoadMask(names={"kidney_left": 2, "kidney_right": 2, "liver": 1})(path)
    expect = np.zeros(SHAPE_XYZ, np.uint8)
    expect[arrays["kidney_left"] == 1] = 2
    expect[arrays["kidney_right"] == 1] = 2
    expect[arrays["liver"] == 1] = 1  # the later name wins
    np.testing.assert_array_equal(both[0].numpy(), expect)
    assert both.dtype == torch.uint8
    ch = LoadMask(names=["spleen", "liver"], mode="channels")(path)
    assert ch.shape == (2, *SHAPE_XYZ)
    np.testing.assert_array_equal(ch[0].numpy(), arrays["spleen"])
    np.testing.assert_array_equal(ch[1].numpy(), arrays["liver"])  # overlaps kept
    assert LoadMask(names=["liver"], dtype=np.int64)(path).dtype == torch.int64
    big = LoadMask(names={"liver": 300})(path)  # above 255: int16 (torch has no uint16 flip)
    assert big.dtype == torch.int16 and big.numpy().max() == 300
    with pytest.raises(MaskNotFoundError, match="did you mean: 'liver'"):
        LoadMask(names=["livr"])(path)
    empty = LoadMask(names=["liver", "pancreas"], missing="empty")(path)
    assert int(empty.max()) == 1


def test_dictionary_transforms_and_reader(case):
    path = str(case / "case.mska")
    d = LoadMaskd(["label", "other"], names=["liver"], allow_missing_keys=True)({"label": path})
    assert d["label"].shape == (1, *SHAPE_XYZ) and "other" not in d
    with pytest.raises(KeyError):
        LoadMaskd("other")({"label": path})
    via_reader = LoadImaged("label", reader=MaskReader(names=["liver"]), image_only=True)(
        {"label": path}
    )["label"]
    np.testing.assert_array_equal(via_reader.numpy(), LoadMask(names=["liver"])(path).numpy())
    assert via_reader.meta["filename_or_obj"] == path
    assert MaskReader().verify_suffix("x.mska") and not MaskReader().verify_suffix("x.nii.gz")


def test_pipeline_with_images(case):
    """Images from NIfTI and masks from archives go through Orientationd/Spacingd together."""
    pipe = Compose(
        [
            LoadImaged("image", ensure_channel_first=True),
            LoadMaskd("label", names=["liver", "spleen"]),
            Orientationd(["image", "label"], axcodes="RAS"),
            Spacingd(["image", "label"], pixdim=(1.5, 1.5, 2.0), mode=("bilinear", "nearest")),
        ]
    )
    out = pipe({"image": str(case / "ct.nii.gz"), "label": str(case / "case.mska")})
    assert out["image"].shape[1:] == out["label"].shape[1:]
    np.testing.assert_allclose(out["image"].affine.numpy(), out["label"].affine.numpy(), atol=1e-3)
    assert set(np.unique(out["label"].numpy())) <= {0, 1, 2}


def test_msk_file(case, tmp_path):
    lab = np.zeros(SHAPE_XYZ[::-1], np.uint8)
    lab[2:5] = 3
    lab[6:8] = 7
    space = affine_to_space(AFF, SHAPE_XYZ)
    save_mask(SegmentationMask(lab, {"a": 3, "b": 7}, space), tmp_path / "m.msk")
    full = LoadMask()(str(tmp_path / "m.msk"))
    np.testing.assert_array_equal(full[0].numpy(), lab.transpose(2, 1, 0))
    renum = LoadMask(names=["b", "a"])(str(tmp_path / "m.msk"))
    assert (
        set(np.unique(renum.numpy())) == {0, 1, 2}
        and (renum[0].numpy() == 1).sum() == (lab == 7).sum()
    )


@pytest.mark.parametrize("kind", ["numpy", "torch", "meta"])
def test_select_labels(kind):
    lab = np.random.default_rng(0).integers(0, 20, (6, 7, 8)).astype(np.uint8)
    x = {
        "numpy": lab,
        "torch": torch.as_tensor(lab),
        "meta": MetaTensor(torch.as_tensor(lab), meta={"k": 1}),
    }[kind]
    keep = SelectLabels([3, 4, 5, 11])(x)
    ref = np.where(np.isin(lab, [3, 4, 5, 11]), lab, 0)
    np.testing.assert_array_equal(np.asarray(keep), ref)
    many = SelectLabels(list(range(1, 20, 2)))(x)
    np.testing.assert_array_equal(np.asarray(many), np.where(lab % 2 == 1, lab, 0))
    remap = SelectLabels({3: 1, 4: 1, 11: 2})(x)
    np.testing.assert_array_equal(
        np.asarray(remap), np.select([np.isin(lab, [3, 4]), lab == 11], [1, 2], 0)
    )
    binary = SelectLabels([7], binary=True)(x)
    np.testing.assert_array_equal(np.asarray(binary), lab == 7)
    if kind == "meta":
        assert isinstance(keep, MetaTensor) and keep.meta["k"] == 1
    d = SelectLabelsd("l", [3])({"l": x})
    np.testing.assert_array_equal(np.asarray(d["l"]), np.where(lab == 3, 3, 0))


# -- MaskArchiveDataset ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    d = tmp_path_factory.mktemp("arch")
    space = affine_to_space(AFF, SHAPE_XYZ)
    paths = []
    for c in range(3):
        p = d / f"case{c}.mska"
        with MaskArchive(p, "w", space=space) as ar:
            for k in range(5):
                a = np.zeros(SHAPE_XYZ[::-1], bool)
                a[c : c + k + 1, k:, : k + 2] = True
                ar.add(f"m{k}", SegmentationMask(a, {f"m{k}": 1}, space))
        paths.append(p)
    return paths


def collect(loader):
    return [(b["name"], b["archive"], b["mask"].clone()) for b in loader]


@pytest.mark.parametrize("ctx", ["fork", "spawn"])
def test_dataset_workers_identical(archives, ctx):
    ds = MaskArchiveDataset(archives)
    assert len(ds) == 15 and ds[7]["name"] == "m2" and ds[7]["archive"].endswith("case1.mska")
    ref = collect(DataLoader(ds, batch_size=3, num_workers=0))
    for workers in (2, 4) if ctx == "fork" else (2,):
        got = collect(
            DataLoader(
                ds,
                batch_size=3,
                num_workers=workers,
                multiprocessing_context=ctx,
                persistent_workers=True,
            )
        )
        assert [g[:2] for g in got] == [r[:2] for r in ref]
        assert all(torch.equal(g[2], r[2]) for g, r in zip(got, ref))


def test_dataset_pickles_without_handles(archives):
    ds = MaskArchiveDataset(archives, names=["m1", "m3"], transform=lambda d: {**d, "extra": 1})
    first = ds[0]
    assert first["extra"] == 1 and len(ds) == 6 and ds._handles
    clone = pickle.loads(pickle.dumps(MaskArchiveDataset(archives, names=["m1", "m3"])))
    assert not clone._handles and torch.equal(clone[0]["mask"], first["mask"])
    ds.close()
    assert not ds._handles
    with pytest.raises(MaskNotFoundError):
        MaskArchiveDataset(archives, names=["nope"], strict=True)


def test_distributed_sampler_partitions(archives):
    ds = MaskArchiveDataset(archives)
    parts = [list(DistributedSampler(ds, num_replicas=3, rank=r, shuffle=False)) for r in range(3)]
    assert sorted(i for p in parts for i in p) == list(range(15))
