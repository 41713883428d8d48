"""Writers and readers under stress: SIGKILL cycles, replacement cycles, concurrent
readers (processes and threads). Each runner returns its figures and a list of
problems (empty when every guarantee held); the tests assert on them at small scale and
``benchmarks/reliability_report.py`` runs them at full scale.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import multiprocessing as mp
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from spacetransformer import Space

from medmask import MaskArchive, SegmentationMask, load_mask, save_mask
from medmask.errors import CorruptFileError

SHAPE = (10, 12, 14)
SPACE = Space(shape=SHAPE[::-1], spacing=(1.0, 1.0, 2.0)).reverse_axis_order()
CODECS = [None, "zstd"]  # version 2, version 1
FORK = mp.get_context("fork")


def mask(k: int) -> SegmentationMask:
    """Deterministic mask number ``k`` (bool or uint8 labels, a box that moves with k)."""
    rng = np.random.default_rng(k)
    z, y, x = k % 5, (3 * k) % 6, (7 * k) % 8
    if k % 3 == 2:
        arr = np.zeros(SHAPE, np.uint8)
        arr[z : z + 5, y : y + 6, x : x + 6] = rng.integers(0, 3, (5, 6, 6), dtype=np.uint8)
        return SegmentationMask(arr, {"a": 1, "b": 2}, SPACE)
    arr = np.zeros(SHAPE, bool)
    arr[z : z + 4, y : y + 5, x : x + 6] = rng.random((4, 5, 6)) > 0.3
    return SegmentationMask(arr, {f"m{k}": 1}, SPACE)


def noise(seed: int = 0) -> SegmentationMask:
    """Incompressible: about 250 bytes on disk whatever the codec."""
    return SegmentationMask(np.random.default_rng(seed).random(SHAPE) > 0.5, {"noise": 1}, SPACE)


def make_archive(path: Path, n: int, codec=None, start: int = 0) -> None:
    with MaskArchive(path, "w", codec=codec) as ar:
        for k in range(start, start + n):
            ar.add_segmask(mask(k), f"m{k}")


def assert_archive(path: Path, ks) -> None:
    """The archive holds exactly masks ``m{k}`` for ``k`` in ``ks``, in that order, equal."""
    ks = list(ks)
    with MaskArchive(path) as ar:
        assert ar.all_names() == [f"m{k}" for k in ks], ar.all_names()
        for k in ks:
            assert ar[f"m{k}"] == mask(k), k


def temp_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp"))


# -- SIGKILL while appending -------------------------------------------------------------------
def _append_forever(path: str, start: int, codec, conn) -> None:
    k = start
    with MaskArchive(path, "a", codec=codec) as ar:
        while True:
            ar.add_segmask(mask(k), f"m{k}")
            conn.send(k)
            k += 1


#: Longest wait for a child's next commit report (only against a hang: a child that commits
#: nothing for this long is reported as a problem).
REPORT_TIMEOUT = 120.0


def _kill_after_reports(p, conn, reports: int, rng: random.Random) -> tuple[list, str | None]:
    """Let the child ``p`` report ``reports`` commits on ``conn``, then SIGKILL it a random
    instant (0-2 ms) later, inside the operation that follows. Returns the reports received
    (those after the last awaited one too) and a problem, if the child stalled or died."""
    got: list = []
    problem = None
    while len(got) < reports:
        if not conn.poll(REPORT_TIMEOUT):
            problem = f"no commit reported within {REPORT_TIMEOUT:.0f} s"
            break
        try:
            got.append(conn.recv())
        except EOFError:
            problem = f"the child died after {len(got)} of {reports} commits (exit {p.exitcode})"
            break
    time.sleep(rng.uniform(0.0, 0.002))  # where in the next operation the kill lands
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    while conn.poll():
        try:
            got.append(conn.recv())
        except EOFError:
            break
    conn.close()
    return got, problem


def kill_cycles(path: Path, cycles: int, codec=None, seed: int = 0, max_commits: int = 4) -> dict:
    """SIGKILL a child that appends in a loop, ``cycles`` times: each time after it reported
    a random number (0 to ``max_commits``) of commits, a random instant into the next
    append (counted, not timed: the same kills on a loaded machine). After each kill the
    archive must open and list every mask the child reported stored (a mask committed
    whose report was lost is fine), each reading back equal.

    Returns:
        ``cycles``, ``awaited`` (commits waited for before the kills: the least number of
        masks the archive must hold), ``masks`` (it holds), ``leftover_temps``,
        ``seconds`` and ``problems``.
    """
    rng = random.Random(seed)
    done: list[int] = []
    problems: list[str] = []
    awaited = 0
    t0 = time.perf_counter()
    for cycle in range(cycles):
        parent, child = FORK.Pipe(duplex=False)
        p = FORK.Process(target=_append_forever, args=(str(path), len(done), codec, child))
        p.start()
        child.close()
        reports = rng.randint(0, max_commits)
        awaited += reports
        got, problem = _kill_after_reports(p, parent, reports, rng)
        done += got
        if problem:
            problems.append(f"cycle {cycle}: {problem}")
            break
        if not path.exists():
            if done:
                problems.append(f"cycle {cycle}: archive missing after {len(done)} masks")
            continue
        try:
            with MaskArchive(path) as ar:
                names = ar.all_names()
                if names[: len(done)] != [f"m{k}" for k in done]:
                    problems.append(f"cycle {cycle}: lists {names[-3:]}, stored {done[-3:]}")
                    break
                done += [int(n[1:]) for n in names[len(done) :]]
                for k in done[-4:]:
                    if ar[f"m{k}"] != mask(k):
                        problems.append(f"cycle {cycle}: m{k} differs")
        except (CorruptFileError, OSError) as exc:
            problems.append(f"cycle {cycle}: {type(exc).__name__}: {exc}")
            break
    if not problems:
        try:
            assert_archive(path, done)
        except (AssertionError, CorruptFileError, OSError) as exc:
            problems.append(f"final check: {type(exc).__name__}: {exc}")
    return {
        "cycles": cycles,
        "awaited": awaited,
        "masks": len(done),
        "leftover_temps": len(temp_leftovers(path.parent)),
        "seconds": time.perf_counter() - t0,
        "problems": problems,
    }


# -- SIGKILL while replacing (mode "w", save_mask) ----------------------------------------------
def _replace_forever(path: str, codec, kind: str, conn) -> None:
    k = 0
    while True:
        if kind == "msk":
            save_mask(mask(k % 2), path, codec=codec)
        else:
            make_archive(Path(path), 3 + k % 2, codec, start=10 * (k % 2))
        conn.send(k)
        k += 1


def replace_cycles(
    folder: Path, cycles: int, codec=None, kind: str = "mska", seed: int = 0
) -> dict:
    """SIGKILL a child that keeps replacing a file (``save_mask`` / ``MaskArchive(..., "w")``)
    between two contents, each time after 0 to 3 replacements it reported, a random instant
    into the next one: after each kill the file holds one of them, never a torn mix."""
    rng = random.Random(seed)
    path = Path(folder) / ("m.msk" if kind == "msk" else "a.mska")
    olds = [[0, 1, 2], [10, 11, 12, 13]]
    if kind == "msk":
        save_mask(mask(0), path, codec=codec)
    else:
        make_archive(path, 3, codec)
    problems: list[str] = []
    seen = set()
    for cycle in range(cycles):
        parent, child = FORK.Pipe(duplex=False)
        p = FORK.Process(target=_replace_forever, args=(str(path), codec, kind, child))
        p.start()
        child.close()
        _got, problem = _kill_after_reports(p, parent, rng.randint(0, 3), rng)
        if problem:
            problems.append(f"cycle {cycle}: {problem}")
            break
        try:
            if kind == "msk":
                m = load_mask(path)
                which = [k for k in (0, 1) if m == mask(k)]
                if not which:
                    problems.append(f"cycle {cycle}: the .msk holds neither version")
                seen.update(which)
            else:
                with MaskArchive(path) as ar:
                    ks = [int(n[1:]) for n in ar.all_names()]
                    if ks not in olds or any(ar[f"m{k}"] != mask(k) for k in ks):
                        problems.append(f"cycle {cycle}: torn archive {ks}")
                    seen.add(tuple(ks))
        except (CorruptFileError, OSError) as exc:
            problems.append(f"cycle {cycle}: {type(exc).__name__}: {exc}")
    return {
        "cycles": cycles,
        "versions_seen": len(seen),
        "leftover_temps": len(temp_leftovers(folder)),
        "problems": problems,
    }


# -- readers while a writer appends --------------------------------------------------------------
def _reader(path: str, threads: int, rounds, stop, q) -> None:
    """Threads each with their own handle: per round, ``refresh()`` it or reopen, list,
    and read up to 12 listed masks (by name, position, crop and info), which must equal
    the originals. Every round is counted in ``rounds`` once listed; each thread does at
    least one round, then goes on until ``stop`` is set."""
    stats = {"opens": 0, "refreshes": 0, "reads": 0, "rounds": 0, "lengths": set(), "bad": []}
    lock = threading.Lock()

    def work(tid: int) -> None:
        ar = MaskArchive(path)
        opens, refreshes, reads, done = 1, 0, 0, 0
        lengths: set[int] = set()
        bad = []
        rng = random.Random(tid)
        try:
            while True:
                last = stop.is_set()
                if rng.random() < 0.3:
                    ar.close()
                    ar = MaskArchive(path)
                    opens += 1
                else:
                    ar.refresh()
                    refreshes += 1
                names = ar.all_names()
                lengths.add(len(names))
                with rounds.get_lock():
                    rounds.value += 1
                done += 1
                for i in rng.sample(range(len(names)), min(len(names), 12)):
                    k = int(names[i][1:])
                    exp = mask(k)
                    got = ar[i] if rng.random() < 0.5 else ar[names[i]]
                    crop, box = ar.read_cropped(names[i])
                    full = np.zeros(SHAPE, crop.dtype)
                    if box is not None:
                        full[box[0] : box[1], box[2] : box[3], box[4] : box[5]] = crop
                    if got != exp or not np.array_equal(full, exp.data):
                        bad.append(names[i])
                    if ar.info(names[i]).mapping != exp.mapping.to_dict():
                        bad.append(names[i] + " info")
                    reads += 1
                if last:
                    break
        except Exception as exc:  # noqa: BLE001 - reported, not raised, in the child
            bad.append(f"{type(exc).__name__}: {exc}")
        finally:
            ar.close()
        with lock:
            stats["opens"] += opens
            stats["refreshes"] += refreshes
            stats["reads"] += reads
            stats["rounds"] += done
            stats["lengths"] |= lengths
            stats["bad"] += bad

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    q.put(stats)


def _shared_reader(path: str, threads: int, stop, q) -> None:
    """One MaskArchive handle (a snapshot) shared by ``threads`` threads, each reading at
    least once, then until ``stop`` is set."""
    stats = {"reads": 0, "bad": []}
    lock = threading.Lock()
    with MaskArchive(path) as ar:
        names = ar.all_names()

        def work(tid: int) -> None:
            rng = random.Random(tid)
            reads, bad = 0, []
            try:
                while True:
                    last = stop.is_set()
                    i = rng.randrange(len(names))
                    got = ar.read_array(names[i]) if tid % 2 else ar[i].data
                    if not np.array_equal(got, mask(int(names[i][1:])).data):
                        bad.append(names[i])
                    reads += 1
                    if last:
                        break
            except Exception as exc:  # noqa: BLE001
                bad.append(f"{type(exc).__name__}: {exc}")
            with lock:
                stats["reads"] += reads
                stats["bad"] += bad

        ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    q.put(stats)


def _wait_for(counter, target: int) -> bool:
    """Wait until the shared ``counter`` reaches ``target`` (``False`` after
    :data:`REPORT_TIMEOUT`: only against a hang)."""
    deadline = time.monotonic() + REPORT_TIMEOUT
    while counter.value < target:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def concurrent_readers(
    path: Path, appends: int = 40, readers: int = 2, threads: int = 2, codec=None
) -> dict:
    """Reader processes (each with ``threads`` threads refreshing or reopening their own
    handle) plus one process whose threads share a single handle, while this process
    appends ``appends`` masks; every tenth append, a second writer must be refused.

    Counted, not timed: after each append the writer waits until the refreshing readers
    have listed the archive ``readers * threads + 1`` more times, so that at least one
    listing started after that commit (each thread can have one listing in flight). So
    every commit is seen by a reader (``lengths_seen``) whatever the machine's load.

    Returns:
        ``appended``, ``commits_seen`` (after how many of the appends some refreshing
        reader listed exactly the masks committed so far), ``opens``, ``refreshes``, ``rounds``,
        ``reads``, ``second_writer_tries`` / ``second_writer_refused``, ``problems``.
    """
    from medmask.errors import ArchiveLockedError

    first = 5
    make_archive(path, first, codec)
    q = FORK.Queue()
    rounds, stop = FORK.Value("q", 0), FORK.Event()
    procs = [
        FORK.Process(target=_reader, args=(str(path), threads, rounds, stop, q))
        for _ in range(readers)
    ]
    procs.append(FORK.Process(target=_shared_reader, args=(str(path), 4, stop, q)))
    for p in procs:
        p.start()
    problems: list[str] = []
    k = first
    tries = refused = 0
    in_flight = readers * threads
    try:
        with MaskArchive(path, "a") as ar:
            for _ in range(appends):
                ar.add(f"m{k}", mask(k))
                k += 1
                if k % 10 == 0:
                    tries += 1
                    try:
                        MaskArchive(path, "a").close()
                    except ArchiveLockedError:
                        refused += 1
                if not _wait_for(rounds, rounds.value + in_flight + 1):
                    problems.append(f"the readers listed nothing for {REPORT_TIMEOUT:.0f} s")
                    break
    finally:
        stop.set()
    results = [q.get(timeout=REPORT_TIMEOUT) for _ in procs]
    for p in procs:
        p.join()
    problems += [b for r in results for b in r["bad"]]
    try:
        assert_archive(path, range(k))
    except AssertionError as exc:
        problems.append(f"final: {exc}")
    lengths = set().union(*(r.get("lengths", set()) for r in results))
    return {
        "appended": k - first,
        "commits_seen": len(lengths & set(range(first + 1, k + 1))),
        "reader_processes": len(procs),
        "threads": readers * threads + 4,
        "opens": sum(r.get("opens", 0) for r in results),
        "refreshes": sum(r.get("refreshes", 0) for r in results),
        "rounds": sum(r.get("rounds", 0) for r in results),
        "reads": sum(r["reads"] for r in results),
        "second_writer_tries": tries,
        "second_writer_refused": refused,
        "problems": problems,
    }


# -- leaks: a DataLoader with worker processes over MaskArchiveDataset ---------------------------
def leak_run(
    archives: list[Path], items: int, workers: int = 2, epochs: int = 2, max_open: int = 4
) -> dict:
    """Iterate ``epochs`` epochs of ``items`` random items through a ``workers``-process
    DataLoader over ``MaskArchiveDataset(archives, max_open=max_open)`` (more archives than
    ``max_open``: the per-worker LRU closes and reopens files). Workers are new each epoch.
    Samples the open descriptors and RSS of this process and of the workers every few
    batches; returns the samples' summary."""
    import psutil
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from medmask_monai import MaskArchiveDataset

    me = psutil.Process()
    fds_before = me.num_fds()
    ds = MaskArchiveDataset([str(a) for a in archives], max_open=max_open)
    # (epoch, fraction done, own fds, worker fds, own rss, worker rss, most archives open in a worker)
    samples = []
    seen = 0
    t0 = time.perf_counter()
    for epoch in range(epochs):
        sampler = RandomSampler(
            ds, replacement=True, num_samples=items, generator=torch.Generator().manual_seed(epoch)
        )
        loader = DataLoader(ds, batch_size=8, sampler=sampler, num_workers=workers)
        n = len(loader)
        for b, batch in enumerate(loader):
            seen += len(batch["name"])
            if b % max(1, n // 20) == 0 or b == n - 1:
                kids = [c for c in me.children(recursive=True) if c.is_running()]
                try:
                    wf = sum(c.num_fds() for c in kids)
                    wr = sum(c.memory_info().rss for c in kids)
                    wa = max(
                        (sum(f.path.endswith(".mska") for f in c.open_files()) for c in kids),
                        default=0,
                    )
                except psutil.NoSuchProcess:
                    continue
                samples.append((epoch, b / n, me.num_fds(), wf, me.memory_info().rss, wr, wa))
        del loader, batch
    ds.close()
    import gc

    gc.collect()
    # the last epoch's workers exit on their own time (a loaded machine delays it): wait for
    # them, so that what is counted is what stays open, not what is still being torn down
    _gone, alive = psutil.wait_procs(me.children(recursive=True), timeout=REPORT_TIMEOUT)
    gc.collect()
    fds_after = me.num_fds()
    steady = [s for s in samples if s[0] > 0 or s[1] >= 0.25]  # after the warm-up
    first = [s for s in steady if s[0] == steady[0][0] and s[1] < 0.5] or steady[:1]
    last = [s for s in steady if s[0] == epochs - 1 and s[1] >= 0.5] or steady[-1:]
    return {
        "items": seen,
        "epochs": epochs,
        "workers": workers,
        "archives": len(archives),
        "max_open": max_open,
        "seconds": time.perf_counter() - t0,
        "own_fds_before": fds_before,
        "own_fds_after": fds_after,
        "own_fds_max": max(s[2] for s in samples),
        "worker_archive_fds_max": max(s[6] for s in samples),
        "own_archive_fds_after": sum(f.path.endswith(".mska") for f in me.open_files()),
        "worker_fds_min": min(s[3] for s in steady),
        "worker_fds_max": max(s[3] for s in steady),
        "worker_fds_start": max(s[3] for s in first),
        "worker_fds_end": max(s[3] for s in last),
        "own_rss_start": max(s[4] for s in first),
        "own_rss_end": max(s[4] for s in last),
        "worker_rss_start": max(s[5] for s in first),
        "worker_rss_end": max(s[5] for s in last),
        "peak_rss_total": max(s[4] + s[5] for s in samples),
        "samples": len(samples),
        "workers_left": len(alive),
    }


# -- writes that fail ------------------------------------------------------------------------------
def write_under_fsize_limit(path: str, mode: str, codec, limit: int, q) -> None:
    """Child process: with RLIMIT_FSIZE at ``limit`` bytes (SIGXFSZ ignored), save a
    ``.msk`` (``mode == "msk"``) or add masks in ``mode``; put ``"written"`` or the
    errno name (``"EFBIG"``) on ``q``."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        if mode == "msk":
            save_mask(noise(), path, codec=codec)
        else:
            with MaskArchive(path, mode, codec=codec) as ar:
                for j in range(50):
                    ar.add_segmask(noise(j), f"noise{j}")
        q.put("written")
    except OSError as exc:
        q.put(errno.errorcode.get(exc.errno, str(exc.errno)))


def _unchanged(path: Path, before: bytes, expect_ks, mode: str) -> list[str]:
    """The file reads as before (a version-2 archive may keep unreferenced tail bytes)."""
    problems = []
    now = path.read_bytes()
    if now != before and not (path.suffix == ".mska" and now[: len(before)] == before):
        problems.append(f"{path.name}: bytes changed")
    try:
        if mode == "msk":
            if load_mask(path) != mask(0):
                problems.append(f"{path.name}: mask differs")
        else:
            assert_archive(path, expect_ks)
    except (AssertionError, CorruptFileError) as exc:
        problems.append(f"{path.name}: {exc}")
    if temp_leftovers(path.parent):
        problems.append(f"{path.name}: temporary files left {temp_leftovers(path.parent)}")
    return problems


def fsize_limit_case(path: Path, mode: str, codec) -> tuple[str, bytes]:
    """Write ``path`` (a 3-mask archive, or one mask for ``mode == "msk"``), then append /
    replace / save it in a child whose RLIMIT_FSIZE is just above the file.

    Returns:
        ``(what the child reported, the file's bytes before)``; ``"EFBIG"`` is the expected report.
    """
    if mode == "msk":
        save_mask(mask(0), path, codec=codec)
    else:
        make_archive(path, 3, codec)
    before = path.read_bytes()
    q = FORK.Queue()
    p = FORK.Process(
        target=write_under_fsize_limit, args=(str(path), mode, codec, len(before) + 64, q)
    )
    p.start()
    p.join()
    return q.get(timeout=10), before


def fsize_limit_cases(folder: Path) -> dict:
    """RLIMIT_FSIZE just above the file (SIGXFSZ ignored) while appending / replacing /
    saving, both versions: EFBIG, file unchanged."""
    rows, problems = 0, []
    for codec in CODECS:
        for mode in ("a", "w", "msk"):
            d = Path(folder) / f"fsize-{mode}-{codec}"
            d.mkdir(parents=True)
            path = d / ("m.msk" if mode == "msk" else "a.mska")
            got, before = fsize_limit_case(path, mode, codec)
            if got != "EFBIG":
                problems.append(f"{mode}/{codec}: {got}")
            problems += _unchanged(path, before, range(3), mode)
            rows += 1
    return {"cases": rows, "problems": problems}


def tmpfs_full_cases(folder: Path) -> dict:
    """ENOSPC on a 512 KiB tmpfs (root only): appending until the disk is full, replacing,
    saving; completed appends kept, the failed ones leave nothing."""
    import errno
    import subprocess

    mnt = Path(folder) / "tmpfs"
    mnt.mkdir(parents=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode:
        return {"cases": 0, "skipped": r.stderr.decode().strip(), "problems": []}
    problems, cases, appended = [], 0, 0
    try:
        for codec in CODECS:
            d = mnt / f"v{1 if codec else 2}"
            d.mkdir()
            arch, single = d / "a.mska", d / "m.msk"
            make_archive(arch, 3, codec)
            save_mask(mask(0), single, codec=codec)
            filler = d / "filler"
            st = os.statvfs(d)
            with open(filler, "wb") as fh, contextlib.suppress(OSError):
                fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - 1024))
            done = []
            try:
                with MaskArchive(arch, "a") as ar:
                    for j in range(400):
                        ar.add_segmask(noise(j), f"noise{j}")
                        done.append(j)
                problems.append(f"v{codec}: the disk never filled")
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    problems.append(f"append: {exc}")
            cases += 1
            appended += len(done)
            with MaskArchive(arch) as ar:
                if ar.all_names() != [f"m{k}" for k in range(3)] + [f"noise{j}" for j in done]:
                    problems.append(f"v{codec}: completed appends not all kept")
            before_a, before_m = arch.read_bytes(), single.read_bytes()
            for what in ("w", "msk"):
                try:
                    if what == "msk":
                        save_mask(
                            SegmentationMask(
                                np.random.default_rng(1).random((60, 60, 60)) > 0.5, {"n": 1}
                            ),
                            single,
                            codec=codec,
                        )
                    else:
                        with MaskArchive(arch, "w", codec=codec) as ar:
                            for j in range(400):
                                ar.add_segmask(noise(j), f"noise{j}")
                    problems.append(f"{what}/{codec}: no error on a full disk")
                except OSError:
                    pass
                cases += 1
            if arch.read_bytes() != before_a or single.read_bytes() != before_m:
                problems.append(f"v{codec}: a failed write changed a file")
            if temp_leftovers(d):
                problems.append(f"v{codec}: temporary files left")
            filler.unlink()
            with MaskArchive(arch, "a") as ar:
                ar.add_segmask(mask(99), "m99")
            cases += 1
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
    return {"cases": cases, "appends_before_full": appended, "problems": problems}


def _as_nobody(fn, q) -> None:
    try:
        os.setgroups([])  # root's supplementary groups would grant group permissions
        os.setgid(65534)
        os.setuid(65534)
        fn()
        q.put("no error")
    except PermissionError:
        q.put("PermissionError")
    except BaseException as exc:  # noqa: BLE001
        q.put(f"{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def unprivileged_folder(prefix: str = "medmask-perm-"):
    """A fresh folder (mode 0755) that the user :func:`run_unprivileged` drops to can reach.

    pytest's ``tmp_path`` and ``tempfile.TemporaryDirectory`` live below folders of mode
    0700, where nobody is refused every path, so a permission test there passes whatever
    the code does. Removed (whatever the modes inside) at exit.
    """
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    try:
        yield d
    finally:
        for p in [d, *d.rglob("*")]:
            with contextlib.suppress(OSError):
                if p.is_dir():
                    p.chmod(0o755)
        shutil.rmtree(d, ignore_errors=True)


def run_unprivileged(fn) -> str:
    """Run ``fn`` without root rights (a forked child that drops to nobody, with no
    supplementary groups, when we are root). Give it paths in an
    :func:`unprivileged_folder`, and check with a call that must succeed (a read) that
    the folder is reachable.

    Returns:
        ``"no error"``, ``"PermissionError"`` or ``"<Error>: <message>"``.
    """
    if os.geteuid() != 0:
        try:
            fn()
        except PermissionError:
            return "PermissionError"
        return "no error"
    q = FORK.Queue()
    p = FORK.Process(target=_as_nobody, args=(fn, q))
    p.start()
    p.join()
    return q.get(timeout=10)


def _perm_action(what: str, d: Path, codec) -> None:
    if what == "save":
        save_mask(mask(1), d / "m.msk", codec=codec)
        return
    path = d / ("new.mska" if what == "create" else "a.mska")
    with MaskArchive(path, "w" if what == "replace" else "a", codec=codec) as ar:
        ar.add_segmask(mask(5), "m5")


def _read_both(arch: Path, single: Path) -> None:
    with MaskArchive(arch) as ar:
        ar.read_all_masks()
    load_mask(single)


def permission_cases(folder: Path) -> dict:
    """Append, replace, save and create in a read-only folder, as an unprivileged user.

    ``folder`` must be reachable by that user (:func:`unprivileged_folder`): a read of
    both files as that user must succeed, or the case counts as a problem (every refusal
    would otherwise come from the path, not from the permissions under test).
    """
    problems, cases = [], 0
    for codec in CODECS:
        d = Path(folder) / f"ro-{codec}"
        d.mkdir(parents=True)
        arch, single = d / "a.mska", d / "m.msk"
        make_archive(arch, 2, codec)
        save_mask(mask(0), single, codec=codec)
        before_a, before_m = arch.read_bytes(), single.read_bytes()
        Path(folder).chmod(0o755)
        d.chmod(0o555)
        arch.chmod(0o444)
        single.chmod(0o444)

        got = run_unprivileged(functools.partial(_read_both, arch, single))
        if got != "no error":
            problems.append(f"read/{codec}: {got} (the folder is not reachable: no case counts)")
        cases += 1
        for what in ("append", "replace", "save", "create"):
            got = run_unprivileged(functools.partial(_perm_action, what, d, codec))
            if got != "PermissionError":
                problems.append(f"{what}/{codec}: {got}")
            cases += 1
        d.chmod(0o755)
        if arch.read_bytes() != before_a or single.read_bytes() != before_m:
            problems.append(f"{codec}: a refused write changed a file")
        if sorted(p.name for p in d.iterdir()) != ["a.mska", "m.msk"]:
            problems.append(f"{codec}: files left behind")
    return {"cases": cases, "problems": problems}


#: The ``os`` calls a commit goes through, where :func:`io_error_at` injects its error.
IO_CALLS = ("pwrite", "write", "fsync", "replace", "link", "ftruncate")


class InjectedIOError(OSError):
    """The EIO that :func:`io_error_at` raises (an ``OSError``, as a failing disk would)."""


@contextlib.contextmanager
def io_error_at(n: int, names: tuple[str, ...] = IO_CALLS):
    """The shared I/O-fault injector: inside the block, the ``n``-th call (counted over all
    of ``os.<names>``) raises :class:`InjectedIOError` (``EIO``); every other call goes
    through. Yields the call counter (``{"k": calls so far}``). The real functions are
    back when the block exits, however it exits."""
    real = {name: getattr(os, name) for name in names}
    calls = {"k": 0}

    def wrap(fn):
        def f(*args, **kw):
            calls["k"] += 1
            if calls["k"] == n:
                raise InjectedIOError(errno.EIO, "injected I/O error")
            return fn(*args, **kw)

        return f

    try:
        for name in names:
            setattr(os, name, wrap(real[name]))
        yield calls
    finally:
        for name in names:
            setattr(os, name, real[name])


def io_error_cases(folder: Path) -> dict:
    """An EIO injected at the n-th write/fsync/rename/link/truncate of one append, for
    every n, both versions: the append happened entirely or not at all, the handle agrees
    with the file, and it appends fine afterwards."""
    cases, committed, problems = 0, 0, []
    Path(folder).mkdir(parents=True, exist_ok=True)
    for codec in CODECS:
        path = Path(folder) / f"eio-{codec}.mska"
        make_archive(path, 2, codec)
        n = 0
        while n < 50:
            n += 1
            with MaskArchive(path, "a") as ar:
                stored = len(ar)
                try:
                    with io_error_at(n):
                        ar.add_segmask(mask(stored), f"m{stored}")
                    failed = False
                except InjectedIOError:
                    failed = True
                with MaskArchive(path) as fresh:
                    on_disk = fresh.all_names()
                if on_disk != ar.all_names():
                    problems.append(f"{codec} step {n}: handle and file disagree")
                if on_disk not in (
                    [f"m{k}" for k in range(stored)],
                    [f"m{k}" for k in range(stored + 1)],
                ):
                    problems.append(f"{codec} step {n}: unexpected masks {on_disk[-3:]}")
                cases += failed
                committed += failed and len(on_disk) > stored
                if not failed:
                    break
                if f"m{stored}" not in ar:
                    ar.add_segmask(mask(stored), f"m{stored}")
            try:
                assert_archive(path, range(len(on_disk) if not failed else stored + 1))
            except AssertionError as exc:
                problems.append(f"{codec} step {n}: {exc}")
    return {"cases": cases, "visible_after_failed_fsync": committed, "problems": problems}
