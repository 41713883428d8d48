"""MaskArchiveDataset in real DataLoaders: workers, start methods, threads, collation, files."""

from __future__ import annotations

import contextlib
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from monai.data import DataLoader as MonaiDataLoader  # noqa: E402
from monai.data import ThreadDataLoader  # noqa: E402
from monai.transforms import Compose, Lambdad, SpatialPadd  # noqa: E402
from torch.utils.data import DataLoader, DistributedSampler  # noqa: E402

from medmask import MaskArchive, SegmentationMask, available_codecs, get_codec  # noqa: E402
from medmask.errors import MaskNotFoundError, MaskValidationError  # noqa: E402
from medmask.nifti import affine_to_space, space_to_affine  # noqa: E402
from medmask_monai import MaskArchiveDataset  # noqa: E402

AFF = np.array([[-0.8, 0, 0, 90.0], [0, -0.8, 0, 60.0], [0, 0, 2.0, -30.0], [0, 0, 0, 1]])
SHAPE_XYZ = (16, 12, 6)


def open_archives() -> int:
    """How many ``.mska`` files this process has open."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the descriptor listdir itself used
            n += os.readlink(f"/proc/self/fd/{fd}").endswith(".mska")
    return n


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


def mask_array(c: int, k: int) -> np.ndarray:
    a = np.zeros(SHAPE_XYZ[::-1], bool)
    a[c % 5 : c % 5 + 1 + k % 3, k : k + 4, c : c + 3 + k] = True
    return a


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> list[Path]:
    """Five cases: versions 2 and 1 mixed, different names, an empty mask, a multi-label entry."""
    d = tmp_path_factory.mktemp("dsarch")
    space = affine_to_space(AFF, SHAPE_XYZ)
    paths = []
    for c in range(5):
        p = d / f"case{c}.mska"
        with MaskArchive(p, "w", space=space, codec="zstd" if c % 2 else None) as ar:
            for k in range(4 + c % 2):
                ar.add(f"m{k}", SegmentationMask(mask_array(c, k), {f"m{k}": 1}, space))
            ar.add("empty", SegmentationMask(np.zeros(space.shape, bool), {"e": 1}, space))
            lab = mask_array(c, 0).astype(np.uint8) + 2 * mask_array(c, 2)
            ar.add("multi", SegmentationMask(lab, {"a": 1, "b": 2, "ab": 3}, space))
        paths.append(p)
    return paths


def expected_items(archives, names=None):
    out = []
    for p in archives:
        with MaskArchive(p) as ar:
            stored = ar.all_names()
            for n in stored if names is None else [n for n in names if n in ar]:
                out.append((str(p), n, ar.read_array(n)))
    return out


def test_items_order_and_content(archives):
    ds = MaskArchiveDataset(archives)
    ref = expected_items(archives)
    assert len(ds) == len(ref) == 5 * 6 + 2
    for i, (path, name, array) in enumerate(ref):
        item = ds[i]
        assert item["archive"] == path and item["name"] == name
        mask = item["mask"]
        assert mask.shape == (1, *SHAPE_XYZ) and mask.dtype == torch.uint8
        np.testing.assert_array_equal(mask[0].numpy(), array.transpose(2, 1, 0))
        np.testing.assert_allclose(mask.affine.numpy(), AFF, atol=1e-6)
        assert mask.meta["filename_or_obj"] == path and mask.meta["mask_name"] == name
        with MaskArchive(path) as ar:
            assert item["index"] == ar.all_names().index(name)
    assert torch.equal(ds[-1]["mask"], ds[len(ds) - 1]["mask"])
    assert ds[np.int64(3)]["name"] == ds[3]["name"]
    with pytest.raises(IndexError):
        ds[len(ds)]
    with pytest.raises(TypeError):
        ds["m0"]
    multi = [ds[i] for i in range(len(ds)) if ds.items[i][2] == "multi"][0]["mask"]
    assert set(np.unique(multi.numpy())) == {0, 1, 2, 3}
    binary = MaskArchiveDataset(archives, names=["multi"], binary=True)
    assert set(np.unique(binary[0]["mask"].numpy())) == {0, 1}
    ds.close()


def test_names_folder_strict(archives, tmp_path):
    ds = MaskArchiveDataset(archives, names=["m4", "m0"])
    assert [(Path(p).name, n) for p, n, _ in expected_items(archives, ["m4", "m0"])] == [
        (Path(ds[i]["archive"]).name, ds[i]["name"]) for i in range(len(ds))
    ]
    assert len(ds) == 5 + 2  # m4 only in the odd cases
    assert len(MaskArchiveDataset(archives[0].parent)) == len(MaskArchiveDataset(archives))
    assert len(MaskArchiveDataset(str(archives[2]), names="m1")) == 1
    with pytest.raises(MaskNotFoundError, match="did you mean: 'multi'"):
        MaskArchiveDataset(archives, names=["m1", "mutli"], strict=True)
    with pytest.raises(MaskNotFoundError, match="case0.mska: no mask named 'm4'"):
        MaskArchiveDataset(archives, names=["m4"], strict=True)
    with pytest.raises(FileNotFoundError):
        MaskArchiveDataset([archives[0], archives[0].parent / "missing.mska"])
    with pytest.raises(MaskValidationError, match="no .mska"):
        MaskArchiveDataset(tmp_path)  # an empty folder


def collect(loader) -> list[tuple]:
    return [(tuple(b["name"]), tuple(b["archive"]), b["mask"].as_tensor().clone()) for b in loader]


@pytest.mark.parametrize("ctx, workers", [("fork", 2), ("fork", 4), ("spawn", 2)])
def test_workers_give_identical_batches(archives, ctx, workers):
    if ctx not in __import__("multiprocessing").get_all_start_methods():
        pytest.skip(f"{ctx} not available")
    ds = MaskArchiveDataset(archives)
    ds[0]  # the parent has archives open: workers must not use those handles
    ref = collect(DataLoader(ds, batch_size=4, num_workers=0))
    loader = MonaiDataLoader(
        ds,
        batch_size=4,
        num_workers=workers,
        multiprocessing_context=ctx,
        persistent_workers=True,
    )
    for _ in range(2):  # a second epoch on the same persistent workers
        got = collect(loader)
        assert [g[:2] for g in got] == [r[:2] for r in ref]
        assert all(torch.equal(g[2], r[2]) for g, r in zip(got, ref, strict=True))
    del loader


def test_monai_collate_mixes_names_and_archives(archives):
    """Items of different names and archives batch with MONAI's list_data_collate."""
    ds = MaskArchiveDataset(archives, transform=Compose([Lambdad("mask", lambda m: m)]))
    batch = next(iter(MonaiDataLoader(ds, batch_size=len(ds), num_workers=0)))
    assert batch["mask"].shape == (len(ds), 1, *SHAPE_XYZ)
    assert len(set(batch["name"])) == 7 and len(set(batch["archive"])) == 5
    assert list(batch["mask"].meta["mask_name"]) == list(batch["name"])


def test_transform_is_applied(archives):
    pad = Compose([SpatialPadd("mask", spatial_size=(20, 20, 8))])
    ds = MaskArchiveDataset(archives, names=["m1"], transform=pad)
    item = ds[0]
    assert item["mask"].shape == (1, 20, 20, 8) and item["name"] == "m1"
    assert len(item["mask"].applied_operations) == 1


def test_fork_child_opens_its_own_files(archives):
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    ds = MaskArchiveDataset(archives)
    ds[0]
    parent_ar = ds._handles[0]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        ok = 0
        try:
            ds[1]
            child_ar = ds._handles[0]
            ok = int(child_ar is not parent_ar and ds._open.pid == os.getpid())
        finally:
            os.write(w, bytes([ok]))
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"\x01"
    os.waitpid(pid, 0)
    os.close(r)
    assert ds._handles[0] is parent_ar and ds[1]["name"] == "m1"  # the parent's are intact
    ds.close()


def test_pickle_leaves_handles_behind(archives):
    ds = MaskArchiveDataset(archives, names=["m1", "m3"])
    first = ds[0]
    assert ds._handles
    clone = pickle.loads(pickle.dumps(ds))
    assert not clone._handles and clone._open is None
    assert torch.equal(clone[0]["mask"], first["mask"]) and len(clone) == len(ds)
    clone.close()
    ds.close()
    assert not ds._handles
    assert torch.equal(ds[0]["mask"], first["mask"])  # reopens after close
    ds.close()


@needs_proc
def test_closes_what_it_opened(archives):
    assert open_archives() == 0
    with MaskArchiveDataset(archives, max_open=2) as ds:
        for i in range(len(ds)):
            ds[i]
        assert len(ds._handles) == 2 and open_archives() == 2  # evicted ones are closed
    assert open_archives() == 0
    ds = MaskArchiveDataset(archives)
    ds[0]
    del ds  # freed: closed
    assert open_archives() == 0
    ds = MaskArchiveDataset(archives)
    loader = DataLoader(ds, batch_size=8, num_workers=2, persistent_workers=True)
    for _ in range(2):
        assert sum(len(b["name"]) for b in loader) == len(ds)
    assert open_archives() == 0  # the workers opened theirs; this process none


def test_threads_share_a_dataset(archives):
    """Threads read concurrently while max_open=1 keeps evicting archives."""
    ds = MaskArchiveDataset(archives, max_open=1)
    ref = [ds[i]["mask"].as_tensor().clone() for i in range(len(ds))]
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for i in rng.integers(0, len(ds), 60):
                assert torch.equal(ds[int(i)]["mask"].as_tensor(), ref[int(i)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    got = [b["mask"][0] for b in ThreadDataLoader(ds, batch_size=1, num_workers=2)]
    assert all(torch.equal(g.as_tensor(), r) for g, r in zip(got, ref, strict=True))
    ds.close()


def test_distributed_sampler_partitions(archives):
    ds = MaskArchiveDataset(archives)
    for shuffle in (False, True):
        for drop_last in (False, True):
            parts = []
            for rank in range(3):
                sampler = DistributedSampler(
                    ds, num_replicas=3, rank=rank, shuffle=shuffle, drop_last=drop_last, seed=1
                )
                sampler.set_epoch(2)
                parts.append(list(sampler))
            flat = sorted(i for p in parts for i in p)
            if drop_last:
                assert len(flat) == len(set(flat)) == 3 * (len(ds) // 3)
            else:  # padded with repeats up to a multiple of 3
                assert set(flat) == set(range(len(ds))) and len(flat) == 3 * -(-len(ds) // 3)
    sampler = DistributedSampler(ds, num_replicas=3, rank=1, shuffle=False)
    loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=2)
    names = [n for b in loader for n in b["name"]]
    assert names == [ds.items[i][2] for i in sampler]


def _count_opens_and_decodes(monkeypatch) -> dict:
    """Count from now on the archives opened and the blobs decoded (every registered codec)."""
    counts = {"opens": 0, "decodes": 0}
    for cls in {type(get_codec(name)) for name in available_codecs()}:

        def decode(self, *a, _real=cls.decode, **kw):
            counts["decodes"] += 1
            return _real(self, *a, **kw)

        monkeypatch.setattr(cls, "decode", decode)
    real_init = MaskArchive.__init__

    def init(self, *a, **kw):
        counts["opens"] += 1
        real_init(self, *a, **kw)

    monkeypatch.setattr(MaskArchive, "__init__", init)
    return counts


@pytest.mark.parametrize("codec", [None, "zstd"])
def test_building_over_1000_archives(tmp_path, codec, monkeypatch):
    """Building reads the indexes only: each archive opened once, nothing decoded
    (counted, not timed: benchmarks/bench_monai.py times it)."""
    space = affine_to_space(AFF, SHAPE_XYZ)
    with MaskArchive(tmp_path / "proto.mska", "w", space=space, codec=codec) as ar:
        for k in range(5):
            ar.add(f"organ_{k}", SegmentationMask(mask_array(1, k), {"x": 1}, space))
    proto = (tmp_path / "proto.mska").read_bytes()
    paths = []
    for i in range(1000):
        p = tmp_path / f"c{i:04d}.mska"
        p.write_bytes(proto)
        paths.append(p)
    counts = _count_opens_and_decodes(monkeypatch)
    ds = MaskArchiveDataset(paths)
    assert counts == {"opens": 1000, "decodes": 0}
    assert len(ds) == 5000 and ds[4999]["archive"] == str(paths[-1])
    assert counts["decodes"] == 1  # an item decodes its mask: the count sees decoding
    np.testing.assert_allclose(ds[0]["mask"].affine.numpy(), space_to_affine(space))
    if codec is None:  # index filters (issue 13): still from the index alone
        counts.update(opens=0, decodes=0)
        kept = MaskArchiveDataset(paths, min_voxels=1, where=lambda info: info.name != "organ_0")
        assert len(kept) == 4000
        assert counts == {"opens": 1000, "decodes": 0}
