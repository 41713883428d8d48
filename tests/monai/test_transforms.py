"""LoadMask(d), MaskReader and SelectLabels(d): names, modes, dtypes, errors, pipelines."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from monai.data import DataLoader, Dataset, MetaTensor, decollate_batch  # noqa: E402
from monai.transforms import (  # noqa: E402
    Compose,
    EnsureTyped,
    LoadImage,
    LoadImaged,
    RandCropByPosNegLabeld,
)

from medmask import MaskArchive, SegmentationMask, save_mask  # noqa: E402
from medmask.errors import (  # noqa: E402
    CorruptFileError,
    ForeignFileError,
    MaskNotFoundError,
    MaskValidationError,
)
from medmask.nifti import affine_to_space  # noqa: E402
from medmask_monai import (  # noqa: E402
    LoadMask,
    LoadMaskd,
    MaskReader,
    SelectLabels,
    SelectLabelsd,
)

_C, _S = np.cos(0.2), np.sin(0.2)
AFF = np.array(  # axes permuted (x runs along R-A) and tilted, orthogonal
    [
        [0.0, -0.9, 0.0, 40.0],
        [0.78 * _C, 0.0, -2.4 * _S, -20.0],
        [0.78 * _S, 0.0, 2.4 * _C, 7.0],
        [0, 0, 0, 1.0],
    ]
)
SHAPE = (24, 20, 10)  # (x, y, z)
NAMES = ["liver", "spleen", "kidney_left", "kidney_right", "stomach"]


def masks() -> dict[str, np.ndarray]:
    """Overlapping boxes in (x, y, z); "stomach" overlaps "liver"."""
    out = {}
    for k, name in enumerate(NAMES):
        a = np.zeros(SHAPE, np.uint8)
        a[2 + 3 * k : 9 + 3 * k, 2 + 2 * k : 8 + 2 * k, 1 + k : 5 + k] = 1
        out[name] = a
    out["stomach"][4:8, 3:6, 2:4] = 1  # inside liver
    return out


@pytest.fixture(scope="module")
def case(tmp_path_factory, nifti_case):
    return nifti_case(
        tmp_path_factory.mktemp("tcase"),
        masks(),
        AFF,
        image_seed=0,
        labelmap=True,
        archives={"case.mska": None, "case_v1.mska": "zstd"},
    )


def expected_labelmap(names: dict[str, int]) -> np.ndarray:
    out = np.zeros(SHAPE, np.uint8)
    for n, v in names.items():
        out[masks()[n] == 1] = v
    return out


@pytest.mark.parametrize("archive", ["case.mska", "case_v1.mska"])
def test_names_list_dict_none(case, archive):
    path = str(case / archive)
    everything = LoadMask()(path)
    stored = sorted(NAMES)  # folder_to_archive packs in file-name order
    assert everything.meta["labels"] == {n: k for k, n in enumerate(stored, start=1)}
    np.testing.assert_array_equal(
        everything[0].numpy(), expected_labelmap({n: k for k, n in enumerate(stored, start=1)})
    )
    listed = LoadMask(names=["stomach", "liver"])(path)  # liver comes later: it wins
    np.testing.assert_array_equal(listed[0].numpy(), expected_labelmap({"stomach": 1, "liver": 2}))
    shared = LoadMask(names={"kidney_left": 2, "kidney_right": 2, "liver": 1})(path)
    np.testing.assert_array_equal(
        shared[0].numpy(), expected_labelmap({"kidney_left": 2, "kidney_right": 2, "liver": 1})
    )
    assert shared.meta["labels"] == {"kidney_left": 2, "kidney_right": 2, "liver": 1}
    assert LoadMask(names="spleen")(path).meta["labels"] == {"spleen": 1}


@pytest.mark.parametrize("archive", ["case.mska", "case_v1.mska"])
def test_channels_keep_overlaps(case, archive):
    path = str(case / archive)
    ch = LoadMask(
        names={"liver": 3, "stomach": 1, "kidney_left": 2, "kidney_right": 2}, mode="channels"
    )(path)
    assert ch.shape == (3, *SHAPE) and ch.dtype == torch.uint8
    m = masks()
    np.testing.assert_array_equal(ch[0].numpy(), m["stomach"])  # channels in label order
    np.testing.assert_array_equal(ch[1].numpy(), m["kidney_left"] | m["kidney_right"])
    np.testing.assert_array_equal(ch[2].numpy(), m["liver"])
    assert ((ch[0] == 1) & (ch[2] == 1)).any()  # the overlap is kept
    assert ch.meta["mask_mode"] == "channels"


def test_dtypes(case):
    path = str(case / "case.mska")
    assert LoadMask(names=["liver"])(path).dtype == torch.uint8
    # default: types torch's ordinary kernels support (no uint16: it has no flip)
    assert LoadMask(names={"liver": 255})(path).dtype == torch.uint8
    assert LoadMask(names={"liver": 256})(path).dtype == torch.int16
    assert LoadMask(names={"liver": 32767})(path).dtype == torch.int16
    assert LoadMask(names={"liver": 70000})(path).dtype == torch.int32
    assert LoadMask(names={"liver": 256}, dtype=torch.uint16)(path).dtype == torch.uint16
    assert LoadMask(names=["liver"], dtype=torch.int64)(path).dtype == torch.int64
    assert LoadMask(names=["liver"], dtype="float32")(path).dtype == torch.float32
    assert LoadMask(names=["liver"], mode="channels", dtype=bool)(path).dtype == torch.bool
    with pytest.raises(MaskValidationError, match="cannot hold label 300"):
        LoadMask(names={"liver": 300}, dtype=np.uint8)(path)
    with pytest.raises(MaskValidationError):
        LoadMask(dtype="not-a-dtype")


def test_missing_names(case):
    path = str(case / "case.mska")
    with pytest.raises(MaskNotFoundError, match=r"did you mean: 'kidney_left'") as err:
        LoadMask(names=["kidney_lft"])(path)
    assert "missing='empty'" in str(err.value) and isinstance(err.value, KeyError)
    got = LoadMask(names=["pancreas", "liver"], missing="empty")(path)
    np.testing.assert_array_equal(got[0].numpy(), 2 * masks()["liver"])
    assert got.meta["labels"] == {"pancreas": 1, "liver": 2}
    ch = LoadMask(names=["pancreas", "liver"], mode="channels", missing="empty")(path)
    assert ch.shape[0] == 2 and int(ch[0].sum()) == 0
    for bad in (
        dict(mode="onehot"),
        dict(missing="skip"),
        dict(names={"liver": 0}),
        dict(names={"liver": True}),
        dict(names=["liver", "liver"]),
    ):
        with pytest.raises(MaskValidationError):
            LoadMask(**bad)(path)


def test_msk_file(case, tmp_path):
    lab = np.zeros(SHAPE[::-1], np.uint16)
    lab[1:4, 2:6, 3:9] = 3
    lab[5:8, 1:4, 2:5] = 700
    lab[0, 0, 0] = 9  # a value the mapping does not name
    space = affine_to_space(AFF, SHAPE)
    save_mask(SegmentationMask(lab, {"a": 3, "b": 700, "c": 12}, space), tmp_path / "m.msk")
    path = str(tmp_path / "m.msk")
    full = LoadMask()(path)
    assert full.dtype == torch.int16 and full.meta["labels"] == {"a": 3, "b": 700, "c": 12}
    expect = np.where(np.isin(lab, [3, 700]), lab, 0).transpose(2, 1, 0)
    np.testing.assert_array_equal(full[0].numpy(), expect)
    renum = LoadMask(names=["b", "a"])(path)
    np.testing.assert_array_equal(
        renum[0].numpy(), np.select([lab == 700, lab == 3], [1, 2], 0).transpose(2, 1, 0)
    )
    assert renum.dtype == torch.uint8
    ch = LoadMask(names={"a": 1, "b": 1, "c": 2}, mode="channels")(path)
    assert ch.shape == (2, *SHAPE) and int(ch[1].sum()) == 0
    with pytest.raises(MaskNotFoundError, match="no label named 'd'"):
        LoadMask(names=["d"])(path)
    nii_affine = LoadImage(image_only=True)(str(case / "ct.nii.gz")).affine
    np.testing.assert_allclose(full.affine.numpy(), nii_affine.numpy(), atol=1e-3)


def test_several_paths_stack_on_channels(case):
    path = str(case / "case.mska")
    two = LoadMask(names=["liver"])([path, str(case / "case_v1.mska")])
    assert two.shape == (2, *SHAPE) and torch.equal(two[0], two[1])


def test_errors_on_bad_files(case, tmp_path):
    with pytest.raises(FileNotFoundError):
        LoadMask()(str(tmp_path / "nope.mska"))
    with pytest.raises(ForeignFileError, match="this is a NIfTI image.*medmask pack") as err:
        LoadMask()(str(case / "ct.nii.gz"))  # another format, not a damaged file
    assert not isinstance(err.value, CorruptFileError) and err.value.kind == "nifti"
    broken = tmp_path / "broken.mska"
    raw = bytearray((case / "case.mska").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    broken.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError):
        LoadMask()(str(broken))


def test_dictionary_transform(case):
    path = str(case / "case.mska")
    load = LoadMaskd(["label", "other"], names=["liver"], allow_missing_keys=True)
    d = load({"label": path, "keep": 1})
    assert d["label"].shape == (1, *SHAPE) and d["keep"] == 1 and "other" not in d
    with pytest.raises(KeyError):
        LoadMaskd("other")({"label": path})
    clone = pickle.loads(pickle.dumps(load))  # goes to spawn workers
    assert torch.equal(clone({"label": path})["label"], d["label"])


def test_reader_in_loadimaged(case):
    """One LoadImaged reads the NIfTI image with nibabel and the archive with MaskReader."""
    item = {"image": str(case / "ct.nii.gz"), "label": str(case / "case.mska")}
    names = {"liver": 1, "kidney_left": 2, "kidney_right": 2}
    out = LoadImaged(
        ["image", "label"], reader=MaskReader(names=names), ensure_channel_first=True, dtype=None
    )(item)
    assert out["image"].dtype == torch.float32 and out["image"].shape == (1, *SHAPE)
    assert out["label"].dtype == torch.uint8 and out["label"].shape == (1, *SHAPE)
    np.testing.assert_array_equal(out["label"][0].numpy(), expected_labelmap(names))
    meta = out["label"].meta
    assert meta["filename_or_obj"] == item["label"] and meta["labels"] == names
    for key in ("affine", "original_affine", "spatial_shape", "space", "original_channel_dim"):
        assert key in meta
    np.testing.assert_allclose(out["label"].affine.numpy(), out["image"].affine.numpy(), atol=1e-3)
    # the reader class with its arguments, as MONAI allows; LoadImage's default dtype is float32
    by_class = LoadImaged("label", reader=MaskReader, names=names)(item)["label"]
    assert by_class.dtype == torch.float32 and torch.equal(by_class.to(torch.uint8), out["label"])
    by_name = LoadImage(image_only=True, reader="medmask_monai.MaskReader", names=["liver"])
    assert by_name(item["label"]).shape == (1, *SHAPE)
    reader = MaskReader()
    assert reader.verify_suffix("a.mska") and reader.verify_suffix(["a.msk", "b.MSKA"])
    assert not reader.verify_suffix("a.nii.gz") and not reader.verify_suffix(["a.mska", "b.nii"])
    with pytest.raises(ForeignFileError, match="NIfTI"):
        reader.read(item["image"])  # so that LoadImage falls back to nibabel for it
    data, meta = reader.get_data(reader.read(item["label"]))
    assert data.shape == (1, *SHAPE) and meta["original_channel_dim"] == 0


def test_against_nifti_labelmap_with_random_crops(case):
    """The same seeded crops from the NIfTI label map and from the archive are identical."""
    names = {n: k for k, n in enumerate(NAMES, start=1)}

    def pipeline(load_label):
        return Compose(
            [
                LoadImaged("image", ensure_channel_first=True),
                load_label,
                EnsureTyped("label", dtype=torch.float32),
                RandCropByPosNegLabeld(
                    ["image", "label"], "label", spatial_size=(8, 8, 4), num_samples=3
                ),
            ]
        ).set_random_state(seed=7)

    item = {"image": str(case / "ct.nii.gz"), "label": None}
    ref = pipeline(LoadImaged("label", ensure_channel_first=True))(
        {**item, "label": str(case / "labels.nii.gz")}
    )
    got = pipeline(LoadMaskd("label", names=names))({**item, "label": str(case / "case.mska")})
    for r, g in zip(ref, got, strict=True):
        assert torch.equal(r["label"].as_tensor(), g["label"].as_tensor())
        assert torch.equal(r["image"].as_tensor(), g["image"].as_tensor())
        np.testing.assert_allclose(r["label"].affine.numpy(), g["label"].affine.numpy(), atol=1e-3)


def test_batches_collate_and_decollate(case, tmp_path):
    """Names given: every case has the same meta layout, so MONAI's collate batches them."""
    other = tmp_path / "other.mska"
    space = affine_to_space(AFF, SHAPE)
    with MaskArchive(other, "w", space=space) as ar:  # a case without kidneys
        a = np.zeros(SHAPE[::-1], bool)
        a[2:5, 3:9, 4:12] = True
        ar.add("liver", SegmentationMask(a, {"liver": 1}, space))
    files = [{"label": str(case / "case.mska")}, {"label": str(other)}] * 2
    names = {"liver": 1, "kidney_left": 2, "kidney_right": 2}
    ds = Dataset(files, LoadMaskd("label", names=names, missing="empty"))
    batches = list(DataLoader(ds, batch_size=2, num_workers=2))
    assert len(batches) == 2 and batches[0]["label"].shape == (2, 1, *SHAPE)
    items = decollate_batch(batches[0])
    assert items[1]["label"].meta["filename_or_obj"] == str(other)
    assert torch.equal(items[0]["label"].as_tensor(), ds[0]["label"].as_tensor())
    np.testing.assert_allclose(items[1]["label"].affine.numpy(), AFF, atol=1e-3)


# -- SelectLabels -------------------------------------------------------------------------------
def kinds(lab: np.ndarray) -> dict:
    return {
        "numpy": lab,
        "torch": torch.as_tensor(lab),
        "strided": torch.as_tensor(lab.transpose(2, 1, 0).copy()).permute(2, 1, 0),
        "meta": MetaTensor(
            torch.as_tensor(lab), affine=torch.diag(torch.tensor([2.0, 2, 2, 1])), meta={"k": 1}
        ),
    }


@pytest.mark.parametrize("kind", ["numpy", "torch", "strided", "meta"])
def test_select_labels(kind):
    lab = np.random.default_rng(0).integers(0, 20, (6, 7, 8)).astype(np.uint8)
    x = kinds(lab)[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keep = SelectLabels([3, 4, 5, 11])(x)
    np.testing.assert_array_equal(np.asarray(keep), np.where(np.isin(lab, [3, 4, 5, 11]), lab, 0))
    assert keep.dtype in (np.uint8, torch.uint8)
    many = SelectLabels(range(1, 20, 2))(x)
    np.testing.assert_array_equal(np.asarray(many), np.where(lab % 2 == 1, lab, 0))
    remap = SelectLabels({3: 1, 4: 1, 11: 2, 5: 0})(x)
    np.testing.assert_array_equal(
        np.asarray(remap), np.select([np.isin(lab, [3, 4]), lab == 11], [1, 2], 0)
    )
    big = SelectLabels({k: 100 + k for k in range(1, 19)})(x)  # lookup-table path
    np.testing.assert_array_equal(np.asarray(big), np.where((lab > 0) & (lab < 19), lab + 100, 0))
    binary = SelectLabels(7, binary=True)(x)
    np.testing.assert_array_equal(np.asarray(binary), lab == 7)
    assert SelectLabels([7], dtype=torch.int64)(x).dtype in (np.int64, torch.int64)
    if kind == "numpy":
        assert isinstance(keep, np.ndarray)
    else:
        assert isinstance(keep, torch.Tensor)
    if kind == "meta":
        for out in (keep, remap, binary):
            assert isinstance(out, MetaTensor) and out.meta["k"] == 1
            assert torch.equal(out.affine, x.affine)
    d = SelectLabelsd(["l", "absent"], [3], allow_missing_keys=True)({"l": x})
    np.testing.assert_array_equal(np.asarray(d["l"]), np.where(lab == 3, 3, 0))


@pytest.mark.parametrize(
    "dtype", [torch.uint8, torch.int16, torch.uint16, torch.int32, torch.int64, torch.bool]
)
def test_select_labels_torch_kernels(dtype):
    """The path taken for tensors on accelerators, checked on CPU against the NumPy one."""
    lab = np.random.default_rng(1).integers(0, 40, (5, 6, 7))
    t = torch.as_tensor(lab).to(dtype)
    for sel in (
        SelectLabels([]),
        SelectLabels([1, 3]),
        SelectLabels(range(5, 30)),
        SelectLabels(range(0, 40, 3)),
        SelectLabels({1: 2, 3: 2, 39: 70000}),
        SelectLabels({1: 2, 3: 2, 39: 70000, 257: 1, 70001: 3}),
        SelectLabels([1, 257, 65537]),
        SelectLabels({k: 1 for k in range(0, 40, 2)}),
        SelectLabels([2, 700], binary=True),
        SelectLabels([0, 1], dtype=np.int32),
    ):
        a, b = sel._torch(t), sel(t)
        assert a.dtype == b.dtype and a.device == t.device
        assert torch.equal(a.to(torch.int64), b.to(torch.int64))


def test_select_labels_errors():
    with pytest.raises(MaskValidationError):
        SelectLabels([-1])
    with pytest.raises(MaskValidationError):
        SelectLabels({1: 1.5})
    with pytest.raises(MaskValidationError, match="not whole numbers"):
        SelectLabels([1])(np.full((2, 2), 0.5, np.float32))
    with pytest.raises(MaskValidationError, match="not whole numbers"):
        SelectLabels([1])(torch.full((2, 2), 1.25))
    with pytest.raises(MaskValidationError, match="not whole numbers"):
        SelectLabels([1])._torch(torch.full((2, 2), float("nan")))
    with pytest.raises(MaskValidationError):
        SelectLabels([1])(np.zeros((2, 2), np.complex64))
    with pytest.raises(MaskValidationError, match="names with integers|non-negative"):
        SelectLabels([1, "liver"])


#: labels around the values that occur, and at the edges of the 8/16-bit ranges
LABEL = st.integers(0, 300) | st.sampled_from([127, 128, 255, 256, 257, 32767, 65535, 65536, 65537])


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([np.uint8, np.int8, np.uint16, np.int32, np.int64, np.uint32]),
    st.lists(LABEL, max_size=12),
    st.dictionaries(LABEL, st.integers(0, 1000), max_size=8),
    st.integers(0, 2**16),
)
def test_select_labels_property(dtype, keep, remap, seed):
    info = np.iinfo(dtype)
    lab = np.random.default_rng(seed).integers(max(info.min, -5), min(info.max, 300), (4, 5, 6))
    lab = lab.astype(dtype)
    keep_ref = np.where(np.isin(lab, keep), lab, 0)
    remap_ref = np.zeros(lab.shape, np.int64)
    for old, new in remap.items():
        remap_ref[lab == old] = new
    for x in (lab, torch.as_tensor(lab)):
        np.testing.assert_array_equal(np.asarray(SelectLabels(keep)(x)), keep_ref)
        np.testing.assert_array_equal(
            np.asarray(SelectLabels(remap)(x)).astype(np.int64), remap_ref
        )
    t = torch.as_tensor(lab)
    before = t.clone()
    np.testing.assert_array_equal(SelectLabels(keep)._torch(t).numpy(), keep_ref)
    np.testing.assert_array_equal(SelectLabels(remap)._torch(t).numpy().astype(np.int64), remap_ref)
    assert torch.equal(t, before)  # inputs are never modified
