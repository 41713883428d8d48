"""Archives on S3 end to end: MaskArchive / load_mask / save_mask on URLs, request budget
through the counting proxy, faults that must never give a wrong array, replaced objects,
whole-or-nothing writes, and DataLoader workers (fork and spawn) reading from S3."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from medmask import MaskArchive, SegmentationMask, load_mask, save_mask
from medmask.errors import (
    CorruptFileError,
    MaskValidationError,
    RemoteChangedError,
    RemoteReadError,
)
from medmask.io import remote
from medmask.phantoms import phantom_case
from medmask.spaces import Space

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")


def _gets(proxy) -> list:
    return [r for r in proxy.records() if r.method == "GET"]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """A small version-2 archive of phantom organs, its masks and space."""
    masks, space = phantom_case(3)
    path = tmp_path_factory.mktemp("ph") / "case.mska"
    with MaskArchive(path, "w", space=space) as ar:
        for name, arr in masks.items():
            ar.add(name, SegmentationMask(arr, {name: 1}, space))
    return path, masks, space


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A ~2 MB version-2 archive (60 noise masks of 64^3) and its masks."""
    rng = np.random.default_rng(0)
    space = Space(shape=(64, 64, 64)).reverse_axis_order()
    path = tmp_path_factory.mktemp("big") / "big.mska"
    masks = {}
    with MaskArchive(path, "w", space=space) as ar:
        for i in range(60):
            arr = rng.random(space.shape) < 0.5
            masks[f"m{i:02d}"] = arr
            ar.add(f"m{i:02d}", SegmentationMask(arr, {f"m{i:02d}": 1}, space))
    return path, masks


def test_archive_url_reads_what_the_local_file_holds(s3, phantom):
    path, masks, _space = phantom
    url = s3.put("cases/case.mska", path.read_bytes())
    with MaskArchive(url, storage_options=s3.storage_options) as ar:
        assert ar.all_names() == list(masks)
        for name, arr in masks.items():
            np.testing.assert_array_equal(ar.read_array(name) != 0, arr)
        got = ar.read_all_masks()
        assert set(got) == set(masks)


def test_a_small_archive_costs_one_request(s3p, phantom):
    path, masks, _space = phantom
    assert path.stat().st_size <= remote.TAIL_BLOCK
    url = s3p.put("small.mska", path.read_bytes())
    s3p.proxy.reset_counts()
    with MaskArchive(url, storage_options=s3p.storage_options) as ar:
        for name, arr in masks.items():
            np.testing.assert_array_equal(ar.read_array(name) != 0, arr)
    assert s3p.proxy.count() == 1  # open, index and every blob from one GET


def test_msk_url_round_trip(s3, phantom):
    _path, masks, space = phantom
    seg = SegmentationMask(masks["liver"], {"liver": 1}, space)
    url = s3.url("one/liver.msk")
    save_mask(seg, url, storage_options=s3.storage_options)
    assert s3.keys("one/") == ["one/liver.msk"]
    back = load_mask(url, storage_options=s3.storage_options)
    np.testing.assert_array_equal(back.data != 0, masks["liver"])


def test_request_budget_of_a_2mb_archive(s3p, big):
    path, masks = big
    size = path.stat().st_size
    assert 1_500_000 < size < 3_000_000
    url = s3p.put("big.mska", path.read_bytes())
    proxy = s3p.proxy
    proxy.reset_counts()
    with MaskArchive(url, storage_options=s3p.storage_options) as ar:
        opened = proxy.count()  # the tail (pins the version), then the head
        assert opened == 2, [(r.method, r.range) for r in proxy.records()]
        proxy.reset_counts()
        np.testing.assert_array_equal(ar.read_array("m17") != 0, masks["m17"])
        (rec,) = proxy.records()  # exactly one ranged GET: the blob
        assert rec.method == "GET" and rec.range
        first, last = (int(v) for v in rec.range.split("=")[1].split("-"))
        assert rec.body_bytes == last - first + 1 < 60_000
        blob = path.read_bytes()[first : last + 1]
        assert len(blob) == rec.body_bytes
        # many masks: coalesced into a few requests, every byte right
        proxy.reset_counts()
        got = ar.read_all_masks()
        assert len(_gets(proxy)) <= 4, [(r.method, r.range) for r in proxy.records()]
        for name in ("m00", "m31", "m59"):
            np.testing.assert_array_equal(got[name].data != 0, masks[name])


def test_version1_archive_by_url(s3p, phantom, tmp_path):
    _path, masks, space = phantom
    v1 = tmp_path / "v1.mska"
    with MaskArchive(v1, "w", space=space, codec="zstd") as ar:
        for name, arr in masks.items():
            ar.add(name, SegmentationMask(arr, {name: 1}, space))
    url = s3p.put("v1.mska", v1.read_bytes())
    with MaskArchive(url, storage_options=s3p.storage_options) as ar:
        assert ar.version == 1
        np.testing.assert_array_equal(ar.read_array("spleen") != 0, masks["spleen"])


def test_a_flipped_byte_never_gives_a_wrong_array(s3p, big):
    path, masks = big
    url = s3p.put("big.mska", path.read_bytes())
    proxy = s3p.proxy
    with MaskArchive(url, storage_options=s3p.storage_options) as ar:
        proxy.add("flip", times=1, method="GET")
        try:  # retried by the reader (correct array) or refused (CorruptFileError)
            arr = ar.read_array("m05")
        except CorruptFileError as exc:
            assert "m05" in str(exc)
        else:
            np.testing.assert_array_equal(arr != 0, masks["m05"])
        proxy.add("flip", times=None, method="GET")
        with pytest.raises(CorruptFileError, match="checksum") as ei:  # every GET flipped
            ar.read_array("m06")
        assert "'m06'" in str(ei.value) and url in str(ei.value)


def test_transient_faults_during_open_and_read(s3p, phantom):
    path, masks, _space = phantom
    url = s3p.put("case.mska", path.read_bytes())
    proxy = s3p.proxy
    for kind in ("503", "drop", "truncate"):
        proxy.add(kind, times=1, method="HEAD")
        proxy.add(kind, times=1, method="GET")
        with MaskArchive(url, storage_options=s3p.storage_options) as ar:
            np.testing.assert_array_equal(ar.read_array("liver") != 0, masks["liver"])


def test_persistent_fault_names_url_and_mask(s3p, big):
    path, _masks = big
    url = s3p.put("big.mska", path.read_bytes())
    opts = {**s3p.storage_options, "medmask_retries": 2}
    with MaskArchive(url, storage_options=opts) as ar:
        s3p.proxy.add("503", times=None, method="GET")
        with pytest.raises(RemoteReadError) as ei:
            ar.read_array("m42")
    assert isinstance(ei.value, OSError)
    assert url in str(ei.value) and "m42" in str(ei.value) and "SlowDown" in str(ei.value)


def test_object_replaced_while_open(s3p, big, phantom):
    path, masks = big
    url = s3p.put("big.mska", path.read_bytes())
    with MaskArchive(url, storage_options=s3p.storage_options) as ar:
        s3p.put("big.mska", phantom[0].read_bytes())
        try:
            arr = ar.read_array("m07")
        except RemoteChangedError as exc:
            assert url in str(exc)
        else:  # old data, never a mix
            np.testing.assert_array_equal(arr != 0, masks["m07"])


def test_write_appears_whole_on_close(s3p, phantom):
    _path, masks, space = phantom
    url = s3p.url("out/new.mska")
    opts = s3p.storage_options
    with MaskArchive(url, "w", space=space, storage_options=opts) as ar:
        for name, arr in masks.items():
            ar.add(name, SegmentationMask(arr, {name: 1}, space))
        assert not remote.exists(url, storage_options=opts)  # nothing before close
    assert s3p.keys("out/") == ["out/new.mska"]
    puts = s3p.proxy.records("PUT")
    assert len(puts) == 1  # one PUT of a finished file
    with MaskArchive(url, storage_options=opts) as ar:
        np.testing.assert_array_equal(ar.read_array("spleen") != 0, masks["spleen"])


def test_exception_in_with_block_uploads_nothing(s3p, phantom):
    _path, masks, space = phantom
    url = s3p.url("out/failed.mska")

    class Boom(Exception):
        pass

    opts = s3p.storage_options
    with pytest.raises(Boom), MaskArchive(url, "w", space=space, storage_options=opts) as ar:
        ar.add("liver", SegmentationMask(masks["liver"], {"liver": 1}, space))
        raise Boom
    assert s3p.keys("out/") == []


def test_append_mode_on_a_url_is_refused(s3, phantom):
    path, _masks, _space = phantom
    url = s3.put("case.mska", path.read_bytes())
    with pytest.raises(MaskValidationError) as ei:
        MaskArchive(url, "a", storage_options=s3.storage_options)
    assert type(ei.value) is MaskValidationError
    assert ei.value.path == url
    msg = str(ei.value)
    # which file, what is wrong, what to do instead
    assert msg.startswith(f"{url}: mode 'a' cannot change an archive in an object store")
    assert "write a new archive with mode 'w'" in msg
    assert "medmask.io.remote.download" in msg
    assert s3.get("case.mska") == path.read_bytes()


# -- DataLoader workers reading from S3 ------------------------------------------------------
def _loader_batches(ds, ctx: str, epochs: int = 2) -> list:
    from torch.utils.data import DataLoader

    dl = DataLoader(
        ds,
        batch_size=3,
        num_workers=2,
        persistent_workers=True,
        multiprocessing_context=ctx,
        shuffle=False,
    )
    out = []
    for _epoch in range(epochs):
        for batch in dl:
            out.append((list(batch["name"]), zlib.crc32(batch["mask"].numpy().tobytes())))
    return out


def _expected_batches(ds, epochs: int = 2) -> list:
    """What the loader must give: the items read in this process, batched by 3."""
    import torch

    items = [ds[i] for i in range(len(ds))]
    out = []
    for k in range(0, len(items), 3):
        chunk = items[k : k + 3]
        mask = torch.stack([torch.as_tensor(it["mask"]) for it in chunk]).numpy()
        out.append(([it["name"] for it in chunk], zlib.crc32(mask.tobytes())))
    return out * epochs


def _dataset():
    """MaskArchiveDataset (skips without torch, an optional dependency)."""
    pytest.importorskip("torch")
    from medmask_monai import MaskArchiveDataset

    return MaskArchiveDataset


def _three_copies(s3, phantom, tmp_path) -> tuple[list[str], list[str]]:
    path, _masks, _space = phantom
    data = path.read_bytes()
    local, urls = [], []
    for i in range(3):
        (tmp_path / f"c{i}.mska").write_bytes(data)
        local.append(str(tmp_path / f"c{i}.mska"))
        urls.append(s3.put(f"dl/c{i}.mska", data))
    return local, urls


NAMES = ["liver", "spleen", "aorta", "stomach"]


@pytest.mark.parametrize(
    "ctx", ["fork", pytest.param("spawn", marks=pytest.mark.slow)]
)  # spawn: ~20 s of worker start-up (torch + monai imports) per loader on the CI machine
def test_dataloader_workers_read_from_s3_like_local(s3, phantom, tmp_path, ctx):
    dataset = _dataset()
    local, urls = _three_copies(s3, phantom, tmp_path)
    want = _expected_batches(dataset(local, names=NAMES))
    got = _loader_batches(dataset(urls, names=NAMES, storage_options=s3.storage_options), ctx)
    assert got == want and len(got) == 2 * 4


def _spawned_read(url: str, storage_options: dict) -> int:
    from medmask import MaskArchive as _MA

    with _MA(url, storage_options=storage_options) as ar:
        return zlib.crc32(np.ascontiguousarray(ar.read_array("liver")).tobytes())


def test_spawned_processes_read_from_s3(s3, phantom):
    """Spawn start method without torch: a fresh interpreter gets the URL and the options
    (pickled), makes its own client and reads the same bytes."""
    import multiprocessing as mp

    path, _masks, _space = phantom
    url = s3.put("sp/case.mska", path.read_bytes())
    with MaskArchive(path) as ar:
        want = zlib.crc32(np.ascontiguousarray(ar.read_array("liver")).tobytes())
    with mp.get_context("spawn").Pool(2) as pool:
        got = pool.starmap(_spawned_read, [(url, s3.storage_options)] * 2)
    assert got == [want, want]
