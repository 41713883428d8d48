"""medmask.io.remote on a real S3 endpoint (moto on 127.0.0.1), directly and through the
fault-injecting proxy of ``tests/remote_support.py``: byte ranges, request budget,
retries, persistent faults, timeouts, replaced objects, fork/pickle, uploads, helpers."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import subprocess
import sys
import zlib

import numpy as np
import pytest
from remote_support import wait_for

from medmask.errors import (
    CorruptFileError,
    MedMaskError,
    RemoteChangedError,
    RemoteReadError,
)
from medmask.io import open_source, remote
from medmask.io.remote import FsspecSource, read_checked
from medmask.io.remote.config import _Policy

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

MB2 = 2_000_000


@pytest.fixture(scope="module")
def blob() -> bytes:
    return np.random.default_rng(7).integers(0, 256, MB2, dtype=np.uint8).tobytes()


def _gets(proxy) -> list:
    return [r for r in proxy.records() if r.method == "GET"]


# -- reading ---------------------------------------------------------------------------------
def test_reads_are_exact_and_checked(s3, blob):
    url = s3.put("x/a.bin", blob)
    with open_source(url, storage_options=s3.storage_options) as src:
        assert isinstance(src, FsspecSource) and not src.is_local
        assert src.size() == MB2 and src.tag and '"' in src.tag
        rng = np.random.default_rng(1)
        for _ in range(20):
            off = int(rng.integers(0, MB2 - 1))
            n = int(rng.integers(0, min(300_000, MB2 - off)))
            assert src.read(off, n) == blob[off : off + n]
        ranges = [(10, 5), (1_500_000, 70_000), (3, 0), (MB2 - 7, 7), (100_000, 200_000)]
        assert src.read_many(ranges) == [blob[o : o + n] for o, n in ranges]
        with pytest.raises(CorruptFileError, match=r"past the end.*2000000 bytes") as ei:
            src.read(MB2 - 10, 11, field="index", mask="liver")
        assert ei.value.mask == "liver" and ei.value.field == "index"
        with pytest.raises(CorruptFileError):
            src.read(-1, 4)


def test_open_costs_one_request_and_a_read_one_ranged_get(s3p, blob):
    proxy = s3p.proxy
    url = s3p.put("a.bin", blob)
    proxy.reset_counts()
    src = FsspecSource(url, storage_options=s3p.storage_options)
    assert [(r.method, r.range) for r in proxy.records()] == [
        ("GET", f"bytes=-{remote.TAIL_BLOCK}")
    ]  # the tail; its headers pin size, ETag and version
    assert src.size() == MB2
    assert src.read(MB2 - 3000, 2500) == blob[MB2 - 3000 : MB2 - 500]  # from the tail
    assert proxy.count() == 1
    assert src.read(0, 144) == blob[:144]  # the head: one request
    assert src.read(100, 1000) == blob[100:1100]  # from the head cache
    recs = proxy.records()
    assert [(r.method, r.range) for r in recs][1:] == [("GET", f"bytes=0-{remote.HEAD_BLOCK - 1}")]
    assert proxy.bytes_out() == remote.HEAD_BLOCK + remote.TAIL_BLOCK
    proxy.reset_counts()
    assert src.read(700_000, 33_000, mask="liver") == blob[700_000:733_000]
    (rec,) = proxy.records()
    assert rec.method == "GET" and rec.range == "bytes=700000-732999"
    assert rec.body_bytes == 33_000


@pytest.mark.parametrize("size", [0, 1, 37_425, remote.TAIL_BLOCK, remote.WHOLE_OBJECT_LIMIT])
def test_small_objects_take_one_or_two_requests(s3p, blob, size):
    proxy = s3p.proxy
    small = blob[:size]
    url = s3p.put("small.bin", small)
    proxy.reset_counts()
    src = FsspecSource(url, storage_options=s3p.storage_options)
    assert src.size() == size
    for off, n in [(0, min(144, size)), (max(0, size - 4000), min(4000, size)), (size, 0)]:
        assert src.read(off, n) == small[off : off + n]
    if size > 200_010:
        assert src.read_many([(5, 5), (200_000, 10)]) == [small[5:10], small[200_000:200_010]]
    gets = [r for r in proxy.records() if r.method == "GET"]
    assert len(proxy.records()) == len(gets) == (1 if size <= remote.TAIL_BLOCK else 2)
    assert proxy.bytes_out() == size


def test_other_backends_open_with_info_then_head_and_tail(tmp_path, blob):
    import fsspec

    fsspec.filesystem("memory").pipe_file("/medmask-test/budget.bin", blob)
    src = FsspecSource("memory://medmask-test/budget.bin")
    assert src.requests == 1  # info
    assert src.read(0, 144) == blob[:144] and src.read(MB2 - 10, 10) == blob[-10:]
    assert src.requests == 3  # + head and tail, concurrently


def test_read_many_coalesces_and_runs_concurrently(s3p, blob):
    proxy = s3p.proxy
    url = s3p.put("a.bin", blob)
    # a patient client: the proxy holds requests below until all four are there
    src = FsspecSource(url, storage_options={**s3p.storage_options, "medmask_timeout": 60})
    src.read(0, 16)
    # 30 neighbouring blobs (gaps of 1 kB) -> one request
    near = [(300_000 + i * 5000, 4000) for i in range(30)]
    proxy.reset_counts()
    assert src.read_many(near) == [blob[o : o + n] for o, n in near]
    assert len(_gets(proxy)) == 1
    # 4 far apart ranges: 4 requests, in the proxy at the same time (one after the other,
    # the first would wait there in vain for the other three)
    far = [(200_000, 10), (600_000, 10), (1_000_000, 10), (1_400_000, 10)]
    proxy.reset_counts()
    proxy.gather(4)
    try:
        assert src.read_many(far) == [blob[o : o + n] for o, n in far]
    finally:
        proxy.gather(None)
    assert len(_gets(proxy)) == 4
    assert proxy.gather_timeouts() == 0 and proxy.max_in_flight() == 4


@pytest.mark.parametrize("kind", ["503", "500", "drop", "reset", "truncate"])
def test_transient_faults_are_retried(s3p, blob, kind):
    proxy = s3p.proxy
    url = s3p.put("a.bin", blob)
    proxy.add(kind, times=2, method="GET")
    src = FsspecSource(url, storage_options=s3p.storage_options)  # the open request too
    assert src.size() == MB2
    proxy.add(kind, times=2, method="GET")
    assert src.read(0, 144) == blob[:144]  # the head
    proxy.add(kind, times=2, method="GET")
    assert src.read(900_000, 40_000) == blob[900_000:940_000]
    proxy.add(kind, times=3, method="GET")
    many = [(400_000, 100), (1_200_000, 100)]
    assert src.read_many(many) == [blob[o : o + n] for o, n in many]


def test_persistent_fault_raises_a_named_oserror_quickly(s3p, blob, monkeypatch):
    proxy = s3p.proxy
    url = s3p.put("case.mska", blob)
    opts = {**s3p.storage_options, "medmask_retries": 3}
    src = FsspecSource(url, storage_options=opts)
    src.read(0, 10)
    proxy.add("503", times=None, method="GET")
    proxy.reset_counts()
    waits: list[float] = []
    real_delay = _Policy.delay

    def delay(self, attempt: int) -> float:
        waits.append(real_delay(self, attempt))
        return waits[-1]

    monkeypatch.setattr(_Policy, "delay", delay)
    with pytest.raises(RemoteReadError) as ei:
        src.read(500_000, 100, field="data", mask="kidney_left")
    # quickly: 3 backoffs, each within the doubling schedule from medmask_backoff (0.01 s)
    assert len(waits) == 3 and all(0 <= w <= 0.01 * 2**k for k, w in enumerate(waits)), waits
    err = ei.value
    assert isinstance(err, OSError) and isinstance(err, MedMaskError)
    assert err.url == url and err.mask == "kidney_left"
    msg = str(err)
    assert url in msg and "kidney_left" in msg and "SlowDown" in msg and "4 attempts" in msg
    assert len(_gets(proxy)) == 4  # 1 + 3 retries, no hidden retry layer


def test_env_retries_setting(s3p, blob, monkeypatch):
    proxy = s3p.proxy
    url = s3p.put("a.bin", blob)
    monkeypatch.setenv("MEDMASK_REMOTE_RETRIES", "0")
    src = FsspecSource(url, storage_options=s3p.storage_options)
    proxy.add("500", times=1, method="GET")
    with pytest.raises(RemoteReadError, match="InternalError"):
        src.read(0, 10)
    monkeypatch.setenv("MEDMASK_REMOTE_RETRIES", "many")
    with pytest.raises(ValueError, match="MEDMASK_REMOTE_RETRIES"):
        FsspecSource(url, storage_options=s3p.storage_options)


def test_a_stalled_server_times_out(s3p, blob):
    proxy = s3p.proxy
    url = s3p.put("a.bin", blob)
    opts = {**s3p.storage_options, "medmask_timeout": 0.5, "medmask_retries": 1}
    src = FsspecSource(url, storage_options=opts)
    src.read(0, 10)
    # the stall outlasts the test's patience: only the client's timeout ends an attempt
    proxy.add("stall", times=None, method="GET", delay=120.0)
    with pytest.raises(RemoteReadError, match="after 2 attempts"):
        src.read(600_000, 10, mask="liver")
    stalled = [r for r in proxy.records("GET") if r.fault == "stall"]
    assert len(stalled) == 2
    # both attempts were given up by the client (the proxy saw it close the connection)
    assert wait_for(lambda: all(r.abandoned for r in stalled), timeout=60), stalled


def test_a_flipped_byte_is_refetched_by_read_checked(s3p, blob):
    proxy = s3p.proxy
    url = s3p.put("a.bin", blob)
    src = FsspecSource(url, storage_options=s3p.storage_options)
    src.read(0, 10)
    want = zlib.crc32(blob[800_000:850_000])
    proxy.add("flip", times=1, method="GET")
    raw = read_checked(src, 800_000, 50_000, lambda b: zlib.crc32(b) == want, mask="liver")
    assert raw == blob[800_000:850_000]
    assert len(_gets(proxy)) == 2 + 2  # tail, head; the flipped read and its retry
    # cached bytes (the tail) are dropped and fetched again after a mismatch
    tail = (MB2 - 1000, 1000)
    proxy.reset_counts()
    src.invalidate(*tail)
    assert src.read(*tail) == blob[MB2 - 1000 :]
    assert len(_gets(proxy)) == 1


def test_replaced_object_raises_changed_error(s3p, blob):
    url = s3p.put("case.mska", blob)
    src = FsspecSource(url, storage_options=s3p.storage_options)
    src.read(0, 10)
    old = src.read(1_000_000, 10)
    s3p.put("case.mska", blob[::-1])
    assert src.read(MB2 - 10, 10) == blob[-10:]  # cached: still the old version
    with pytest.raises(RemoteChangedError, match="replaced while it was open") as ei:
        src.read(1_000_000, 10, mask="spleen")
    assert ei.value.url == url and "spleen" in str(ei.value) and "reopen" in str(ei.value)
    assert isinstance(ei.value, RemoteReadError)
    fresh = FsspecSource(url, storage_options=s3p.storage_options)
    assert fresh.read(1_000_000, 10) == blob[::-1][1_000_000:1_000_010] != old
    s3p.server.client().delete_object(Bucket=s3p.name, Key="case.mska")
    with pytest.raises(RemoteChangedError, match="deleted"):
        fresh.read(1_500_000, 10)


def test_replaced_object_on_a_versioned_bucket_keeps_the_old_bytes(s3_server, blob):
    name = s3_server.new_bucket(versioned=True)
    c = s3_server.client()
    c.put_object(Bucket=name, Key="k.mska", Body=blob)
    src = FsspecSource(f"s3://{name}/k.mska", storage_options=s3_server.storage_options())
    src.read(0, 10)
    c.put_object(Bucket=name, Key="k.mska", Body=blob[::-1])
    assert src.read(1_000_000, 1000) == blob[1_000_000:1_001_000]


def test_missing_object_and_bucket(s3):
    with pytest.raises(FileNotFoundError, match="no such object"):
        FsspecSource(s3.url("nope.mska"), storage_options=s3.storage_options)
    with pytest.raises(FileNotFoundError, match="no such object") as ei:  # NoSuchBucket
        FsspecSource("s3://no-such-bucket-xyz/a.mska", storage_options=s3.storage_options)
    assert "s3://no-such-bucket-xyz/a.mska" in str(ei.value)


def test_pickle_carries_only_url_and_options(s3, blob):
    url = s3.put("a.bin", blob)
    src = FsspecSource(url, storage_options=s3.storage_options)
    src.read(0, 10)
    state = src.__getstate__()
    assert state == {"url": url, "storage_options": s3.storage_options}
    copy = pickle.loads(pickle.dumps(src))
    assert copy.read(123_456, 100) == blob[123_456:123_556]
    assert copy.tag == src.tag


_FORKED: FsspecSource | None = None


def _read_in_child(q) -> None:
    try:
        src = _FORKED
        assert src is not None
        data = src.read(1_234_567, 1000)
        q.put((os.getpid(), src._pid, zlib.crc32(data)))
    except BaseException as exc:  # report to the parent
        q.put(repr(exc))


def test_a_source_used_before_fork_works_in_the_child(s3, blob):
    global _FORKED
    url = s3.put("a.bin", blob)
    _FORKED = FsspecSource(url, storage_options=s3.storage_options)
    _FORKED.read(500_000, 10)  # client, event loop and connections exist in the parent
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_read_in_child, args=(q,)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    _FORKED.read(700_000, 10)  # the parent's client still works
    for r in results:
        assert isinstance(r, tuple), r
        pid, src_pid, crc = r
        assert pid == src_pid != os.getpid()  # a client of its own
        assert crc == zlib.crc32(blob[1_234_567:1_235_567])
    _FORKED = None


def test_fsspec_env_config_reaches_the_endpoint(s3, blob):
    s3.put("a.bin", blob)
    code = (
        "from medmask.io import open_source\n"
        f"s = open_source('s3://{s3.name}/a.bin')\n"
        "print(s.size(), s.read(10, 4).hex())\n"
    )
    env = {**os.environ, "FSSPEC_S3_ENDPOINT_URL": s3.server.endpoint}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(MB2), blob[10:14].hex()]


def test_options_are_validated(s3, blob):
    url = s3.put("a.bin", blob)
    with pytest.raises(ValueError, match="medmask_timeout"):
        FsspecSource(url, storage_options={**s3.storage_options, "medmask_timeout": 0})


def test_memory_and_file_urls(tmp_path, blob):
    import fsspec

    fsspec.filesystem("memory").pipe_file("/medmask-test/a.bin", blob)
    src = open_source("memory://medmask-test/a.bin")
    assert src.read(1_999_000, 1000) == blob[-1000:]
    assert src.read_many([(0, 3), (1_000_000, 5)]) == [blob[:3], blob[1_000_000:1_000_005]]
    (tmp_path / "b.bin").write_bytes(blob)
    src = open_source(f"file://{tmp_path}/b.bin")
    assert src.read(5, 5) == blob[5:10]
    # generic backends: a replaced object is caught when a checksum mismatch makes the
    # reader invalidate (no conditional reads there)
    (tmp_path / "b.bin").write_bytes(blob[::-1] + b"x")
    src.invalidate(1_000_000, 5)
    with pytest.raises(RemoteChangedError):
        src.read(1_000_000, 5)


# -- writing and helpers -----------------------------------------------------------------------
def test_upload_small_is_one_put(s3p, tmp_path, blob):
    proxy = s3p.proxy
    f = tmp_path / "a.mska"
    f.write_bytes(blob[:300_000])
    proxy.reset_counts()
    remote.upload(f, s3p.url("out/a.mska"), storage_options=s3p.storage_options)
    assert [r.method for r in proxy.records()] == ["PUT"]
    assert s3p.get("out/a.mska") == blob[:300_000]


def test_upload_retries_transient_faults(s3p, tmp_path, blob):
    proxy = s3p.proxy
    f = tmp_path / "a.mska"
    f.write_bytes(blob)
    proxy.add("503", times=1, method="PUT")
    proxy.add("drop", times=1, method="PUT")
    remote.upload(f, s3p.url("a.mska"), storage_options=s3p.storage_options)
    assert s3p.get("a.mska") == blob


def test_multipart_upload_appears_whole_or_not_at_all(s3p, tmp_path, monkeypatch):
    proxy = s3p.proxy
    monkeypatch.setattr(remote.transfers, "UPLOAD_PART_SIZE", 5 * 2**20)
    data = np.random.default_rng(3).integers(0, 256, 11 * 2**20, dtype=np.uint8).tobytes()
    f = tmp_path / "big.mska"
    f.write_bytes(data)
    url = s3p.url("big.mska")
    # every part upload fails: nothing appears, the multipart upload is aborted
    proxy.add("503", times=None, method="PUT", path_contains="partNumber=")
    opts = {**s3p.storage_options, "medmask_retries": 1}
    with pytest.raises(RemoteReadError, match="upload failed"):
        remote.upload(f, url, storage_options=opts)
    c = s3p.server.client()
    assert s3p.keys() == []
    assert c.list_multipart_uploads(Bucket=s3p.name).get("Uploads", []) == []
    proxy.clear()
    remote.upload(f, url, storage_options=opts)
    assert proxy.count("POST") >= 2  # create + complete: a multipart upload
    assert s3p.get("big.mska") == data


def test_helpers(s3, tmp_path, blob):
    opts = s3.storage_options
    for key in ["p/a.mska", "p/sub/b.mska", "p/c.msk", "p/d.nii.gz", "q/e.mska"]:
        s3.put(key, blob[:100])
    assert remote.exists(s3.url("p/a.mska"), storage_options=opts)
    assert not remote.exists(s3.url("p/zzz.mska"), storage_options=opts)
    assert remote.list_files(s3.url("p/"), storage_options=opts) == [
        s3.url("p/a.mska"),
        s3.url("p/c.msk"),
        s3.url("p/sub/b.mska"),
    ]
    assert remote.list_files(s3.url("p"), (".mska",), storage_options=opts, recursive=False) == [
        s3.url("p/a.mska")
    ]
    assert remote.list_files(s3.url("p/"), (".NII.GZ",), storage_options=opts) == [
        s3.url("p/d.nii.gz")
    ]
    assert remote.list_folders(s3.url("p/"), storage_options=opts) == [s3.url("p/sub")]
    assert remote.list_folders(s3.url(""), storage_options=opts) == [s3.url("p"), s3.url("q")]
    assert remote.read_bytes(s3.url("p/d.nii.gz"), storage_options=opts) == blob[:100]
    with pytest.raises(FileNotFoundError):
        remote.read_bytes(s3.url("p/none.nii.gz"), storage_options=opts)
    got = remote.download(s3.url("p/a.mska"), tmp_path / "x" / "a.mska", storage_options=opts)
    assert got.read_bytes() == blob[:100] and list((tmp_path / "x").iterdir()) == [got]
    with pytest.raises(FileNotFoundError):
        remote.download(s3.url("p/none.mska"), tmp_path / "n.mska", storage_options=opts)
    assert not (tmp_path / "n.mska").exists() and len(list(tmp_path.iterdir())) == 1
    remote.remove(s3.url("p/a.mska"), storage_options=opts)
    remote.remove(s3.url("p/a.mska"), storage_options=opts)  # idempotent
    assert not remote.exists(s3.url("p/a.mska"), storage_options=opts)
    with pytest.raises(FileNotFoundError):
        remote.upload(tmp_path / "none.mska", s3.url("p/none.mska"), storage_options=opts)


def test_upload_to_a_file_url_is_a_rename(tmp_path, blob):
    src = tmp_path / "local.mska"
    src.write_bytes(blob[:1000])
    target = tmp_path / "out" / "a.mska"
    remote.upload(src, f"file://{target}")
    assert target.read_bytes() == blob[:1000]
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.mska"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)


# -- through the version-2 layout (what a reader asks for) ----------------------------------
def _v2_open_and_read_one(src) -> tuple[bytes, bytes]:
    """The reads a version-2 reader does to open an archive and read its first blob."""
    from medmask.format.v2 import DATA_START, SLOT, SLOT_OFFSETS

    head = src.read(0, DATA_START, field="header")
    slots = [SLOT.unpack_named(head, off) for off in SLOT_OFFSETS]
    gen, count, s_off, s_len, s_crc, i_off, i_len, i_crc, end, _r, _c = max(slots)
    space = src.read(s_off, s_len, field="space")
    index = src.read(i_off, i_len, field="index")
    assert zlib.crc32(space) == s_crc and zlib.crc32(index) == i_crc
    import json

    import zstandard

    rows = json.loads(zstandard.ZstdDecompressor().decompress(index))["rows"]
    first = next(r for r in rows if r[3])
    return index, src.read(first[2], first[3], field="data", mask=first[0])


def test_v2_archive_budget(s3p, tmp_path):
    """Open a 2 MB version-2 archive: <= 3 requests; one mask: 1 ranged GET of its blob."""
    from medmask import MaskArchive, SegmentationMask
    from medmask.spaces import Space

    rng = np.random.default_rng(0)
    space = Space(shape=(64, 64, 64)).reverse_axis_order()
    path = tmp_path / "big.mska"
    with MaskArchive(path, "w", space=space) as ar:
        for i in range(60):
            ar.add(f"m{i}", SegmentationMask(rng.random(space.shape) < 0.5, {f"m{i}": 1}, space))
    size = path.stat().st_size
    assert 1_500_000 < size < 3_000_000
    url = s3p.put("big.mska", path.read_bytes())
    proxy = s3p.proxy
    proxy.reset_counts()
    src = FsspecSource(url, storage_options=s3p.storage_options)
    index, first_blob = _v2_open_and_read_one(src)
    recs = proxy.records()
    assert len(recs) == 3, [(r.method, r.range) for r in recs]  # tail, head, blob
    assert recs[-1].body_bytes == len(first_blob)
    assert proxy.bytes_out() <= len(first_blob) + remote.HEAD_BLOCK + remote.TAIL_BLOCK
    assert path.read_bytes().find(first_blob) > 0


# -- random fault campaign: right bytes or a clear error, never wrong bytes -----------------
def _campaign(s3p, blob, reads: int, seed: int) -> dict:
    proxy = s3p.proxy
    url = s3p.put("campaign.bin", blob)
    opts = {**s3p.storage_options, "medmask_retries": 2, "medmask_timeout": 2}
    src = FsspecSource(url, storage_options=opts)
    src.read(0, 16)
    rng = np.random.default_rng(seed)
    kinds = ["none", "503", "500", "drop", "reset", "truncate", "flip"]
    outcome = {"right": 0, "error": 0}
    for _ in range(reads):
        proxy.clear()
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind != "none":
            proxy.add(kind, times=int(rng.integers(1, 5)), method="GET")
        off = int(rng.integers(HEAD_SAFE, MB2 - TAIL_SAFE))
        n = int(rng.integers(1, min(200_000, MB2 - TAIL_SAFE - off)))
        want = zlib.crc32(blob[off : off + n])
        try:
            if rng.random() < 0.5:
                raw = read_checked(src, off, n, lambda b, w=want: zlib.crc32(b) == w)
            else:
                (raw,) = src.read_many([(off, n)])
        except RemoteReadError as exc:
            assert url in str(exc)
            outcome["error"] += 1
            continue
        if zlib.crc32(raw) == want:
            assert raw == blob[off : off + n]
            outcome["right"] += 1
        else:  # only a flipped byte may get through the source: the reader's CRC catches it
            assert kind == "flip" and len(raw) == n
            outcome["error"] += 1
    return outcome


HEAD_SAFE = 20_000  # keep the campaign's reads out of the cached head and tail
TAIL_SAFE = 70_000


def test_fault_campaign_short(s3p, blob):
    out = _campaign(s3p, blob, 14, seed=11)
    assert out["right"] >= 7


@pytest.mark.slow
def test_fault_campaign_long(s3p, blob):
    out = _campaign(s3p, blob, 300, seed=12)
    assert out["right"] >= 150


def test_threads_share_one_source(s3p, blob):
    from concurrent.futures import ThreadPoolExecutor

    url = s3p.put("a.bin", blob)
    src = FsspecSource(url, storage_options=s3p.storage_options)
    s3p.proxy.reset_counts()
    rng = np.random.default_rng(5)
    offs = [int(o) for o in rng.integers(0, MB2 - 5000, 64)]
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda o: src.read(o, 5000), offs))
    assert got == [blob[o : o + 5000] for o in offs]
    heads = [r for r in _gets(s3p.proxy) if r.range == f"bytes=0-{remote.HEAD_BLOCK - 1}"]
    assert len(heads) == 1  # one prefetch for all threads
    src.close()
    with pytest.raises(ValueError, match="closed"):
        src.read(0, 1)


def test_a_forked_child_never_closes_the_parents_clients(s3, blob):
    """s3fs would close an inherited client on garbage collection through the parent's
    event loop; in a child medmask detaches that cleanup (the parent keeps working)."""
    import gc
    import weakref

    url = s3.put("a.bin", blob)
    src = FsspecSource(url, storage_options=s3.storage_options)
    src.read(400_000, 10)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            pending = [
                info
                for info in weakref.finalize._registry.values()
                if getattr(info.func, "__qualname__", "") == "S3FileSystem.close_session"
            ]
            fresh = FsspecSource(url, storage_options=s3.storage_options)
            ok = fresh.read(1_000_000, 10) == blob[1_000_000:1_000_010]
            gc.collect()
            os.write(w, f"{len(pending)} {ok}".encode())
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    answer = os.read(r, 100).decode()
    os.close(r)
    assert answer == "0 True"
    assert src.read(1_500_000, 10) == blob[1_500_000:1_500_010]


def test_plain_https_style_urls(s3p, blob):
    """http(s):// objects through fsspec's HTTP filesystem (the S3 server answers plain
    GETs with Range): info + head and tail, then one ranged GET per read."""
    proxy = s3p.proxy
    s3p.server.client().put_object(Bucket=s3p.name, Key="pub.bin", Body=blob, ACL="public-read")
    url = f"{proxy.url}/{s3p.name}/pub.bin"
    proxy.reset_counts()
    src = open_source(url, storage_options={"medmask_backoff": 0.01})
    assert src.size() == MB2 and "ETag" in src.tag
    assert src.read(0, 144) == blob[:144] and src.read(MB2 - 100, 100) == blob[-100:]
    assert src.read(1_000_000, 5000) == blob[1_000_000:1_005_000]
    assert proxy.count() <= 4  # info (HEAD), head, tail, the read
    proxy.add("503", times=1, method="GET")
    assert src.read(1_200_000, 10) == blob[1_200_000:1_200_010]  # retried
    proxy.add("500", times=None, method="GET")
    n = proxy.count()
    with pytest.raises(RemoteReadError, match="after 6 attempts"):
        src.read(1_300_000, 10, mask="liver")
    assert proxy.count() - n == 6
