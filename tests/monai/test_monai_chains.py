"""medmask_monai in ordinary MONAI chains (issue 10), index filters (issue 13), storage options.

SelectLabels(d) after LoadImaged/Spacingd (float32 label maps) and after LoadMaskd (names in
``meta["labels"]``); the default dtype of LoadMask(d) for labels above 255 through
Orientationd; MaskArchiveDataset's warnings for names found nowhere and its index filters.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from monai.data import MetaTensor  # noqa: E402
from monai.transforms import (  # noqa: E402
    Compose,
    EnsureChannelFirstd,
    Flipd,
    LoadImaged,
    Orientationd,
    Spacingd,
)

from medmask import MaskArchive, MaskInfo, SegmentationMask  # noqa: E402
from medmask.errors import MaskNotFoundError, MaskValidationError  # noqa: E402
from medmask.geometry import affine_to_space  # noqa: E402
from medmask_monai import (  # noqa: E402
    LoadMask,
    LoadMaskd,
    MaskArchiveDataset,
    MaskReader,
    MissingNameWarning,
    SelectLabels,
    SelectLabelsd,
)

#: An oblique, LPS-ish grid (as TotalSegmentator's CTs): Orientationd really flips it.
AFF = np.array(
    [
        [-1.4, -0.45, 0.0, 250.0],
        [0.45, -1.4, 0.0, 80.0],
        [0.0, 0.0, 1.5, -90.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
SHAPE = (20, 16, 12)  # (x, y, z)
ORGANS = {"colon": 1, "urinary_bladder": 2, "liver": 3, "spleen": 4}


def organ_masks() -> dict[str, np.ndarray]:
    """Binary (x, y, z) boxes, one per organ; colon and liver overlap."""
    out = {}
    for k, name in enumerate(ORGANS):
        a = np.zeros(SHAPE, np.uint8)
        a[1 + 4 * k : 6 + 4 * k, 2 + 2 * k : 9 + 2 * k, 1 + k : 6 + 2 * k] = 1
        out[name] = a
    return out


@pytest.fixture(scope="module")
def case(tmp_path_factory, nifti_case):
    """A label map ``labels.nii.gz`` (uint8, :data:`ORGANS`' labels) and the same organs as
    ``case.mska``."""
    assert list(ORGANS.values()) == [1, 2, 3, 4]  # the builder labels the k-th mask k
    d = nifti_case(
        tmp_path_factory.mktemp("firsthour"), organ_masks(), AFF, image_seed=None, labelmap=True
    )
    space = affine_to_space(AFF, SHAPE)
    with MaskArchive(d / "case.mska", "w", space=space) as ar:
        for name, a in organ_masks().items():
            ar.add(name, SegmentationMask(a.T.astype(bool), {name: 1}, space))
    return d


# -- SelectLabels on float label maps (LoadImaged, Spacingd) ------------------------------------
def test_select_labels_after_loadimaged_and_spacingd(case):
    """LoadImaged gives float32; Spacingd(nearest) returns float32: both are label maps."""
    chain = Compose(
        [
            LoadImaged("label"),
            EnsureChannelFirstd("label"),
            Spacingd("label", pixdim=(2.0, 2.0, 2.0), mode="nearest"),
        ]
    )
    label = chain({"label": str(case / "labels.nii.gz")})["label"]
    assert label.dtype == torch.float32  # what MONAI hands over: the case being fixed
    values = set(np.unique(label.numpy()).tolist())
    assert values == {0.0, 1.0, 2.0, 3.0, 4.0}

    out = SelectLabelsd("label", {2: 1, 3: 1})({"label": label})["label"]
    ref = np.where(np.isin(label.numpy(), [2, 3]), 1, 0)
    np.testing.assert_array_equal(out.numpy(), ref)
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, label.affine)
    assert out.dtype == torch.uint8

    keep = SelectLabelsd("label", [1, 4])({"label": label})["label"]
    assert keep.dtype == torch.float32  # keeping labels keeps the input's type
    np.testing.assert_array_equal(keep.numpy(), np.where(np.isin(label, [1, 4]), label, 0))
    binary = SelectLabels([4], binary=True)(label)
    np.testing.assert_array_equal(binary.numpy(), label.numpy() == 4)
    # the torch path (accelerators), checked on CPU, agrees
    sel = SelectLabels({2: 1, 3: 1})
    assert torch.equal(sel._torch(label.as_tensor()).to(torch.uint8), out.as_tensor())
    keep_t = SelectLabels([1, 4])._torch(label.as_tensor())
    assert keep_t.dtype == torch.float32 and torch.equal(keep_t, keep.as_tensor())


def test_select_labels_refuses_fractions_after_bilinear(case):
    chain = Compose(
        [
            LoadImaged("label", ensure_channel_first=True),
            Spacingd("label", pixdim=(1.3, 1.3, 1.3), mode="bilinear"),
        ]
    )
    label = chain({"label": str(case / "labels.nii.gz")})["label"]
    with pytest.raises(MaskValidationError, match=r"not whole numbers.*mode='nearest'"):
        SelectLabelsd("label", [1])({"label": label})
    with pytest.raises(MaskValidationError, match="not whole numbers"):
        SelectLabels([1])._torch(label.as_tensor())
    for bad in (np.inf, np.nan):
        with pytest.raises(MaskValidationError, match="not whole numbers"):
            SelectLabels([1])(np.array([0.0, 1.0, bad], np.float32))


def test_select_labels_float64_and_negative_whole_numbers():
    lab = np.array([[-1.0, 0.0, 1.0, 2.0, 70000.0]])
    np.testing.assert_array_equal(SelectLabels([2, 70000])(lab), [[0, 0, 0, 2, 70000]])
    np.testing.assert_array_equal(SelectLabels({70000: 5})(lab), [[0, 0, 0, 0, 5]])


# -- SelectLabels by name, and meta["labels"] after selection -----------------------------------
def test_select_labels_by_name_after_loadmaskd_orientationd(case):
    chain = Compose(
        [
            LoadMaskd("label", names=ORGANS),
            Orientationd("label", axcodes="RAS"),
            SelectLabelsd("label", {"colon": 1, "urinary_bladder": 2}),
        ]
    )
    got = chain({"label": str(case / "case.mska")})["label"]
    ref = Compose([LoadMaskd("label", names=ORGANS), Orientationd("label", axcodes="RAS")])(
        {"label": str(case / "case.mska")}
    )["label"]
    expect = np.select([ref.numpy() == 1, ref.numpy() == 2], [1, 2], 0)
    np.testing.assert_array_equal(got.numpy(), expect)
    assert got.meta["labels"] == {"colon": 1, "urinary_bladder": 2}
    assert ref.meta["labels"] == ORGANS  # the input's meta is not changed
    assert torch.equal(got.affine, ref.affine)

    # a list of names keeps their labels; the meta follows
    kept = SelectLabels(["spleen", "urinary_bladder"])(ref)
    np.testing.assert_array_equal(kept.numpy(), np.where(np.isin(ref, [2, 4]), ref, 0))
    assert kept.meta["labels"] == {"urinary_bladder": 2, "spleen": 4}


def test_meta_labels_follow_integer_selection(case):
    label = LoadMask(names=ORGANS)(str(case / "case.mska"))
    remapped = SelectLabels({3: 1, 4: 1, 1: 2})(label)
    assert remapped.meta["labels"] == {"colon": 2, "liver": 1, "spleen": 1}
    assert SelectLabels([2])(label).meta["labels"] == {"urinary_bladder": 2}
    assert SelectLabels([1, 2], binary=True)(label).meta["labels"] == {
        "colon": 1,
        "urinary_bladder": 1,
    }
    # names sharing a label (both kidneys -> 2) keep sharing it
    shared = MetaTensor(torch.tensor([[0, 1, 2, 2]]), meta={"labels": {"a": 1, "kl": 2, "kr": 2}})
    out = SelectLabels({"kl": 5})(shared)
    assert out.tolist() == [[0, 0, 5, 5]] and out.meta["labels"] == {"kl": 5, "kr": 5}


def test_select_labels_by_name_errors(case):
    label = LoadMask(names=ORGANS)(str(case / "case.mska"))
    with pytest.raises(
        MaskNotFoundError, match=r"'urinary_bladdr'.*did you mean: 'urinary_bladder'"
    ):
        SelectLabels({"colon": 1, "urinary_bladdr": 2})(label)
    with pytest.raises(MaskValidationError, match=r"meta\['labels'\]"):
        SelectLabels(["colon"])(np.zeros((2, 2), np.uint8))
    with pytest.raises(MaskValidationError, match=r"meta\['labels'\]"):
        SelectLabels(["colon"])(torch.zeros((2, 2)))


# -- default dtype of LoadMask(d): torch-friendly ------------------------------------------------
def test_loadmaskd_labels_above_255_go_through_orientationd_and_flip(case):
    path = str(case / "case.mska")
    out = Compose(
        [
            LoadMaskd("label", names={"colon": 300, "liver": 2}),
            Orientationd("label", axcodes="RAS"),
            Flipd("label", spatial_axis=0),
        ]
    )({"label": path})["label"]
    assert out.dtype == torch.int16 and int(out.max()) == 300
    assert LoadMask(names={"colon": 40000})(path).dtype == torch.int32
    # an explicit dtype is honoured, even one torch supports poorly
    assert LoadMask(names={"colon": 300}, dtype=torch.uint16)(path).dtype == torch.uint16
    assert LoadMask(names={"colon": 300}, dtype=np.int64)(path).dtype == torch.int64
    # MaskReader (the one decoder under LoadMask) follows the same rule
    array, _ = MaskReader(names={"colon": 300}).get_data(path)
    assert array.dtype == np.int16


def test_loadmask_wraps_the_reader():
    """MaskReader is the one place that decodes; LoadMask exposes its settings."""
    load = LoadMask(names=["colon"], mode="channels", missing="empty", storage_options={"a": 1})
    assert isinstance(load.reader, MaskReader)
    assert (load.names, load.mode, load.missing) == (["colon"], "channels", "empty")
    assert load.reader.storage_options == {"a": 1}
    import medmask_monai.reader as reader_module

    assert "transforms" not in vars(reader_module)  # the reader does not import the transforms


# -- MaskArchiveDataset: names found nowhere; index filters --------------------------------------
def test_dataset_warns_for_a_name_in_no_archive(case):
    path = case / "case.mska"
    with pytest.warns(MissingNameWarning, match=r"'Liver'.*did you mean: 'liver'"):
        ds = MaskArchiveDataset([path, path], names=["Liver"])
    assert len(ds) == 0
    with pytest.warns(MissingNameWarning, match=r"'lver'.*did you mean: 'liver'") as rec:
        ds = MaskArchiveDataset([path], names=["liver", "lver"])
    assert len(ds) == 1 and ds[0]["name"] == "liver"
    assert len([w for w in rec if issubclass(w.category, MissingNameWarning)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every name found somewhere: no word
        assert len(MaskArchiveDataset([path], names=["liver", "colon"])) == 2
    with pytest.raises(MaskNotFoundError, match=r"'lver'.*did you mean: 'liver'"):
        MaskArchiveDataset([path], names=["liver", "lver"], strict=True)


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    """Three archives: sizes differ per case, one mask empty, attributes on some masks."""
    d = tmp_path_factory.mktemp("filters")
    space = affine_to_space(AFF, SHAPE)
    sizes = {}
    for c in range(3):
        with MaskArchive(d / f"c{c}.mska", "w", space=space) as ar:
            for k, name in enumerate(["a", "b", "empty"]):
                a = np.zeros(SHAPE[::-1], bool)
                if name != "empty":
                    a[: 1 + c + k, :4, :5] = True
                sizes[(c, name)] = int(a.sum())
                if ar.supports_attrs:
                    ar.add(
                        name,
                        SegmentationMask(a, {name: 1}, space),
                        attrs={"description": f"case {c}"} if name == "b" else None,
                    )
                else:
                    ar.add(name, SegmentationMask(a, {name: 1}, space))
    return d, sizes


def test_dataset_index_filters_decode_nothing(filtered, monkeypatch):
    folder, sizes = filtered

    def no_decoding(*args, **kwargs):
        raise AssertionError("a filter decoded a mask")

    monkeypatch.setattr(MaskArchive, "read_array", no_decoding)
    monkeypatch.setattr(MaskArchive, "read_cropped", no_decoding)
    ds = MaskArchiveDataset(folder, min_voxels=1)
    assert [(it[0], it[2]) for it in ds.items] == [(c, n) for c in range(3) for n in "ab"]
    big = MaskArchiveDataset(folder, min_voxels=60)
    assert sorted((it[0], it[2]) for it in big.items) == sorted(
        k for k, v in sizes.items() if v >= 60
    )
    seen: list[MaskInfo] = []

    def pick(info: MaskInfo) -> bool:
        seen.append(info)
        return info.name == "b"

    ds = MaskArchiveDataset(folder, names=["b", "a"], where=pick)
    assert [it[2] for it in ds.items] == ["b"] * 3
    assert all(isinstance(i, MaskInfo) for i in seen) and len(seen) == 6
    both = MaskArchiveDataset(folder, where=lambda i: i.voxels > 40, min_voxels=1)
    assert {(it[0], it[2]) for it in both.items} == {k for k, v in sizes.items() if v > 40}
    if seen[0].attrs is not None and any(i.attrs for i in seen):
        described = MaskArchiveDataset(folder, where=lambda i: bool(i.attrs.get("description")))
        assert [it[2] for it in described.items] == ["b"] * 3


def test_dataset_filters_read_items(filtered):
    folder, sizes = filtered
    ds = MaskArchiveDataset(folder, min_voxels=1)
    for i in range(len(ds)):
        item = ds[i]
        c = int(item["archive"][-6])
        assert int(item["mask"].sum()) == sizes[(c, item["name"])] > 0
    with pytest.raises(MaskValidationError):
        MaskArchiveDataset(folder, min_voxels=1.5)
    with pytest.raises(MaskValidationError):
        MaskArchiveDataset(folder, where="b")


def test_dataset_min_voxels_on_version_1(tmp_path):
    space = affine_to_space(AFF, SHAPE)
    with MaskArchive(tmp_path / "v1.mska", "w", space=space, codec="zstd") as ar:
        for name, n in [("a", 0), ("b", 3), ("c", 12)]:
            a = np.zeros(SHAPE[::-1], bool)
            a.reshape(-1)[:n] = True
            ar.add(name, SegmentationMask(a, {name: 1}, space))
    ds = MaskArchiveDataset(tmp_path / "v1.mska", min_voxels=3)
    assert [it[2] for it in ds.items] == ["b", "c"]


def test_dataset_multilabel_uint16_entry_is_torch_friendly(tmp_path):
    space = affine_to_space(AFF, SHAPE)
    lab = np.zeros(SHAPE[::-1], np.uint16)
    lab[2:5, 2:6, 3:9] = 300
    lab[6:8, 1:3, 1:4] = 2
    with MaskArchive(tmp_path / "m.mska", "w", space=space) as ar:
        ar.add("multi", SegmentationMask(lab, {"big": 300, "small": 2}, space))
    item = MaskArchiveDataset(tmp_path / "m.mska")[0]
    assert item["mask"].dtype == torch.int16 and int(item["mask"].max()) == 300
    flipped = Orientationd("mask", axcodes="LPS")(item)["mask"]  # torch has no uint16 flip
    assert int(flipped.max()) == 300


# -- storage_options pass through (URLs are tested against S3 in tests/io/) ----------
def test_storage_options_are_kept_and_urls_stay_strings(case):
    from medmask_monai.dataset import _archive_paths

    assert _archive_paths(["s3://bucket/a.mska", "gs://b/c/d.mska"]) == [
        "s3://bucket/a.mska",
        "gs://b/c/d.mska",
    ]
    reader = MaskReader(names=["liver"], storage_options={"anon": True})
    assert reader.read("s3://bucket/x.mska") == "s3://bucket/x.mska"  # known by name, no request


def test_memory_url_through_loadmaskd_and_dataset(case):
    """fsspec's in-memory filesystem: a real URL without a server."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    fs.pipe("/firsthour/case.mska", (case / "case.mska").read_bytes())
    url = "memory://firsthour/case.mska"
    got = LoadMaskd("label", names=["liver"], storage_options={})({"label": url})["label"]
    ref = LoadMask(names=["liver"])(str(case / "case.mska"))
    assert torch.equal(got.as_tensor(), ref.as_tensor())
    ds = MaskArchiveDataset("memory://firsthour/", names=["liver"], storage_options={})
    assert len(ds.archives) == 1 and ds.archives[0].endswith("firsthour/case.mska")
    assert ds.storage_options == {}
    assert len(ds) == 1 and torch.equal(ds[0]["mask"].as_tensor(), ref.as_tensor())


def test_loadmask_missing_empty_warns_for_a_likely_misspelling(case):
    path = str(case / "case.mska")
    with pytest.warns(MissingNameWarning, match=r"'lver' \(did you mean: 'liver'\?\)"):
        got = LoadMask(names=["liver", "lver"], missing="empty")(path)
    assert got.meta["labels"] == {"liver": 1, "lver": 2} and int(got.max()) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an organ absent from this case: normal, no word
        LoadMask(names=["liver", "pancreas", "kidney_left"], missing="empty")(path)
    with pytest.raises(MaskNotFoundError, match="did you mean: 'liver'"):
        LoadMask(names=["lver"])(path)  # missing="raise" (the default) raises as before


def test_loadmaskd_and_reader_on_s3(case, s3):
    """A real S3 endpoint on loopback (moto): LoadMaskd, MaskReader and the folder form of
    MaskArchiveDataset read the URL with storage_options, the same tensors as locally."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    url = s3.put("labels/case.mska", (case / "case.mska").read_bytes())
    so = s3.storage_options
    ref = LoadMask(names=ORGANS)(str(case / "case.mska"))
    got = LoadMaskd("label", names=ORGANS, storage_options=so)({"label": url})["label"]
    assert torch.equal(got.as_tensor(), ref.as_tensor()) and torch.equal(got.affine, ref.affine)
    assert got.meta["filename_or_obj"] == url  # never turned into a (mangled) Path
    liver = LoadMask(names=["liver"])(str(case / "case.mska")).numpy()
    reader = MaskReader(names=["liver"], storage_options=so)
    array, _meta = reader.get_data(reader.read(url))
    np.testing.assert_array_equal(array, liver)
    ds = MaskArchiveDataset(f"s3://{s3.name}/labels/", names=["liver"], storage_options=so)
    assert ds.archives == [url]
    np.testing.assert_array_equal(ds[0]["mask"].numpy(), liver)


def test_select_labels_by_name_on_a_collated_batch(case):
    from monai.data import decollate_batch, list_data_collate

    load = LoadMaskd("label", names=ORGANS)
    items = [load({"label": str(case / "case.mska")}) for _ in range(2)]
    batch = list_data_collate(items)["label"]
    out = SelectLabels({"colon": 1, "urinary_bladder": 2})(batch)
    assert out.shape == batch.shape
    np.testing.assert_array_equal(out.numpy(), np.select([batch == 1, batch == 2], [1, 2], 0))
    back = decollate_batch({"label": out})
    assert [b["label"].meta["labels"] for b in back] == [{"colon": 1, "urinary_bladder": 2}] * 2
    mixed = list_data_collate(
        [
            items[0],
            LoadMaskd("label", names={**ORGANS, "colon": 2, "urinary_bladder": 1})(
                {"label": str(case / "case.mska")}
            ),
        ]
    )
    with pytest.raises(MaskValidationError, match="number their labels differently"):
        SelectLabels(["colon"])(mixed["label"])
