"""PatchDataset: patches equal to the truth (image windows from .nii / .b2nd / .nii.gz, label
windows from the archive), DataLoader workers (fork and spawn, persistent), distinct and
reproducible streams, DistributedSampler, archives on S3, and the bad inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")
pytest.importorskip("blosc2")

from patch_support import SHAPE, box_of, make_cases, window  # noqa: E402
from torch.utils.data import DataLoader, DistributedSampler  # noqa: E402

from medmask import MaskArchive  # noqa: E402
from medmask.errors import (  # noqa: E402
    CorruptFileError,
    MaskNotFoundError,
    MaskValidationError,
    SpaceMismatchError,
)
from medmask.geometry import lps_matrix, lps_to_space, space_to_affine  # noqa: E402
from medmask.patches import ClassRatios, NnUNetPolicy, PatchCase, PosNeg  # noqa: E402
from medmask.patches.images import WholeImageReadWarning  # noqa: E402
from medmask_monai import PatchDataset  # noqa: E402

PATCH = (12, 16, 20)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return make_cases(tmp_path_factory.mktemp("patches"), n=2)


def check_item(item, case, names=None, mode="labelmap"):
    """An item's image and label equal the truth at its patch's box."""
    box = box_of(item["centre"].tolist(), PATCH)
    np.testing.assert_array_equal(item["image"][0].numpy(), window(case.ct, box))
    if mode == "labelmap":
        np.testing.assert_array_equal(item["label"][0].numpy(), window(case.label_map(names), box))
    else:
        for ch, n in enumerate(names):
            want = window(case.masks[n], box) if n in case.masks else np.zeros(PATCH, bool)
            np.testing.assert_array_equal(item["label"][ch].numpy() != 0, want, err_msg=n)


@pytest.mark.parametrize("layout", ["nii", "b2nd"])
def test_patches_equal_the_truth_label_map_of_every_mask(cases, layout):
    ds = PatchDataset(
        [(getattr(c, layout), c.archive) for c in cases], PATCH, samples_per_case=20, seed=1
    )
    assert len(ds) == 40 and ds.label_dtype == np.uint8
    kinds = set()
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].dtype == torch.float32 and item["image"].shape == (1, *PATCH)
        check_item(item, cases[item["case"]])
        kinds.add(item["kind"])
        if item["kind"] == "class":
            assert cases[item["case"]].masks[item["class"]][tuple(item["centre"].tolist())]
    assert kinds == {"class", "anywhere"}


def test_selected_organs_as_channels_keep_overlaps(cases):
    names = ["kidney_left", "liver", "aorta"]
    ds = PatchDataset(
        [(c.nii, c.archive) for c in cases],
        PATCH,
        names=names,
        mode="channels",
        policy=ClassRatios({"liver": 1, "aorta": 1}, background=0),
        samples_per_case=10,
    )
    for i in range(len(ds)):
        item = ds[i]
        assert item["label"].shape == (3, *PATCH) and item["label"].dtype == torch.uint8
        assert item["class"] in ("liver", "aorta")
        check_item(item, cases[item["case"]], names, mode="channels")


def test_a_compressed_image_is_read_whole_with_advice(cases):
    ds = PatchDataset([(cases[0].nii_gz, cases[0].archive)], PATCH, samples_per_case=3)
    with pytest.warns(WholeImageReadWarning, match="convert-images"):
        items = [ds[i] for i in range(3)]
    for item in items:
        check_item(item, cases[0])


def test_xyz_axes_are_monais_order(cases):
    ds = PatchDataset([(cases[0].nii, cases[0].archive)], PATCH, axes="xyz", samples_per_case=2)
    item = ds[0]
    assert item["image"].shape == (1, *PATCH[::-1])
    box = box_of(item["centre"].tolist(), PATCH)
    np.testing.assert_array_equal(item["image"][0].numpy(), window(cases[0].ct, box).T)


def test_partially_labelled_cases_draw_only_annotated_classes(cases):
    c = cases[0]
    ds = PatchDataset(
        [PatchCase(c.nii, c.archive, classes={"liver"})],
        PATCH,
        policy=NnUNetPolicy(foreground=1.0),
        samples_per_case=30,
    )
    assert {ds[i]["class"] for i in range(len(ds))} == {"liver"}


def collect(loader):
    return [(b["case"].tolist(), b["centre"].tolist(), b["kind"]) for b in loader]


def loader_of(ds, **kw):
    return DataLoader(ds, batch_size=1, num_workers=2, persistent_workers=True, **kw)


def test_workers_draw_different_streams_reproducibly_with_fork_and_spawn(cases):
    c = cases[0]
    ds = PatchDataset(
        [(c.b2nd, c.archive)], PATCH, samples_per_case=12, seed=5, policy=PosNeg(1, 1)
    )
    ds[0]  # the main process draws first: a forked worker must not inherit its stream

    def run(dataset, context):
        torch.manual_seed(0)
        loader = loader_of(dataset, multiprocessing_context=context)
        return collect(loader), collect(loader)  # two epochs, persistent workers

    a1, a2 = run(ds, "fork")
    assert run(ds, "fork") == (a1, a2)  # a seed gives the same patches
    assert a1 != a2  # epochs differ
    w0 = [x[1] for x in a1[0::2]]  # in-order loading: batch k comes from worker k % 2
    w1 = [x[1] for x in a1[1::2]]
    assert w0 != w1  # the duplicated-RNG-across-workers bug would make these equal
    # spawned workers draw the same streams as forked ones: seed and torch's worker seeds
    assert run(ds, "spawn") == (a1, a2)
    other = PatchDataset([(c.b2nd, c.archive)], PATCH, samples_per_case=12, seed=6)
    assert run(other, "fork")[0] != a1  # another seed, other patches


def test_distributed_sampler_splits_the_cases(cases):
    ds = PatchDataset([(c.nii, c.archive) for c in cases], PATCH, samples_per_case=5)
    seen = []
    for rank in (0, 1):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=3)
        sampler.set_epoch(1)
        idx = list(sampler)
        loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=2)
        got = [b["case"].tolist() for b in loader]
        assert sum(got, []) == [i % 2 for i in idx]
        batched = [b["case"].tolist() for b in ds.loader(2, sampler=sampler, num_workers=2)]
        assert batched == got
        seen += idx
    assert sorted(seen) == list(range(len(ds)))


def test_archives_on_s3_give_the_same_patches(cases, s3):
    urls = []
    for k, c in enumerate(cases):
        urls.append(s3.put(f"ds/case{k}.mska", c.archive.read_bytes()))
    local = PatchDataset([(c.nii, c.archive) for c in cases], PATCH, samples_per_case=4)
    remote = PatchDataset(
        [(c.nii, u) for c, u in zip(cases, urls)],
        PATCH,
        samples_per_case=4,
        storage_options=s3.storage_options,
    )
    for item in DataLoader(remote, batch_size=None, num_workers=2):
        check_item(item, cases[item["case"]])
    torch.manual_seed(0)
    want = [b["label"] for b in DataLoader(local, batch_size=2, num_workers=2)]
    torch.manual_seed(0)
    got = [b["label"] for b in DataLoader(remote, batch_size=2, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(want, got)) and len(got) == len(want)


def shifted_image(tmp_path, case, dz, dy, dx, name):
    """The case's CT on a grid whose voxel (0, 0, 0) is the archive's voxel (-dz, -dy, -dx)."""
    import nibabel as nib

    with MaskArchive(case.archive) as ar:
        m = lps_matrix(ar.space)
    m[:3, 3] = m[:3, :3] @ np.array([-dx, -dy, -dz]) + m[:3, 3]
    big = np.full(
        (SHAPE[0] + 2 * abs(dz), SHAPE[1] + 2 * abs(dy), SHAPE[2] + 2 * abs(dx)), -7, np.float32
    )
    big[dz : dz + SHAPE[0], dy : dy + SHAPE[1], dx : dx + SHAPE[2]] = case.ct
    space = lps_to_space(m, big.shape[::-1])
    path = tmp_path / name
    nib.save(nib.Nifti1Image(big.T, space_to_affine(space)), str(path))
    return path, big


def test_an_image_on_a_larger_grid_of_the_same_lattice_is_offset_not_refused(cases, tmp_path):
    c = cases[0]
    path, big = shifted_image(tmp_path, c, 3, 2, 5, "padded.nii")
    ds = PatchDataset([(path, c.archive)], PATCH, samples_per_case=30, policy=PosNeg(1, 1))
    assert ds.cases[0].offset == (3, 2, 5)
    for i in range(len(ds)):
        item = ds[i]
        box = box_of(item["centre"].tolist(), PATCH)
        np.testing.assert_array_equal(item["image"][0].numpy(), window(big, box))
        lab_box = (box[0] - 3, box[1] - 3, box[2] - 2, box[3] - 2, box[4] - 5, box[5] - 5)
        np.testing.assert_array_equal(item["label"][0].numpy(), window(c.label_map(), lab_box))


def test_an_image_off_the_archives_grid_is_refused_naming_both(cases, tmp_path):
    import nibabel as nib

    c = cases[0]
    img = nib.load(str(c.nii))
    aff = img.affine.copy()
    aff[:3, 3] += aff[:3, :3] @ np.array([0.5, 0, 0])  # half a voxel along x
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), aff), str(tmp_path / "half.nii"))
    with pytest.raises(SpaceMismatchError) as info:
        PatchDataset([(tmp_path / "half.nii", c.archive)], PATCH)
    assert "half.nii" in str(info.value) and str(c.archive) in str(info.value)
    import blosc2

    blosc2.asarray(
        np.zeros((1, 24, 40, 41), np.float32), urlpath=str(tmp_path / "nn.b2nd"), mode="w"
    )
    with pytest.raises(SpaceMismatchError, match="records no geometry"):
        PatchDataset([(tmp_path / "nn.b2nd", c.archive)], PATCH)


def test_names_and_classes_that_are_nowhere_are_errors_with_close_matches(cases):
    c = cases[0]
    with pytest.raises(MaskNotFoundError, match="did you mean: 'liver'"):
        PatchDataset([(c.nii, c.archive)], PATCH, names=["livr"])
    with pytest.raises(MaskNotFoundError, match="'aorta'"):
        PatchDataset([(c.nii, c.archive)], PATCH, policy=ClassRatios({"aortaa": 1}))
    with pytest.raises(MaskValidationError, match="not among the names"):
        PatchDataset([(c.nii, c.archive)], PATCH, names=["liver"], policy=ClassRatios({"aorta": 1}))
    with pytest.raises(MaskValidationError, match="patch size"):
        PatchDataset([(c.nii, c.archive)], (8, 8))
    with pytest.raises(MaskValidationError, match="a case is"):
        PatchDataset([c.nii], PATCH)


def test_a_corrupted_blob_met_mid_epoch_names_file_and_mask(cases, tmp_path):
    c = cases[0]
    bad = tmp_path / "bad.mska"
    raw = bytearray(c.archive.read_bytes())
    with MaskArchive(c.archive) as ar:
        e = ar._backend.entries[ar.all_names().index("liver")]
        raw[e.offset + e.length // 2] ^= 0xFF
    bad.write_bytes(bytes(raw))
    ds = PatchDataset(  # the index is sound: building works, the blob fails when read
        [(c.nii, bad)], PATCH, policy=ClassRatios({"liver": 1}, background=0), samples_per_case=2
    )
    with pytest.raises(CorruptFileError) as info:
        ds[0]
    assert info.value.mask == "liver" and str(bad) in str(info.value)
    with pytest.raises(CorruptFileError, match="liver"):
        for _ in DataLoader(ds, batch_size=None, num_workers=1):
            pass


def test_the_dataset_pickles_without_open_files(cases):
    import pickle

    c = cases[0]
    ds = PatchDataset([(c.nii, c.archive)], PATCH)
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._worker is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_item(clone[0], c)


def batches(loader):
    return [{k: (v.clone() if torch.is_tensor(v) else v) for k, v in b.items()} for b in loader]


@pytest.mark.parametrize(
    ("layout", "mode", "axes", "workers"),
    [
        ("b2nd", "labelmap", "zyx", 2),
        ("nii", "channels", "zyx", 0),
        ("b2nd", "labelmap", "xyz", 0),
        ("nii_gz", "labelmap", "zyx", 0),
    ],
)
def test_the_batch_loader_gives_torchs_batches(cases, layout, mode, axes, workers):
    """``ds.loader(2)`` (batches built in place, in shared memory in a worker) gives exactly
    the batches of ``DataLoader(ds, 2)`` for the same seeds, and each equals the truth."""
    names = ["kidney_left", "liver", "aorta"] if mode == "channels" else None

    def make():
        return PatchDataset(
            [(getattr(c, layout), c.archive) for c in cases],
            PATCH,
            names=names,
            mode=mode,
            axes=axes,
            samples_per_case=7,
            seed=2,
        )

    kw = {"num_workers": workers}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", WholeImageReadWarning)
        torch.manual_seed(0)
        want = batches(DataLoader(make(), batch_size=2, shuffle=True, **kw))
        torch.manual_seed(0)
        got = batches(make().loader(2, **kw))
    assert len(got) == len(want) == 7
    for a, b in zip(want, got):
        assert a.keys() == b.keys()
        for k in a:
            if torch.is_tensor(a[k]):
                assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
            else:
                assert a[k] == b[k], k
    for b in got:
        for j in range(len(b["case"])):
            item = {k: v[j] for k, v in b.items()}
            if axes == "xyz":
                item["image"] = item["image"].permute(0, 3, 2, 1)
                item["label"] = item["label"].permute(0, 3, 2, 1)
            check_item(item, cases[int(item["case"])], names, mode)
    with pytest.raises(IndexError):
        make()[[0, 99]]


def test_the_batch_loader_applies_a_transform_per_patch(cases):
    seen = []

    def tag(item):
        seen.append(item["case"])
        return {**item, "mean": item["image"].mean()}

    ds = PatchDataset([(c.nii, c.archive) for c in cases], PATCH, samples_per_case=3, transform=tag)
    (batch,) = list(ds.loader(6, shuffle=False))
    assert len(seen) == 6 and batch["case"].tolist() == [0, 1, 0, 1, 0, 1]
    assert torch.allclose(batch["mean"], batch["image"].mean(dim=(1, 2, 3, 4)))
    for j in range(6):
        check_item({k: v[j] for k, v in batch.items()}, cases[j % 2])
