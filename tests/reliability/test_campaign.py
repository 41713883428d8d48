"""Reliability campaign (hostile files, crashes, concurrency, leaks) at test-suite scale,
through the shared toolkit in ``tests/reliability/``.

The long variants run with ``--runslow``; ``make reliability`` runs the full campaign and
writes the figures into docs/reliability.md.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import signal
import stat

import numpy as np
import pytest

from medmask import MaskArchive, SegmentationMask
from medmask.errors import ArchiveLockedError, CorruptFileError, MaskValidationError
from reliability import contract as C
from reliability import mutators as M
from reliability import samples as S
from reliability import workload as W


@pytest.fixture(scope="module")
def samples():
    return S.build_samples()


def test_corrupt_and_hostile_files_are_rejected(samples):
    """Every kind of file, every family of corruption, through the reader contract."""
    sweep = C.run_sweep(M.generate(samples, n_random=15, seed=0, subsample=0.12))
    assert sweep.failures == [], sweep.failures[:10]
    assert sweep.total > 700
    # version 2 never returns a different array: its checksums catch every flip (the
    # contract's verdict makes a non-forged version-2 "different" a failure, above)
    assert sum(n for (k, _f, _s), n in sweep.counts.items() if k.endswith("2")) > 300
    assert sweep.max_peak < C.MEMORY_BOUND
    # rejecting is not always right: every untouched sample reads back exactly, every
    # variant the spec allows is read, every invalid one is refused
    fam = sweep.by_family()
    n = len(samples)
    assert fam["intact"] == {
        **{"rejected": 0, "partly rejected": 0, "read": n, "failed": 0},
        **{"must_read": n, "must_read_ok": n, "must_reject": 0, "must_reject_ok": 0},
    }
    for name, row in fam.items():
        assert row["failed"] == 0, name
        assert row["must_read_ok"] == row["must_read"], (name, row)
        assert row["must_reject_ok"] == row["must_reject"], (name, row)
    assert fam["hostile-json"]["must_read"] >= 100 and fam["v1-blob-header"]["must_read"] >= 4
    assert fam["misc"]["rejected"] == fam["misc"]["must_reject"] > 0


def _rejects_everything(*args, **kwargs):
    raise CorruptFileError("this reader rejects every file", path=args[0] if args else None)


def test_a_reader_that_rejects_everything_breaks_the_contract(samples, monkeypatch, tmp_path):
    """The contract fails a reader that refuses every file: the intact samples and the
    valid forged variants must be read."""
    import medmask

    cases = [c for c in M.generate(samples, families=["intact", "hostile"]) if c.must_read]
    kinds = {c.kind for c in cases if c.family == "intact"}
    assert kinds == set(S.KINDS)
    picked = [c for c in cases if c.family == "intact"] + [c for c in cases if c.forged][::25]

    def verdicts() -> list:
        out = []
        for c in picked:
            s = samples[c.sample]
            out.append(
                C.verdict(c, C.check_bytes(c.data, c.kind, s.expected, s.space, str(tmp_path)))
            )
        return out

    assert verdicts() == [None] * len(picked)  # medmask's reader reads them
    monkeypatch.setattr(medmask, "load_mask", _rejects_everything)
    monkeypatch.setattr(medmask, "MaskArchive", _rejects_everything)
    broken = verdicts()
    assert all(broken), [c.label for c, v in zip(picked, broken, strict=True) if not v]
    intact = sum(c.family == "intact" for c in picked)
    assert sum("intact sample did not read back" in v for v in broken) == intact == len(samples)


@pytest.mark.slow
def test_corruption_long(samples):
    for seed in range(5):
        assert C.run_sweep(M.generate(samples, n_random=200, seed=seed)).failures == []


def test_sigkill_while_appending(tmp_path):
    """Killed after 0 to 4 reported commits, a random instant into the next append."""
    r = W.kill_cycles(tmp_path / "a.mska", cycles=25)
    assert r["problems"] == [] and r["masks"] >= r["awaited"] > 25, r


@pytest.mark.slow
def test_sigkill_while_appending_long(tmp_path):
    r = W.kill_cycles(tmp_path / "a.mska", cycles=300, seed=1)
    assert r["problems"] == [] and r["masks"] >= r["awaited"], r


def test_readers_in_other_processes_see_consistent_archives(tmp_path):
    r = W.concurrent_readers(tmp_path / "a.mska", appends=20, readers=2)
    assert r["problems"] == [] and r["commits_seen"] == 20 and r["opens"] > 4, r


def _replace_forever(path: str) -> None:
    masks = [W.mask(j) for j in range(6)]
    k = 0
    while True:
        with MaskArchive(path, "w") as ar:
            for j in range(k % 5 + 1):
                ar.add_segmask(masks[j], f"m{j}")
        k += 1


def test_write_mode_replacement_is_atomic_under_sigkill(tmp_path):
    """Killed while replacing an archive with mode 'w': the old file or the new one, never torn."""
    path = tmp_path / "a.mska"
    with MaskArchive(path, "w") as ar:
        ar.add_segmask(W.mask(0), "m0")
    ctx = mp.get_context("fork")
    rng = np.random.default_rng(0)
    for _ in range(15):
        p = ctx.Process(target=_replace_forever, args=(str(path),))
        p.start()
        import time

        time.sleep(float(rng.uniform(0.01, 0.06)))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        with MaskArchive(path) as ar:
            n = len(ar)
            assert ar.all_names() == [f"m{j}" for j in range(n)]
            for j in range(n):
                assert ar[j] == W.mask(j)


def _append_with_size_limit(path: str, limit: int, q) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    big = W.noise()
    try:
        with MaskArchive(path, "a") as ar:
            ar.add_segmask(big, "noise")
        q.put("written")
    except OSError as exc:
        q.put(f"OSError {exc.errno}")


def test_disk_full_leaves_archive_as_it_was(tmp_path):
    path = tmp_path / "a.mska"
    masks = {f"m{k}": W.mask(k) for k in range(4)}
    with MaskArchive(path, "w") as ar:
        for n, m in masks.items():
            ar.add_segmask(m, n)
    before = path.read_bytes()
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_append_with_size_limit, args=(str(path), len(before) + 100, q))
    p.start()
    p.join()
    assert q.get(timeout=10).startswith("OSError")
    with MaskArchive(path) as ar:
        assert ar.all_names() == list(masks)
        assert all(ar[n] == m for n, m in masks.items())
    assert path.read_bytes()[: len(before)] == before  # committed bytes untouched


def _read(path) -> None:
    with MaskArchive(path) as ar:
        ar.read_all_masks()


def _open_append(path) -> None:
    with MaskArchive(path, "a") as ar:
        ar.add_segmask(W.mask(1), "m1")


def _replace(path) -> None:
    with MaskArchive(path, "w") as ar:
        ar.add_segmask(W.mask(1), "m1")


def test_permission_denied():
    """A read-only archive refuses an append from a user without write rights (root drops
    to nobody for it, so that this runs in CI) and stays as it was."""
    with W.unprivileged_folder() as folder:
        path = folder / "a.mska"
        with MaskArchive(path, "w") as ar:
            ar.add_segmask(W.mask(0), "m0")
        before = path.read_bytes()
        path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        assert W.run_unprivileged(lambda: _read(path)) == "no error"  # the path is reachable
        assert W.run_unprivileged(lambda: _open_append(path)) == "PermissionError"
        assert path.read_bytes() == before
        with MaskArchive(path) as ar:
            assert ar.all_names() == ["m0"]


def test_permission_denied_directory():
    """A write into a folder the user cannot write leaves the existing archive untouched
    and no temporary file behind (root drops to nobody for it)."""
    with W.unprivileged_folder() as top:
        folder = top / "ro"
        folder.mkdir()
        path = folder / "a.mska"
        with MaskArchive(path, "w") as ar:
            ar.add_segmask(W.mask(0), "m0")
        before = path.read_bytes()
        folder.chmod(0o555)
        try:
            assert W.run_unprivileged(lambda: _read(path)) == "no error"
            assert W.run_unprivileged(lambda: _replace(path)) == "PermissionError"
        finally:
            folder.chmod(0o755)
        assert path.read_bytes() == before
        assert sorted(p.name for p in folder.iterdir()) == ["a.mska"]


def test_failed_validation_leaves_archive(tmp_path):
    path = tmp_path / "a.mska"
    with MaskArchive(path, "a") as ar:
        ar.add_segmask(W.mask(0), "m0")
        before = path.read_bytes()
        wrong = SegmentationMask(np.zeros((3, 3, 3), bool), {"x": 1})
        with pytest.raises(MaskValidationError):
            ar.add_segmask(wrong, "m1")
        assert path.read_bytes() == before
        ar.add_segmask(W.mask(1), "m1")
    with MaskArchive(path) as ar:
        assert ar.all_names() == ["m0", "m1"]


def _hold_writer(path: str, ready, release) -> None:
    with MaskArchive(path, "a") as ar:
        ar.add_segmask(W.mask(0), "m0")
        ready.set()
        release.wait(10)


def test_second_writer_in_another_process_is_refused(tmp_path):
    path = tmp_path / "a.mska"
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_writer, args=(str(path), ready, release))
    p.start()
    assert ready.wait(10)
    try:
        with pytest.raises(ArchiveLockedError, match="another writer"):
            MaskArchive(path, "a")
        with MaskArchive(path) as ar:
            assert ar.all_names() == ["m0"]
    finally:
        release.set()
        p.join()
    with MaskArchive(path, "a") as ar:  # free again once the first writer is gone
        ar.add_segmask(W.mask(1), "m1")


def leak_run(archives, items: int, workers: int = 2) -> dict:
    """Iterate a 2-worker DataLoader over MaskArchiveDataset; sample the workers' open
    files and memory after the warm-up and at the end."""
    psutil = pytest.importorskip("psutil")
    torch_data = pytest.importorskip("torch.utils.data")
    from medmask_monai import MaskArchiveDataset

    ds = MaskArchiveDataset(archives, max_open=8)
    sampler = torch_data.RandomSampler(
        ds,
        replacement=True,
        num_samples=items,
        generator=__import__("torch").Generator().manual_seed(0),
    )
    loader = torch_data.DataLoader(
        ds, batch_size=16, sampler=sampler, num_workers=workers, persistent_workers=True
    )
    me = psutil.Process()
    samples = []
    for k, _batch in enumerate(loader):
        if k in (len(loader) // 5, len(loader) - 1):
            kids = me.children(recursive=True)
            samples.append(
                (
                    sum(c.num_fds() for c in kids),
                    sum(c.memory_info().rss for c in kids),
                    me.num_fds(),
                )
            )
    del loader
    (fd0, rss0, own0), (fd1, rss1, own1) = samples
    return {
        "items": items,
        "fds_start": fd0,
        "fds_end": fd1,
        "rss_start": rss0,
        "rss_end": rss1,
        "own_fds": (own0, own1),
    }


@pytest.fixture(scope="module")
def many_archives(tmp_path_factory):
    d = tmp_path_factory.mktemp("leak")
    space = W.SPACE
    masks = [W.mask(k) for k in range(6, 12)]
    paths = []
    for c in range(20):
        p = d / f"c{c}.mska"
        with MaskArchive(p, "w", space=space) as ar:
            for k in range(50):
                ar.add_segmask(masks[(k + c) % len(masks)], f"m{k}")
        paths.append(p)
    return paths


def test_dataloader_workers_do_not_leak(many_archives):
    r = leak_run(many_archives, items=3000)
    assert r["fds_end"] - r["fds_start"] <= 2, r
    assert r["rss_end"] - r["rss_start"] < 40 * 2**20, r
    assert r["own_fds"][1] - r["own_fds"][0] <= 2, r
