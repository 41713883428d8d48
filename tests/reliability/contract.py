"""The reader contract, and a sandboxed worker process that applies it to many files.

For any file, a reader must either raise :class:`~medmask.errors.CorruptFileError`
(including :class:`~medmask.errors.UnsupportedFormatError`), at open or when the damaged
mask is read, or :class:`~medmask.errors.ForeignFileError` at open (damage made its first
bytes another format's, e.g. a gzip magic), or return exactly what was stored. Nothing else may escape (no
``MaskValidationError``, ``MemoryError``, ``struct.error``, ``RecursionError``...), the
interpreter must not die, each file must be done within a time bound, and the memory a
read allocates must stay bounded (measured with ``tracemalloc``, capped hard with
``RLIMIT_AS``).

Statuses of one checked file:

``rejected``   CorruptFileError (or ForeignFileError) when opening (or reading a ``.msk``)
``partial``    the archive opened; some masks raised CorruptFileError, the others read back equal
``intact``     everything read back equal to the original
``older``      (v2 archive) the previous commit was read: a prefix of the masks, all equal
``different``  something read back differently (inherent to version 1 without checksums, or a
               well-formed hostile file; a failure for a corrupted version-2 file)
``bad-exception``  another exception escaped (failure)
``hang``       no answer within the time bound (failure)
``crash``      the worker process died (failure)
``memory``     the traced peak exceeded the bound (failure)
"""

from __future__ import annotations

import os
import pickle
import resource
import select
import struct
import subprocess
import sys
import time
import traceback
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TESTS_DIR = Path(__file__).resolve().parents[1]
REPO = TESTS_DIR.parent

#: Per-file traced-memory bound (the samples are ~5,500 voxels: any read of a corrupted
#: sample that honestly follows its declarations stays far below this).
MEMORY_BOUND = 64 << 20
#: Hard address-space cap of the worker process.
ADDRESS_SPACE_CAP = 3 << 30
#: Seconds one file may take before the worker is declared hung.
TIME_BOUND = 20.0

OK_STATUSES = {"rejected", "partial", "intact", "older"}
FAIL_STATUSES = {"bad-exception", "hang", "crash", "memory"}
#: Outcomes in which the file opened and every mask read (a case with ``must_read`` needs one).
READ_STATUSES = {"intact", "different"}
#: How :meth:`Sweep.by_family` groups the statuses: refused at open, refused in part (some
#: masks, or a previous commit), read whole, and contract failures.
OUTCOME_OF = {
    "rejected": "rejected",
    "partial": "partly rejected",
    "older": "partly rejected",
    "intact": "read",
    "different": "read",
    **{st: "failed" for st in FAIL_STATUSES},
}


@dataclass
class Result:
    status: str
    detail: str = ""
    seconds: float = 0.0
    peak: int = 0
    rejected_at: str = ""  # "open" or "read"
    failed: int = 0  # masks of an opened archive that raised CorruptFileError
    messages: list[str] = field(default_factory=list)


def _space_equal(a, b) -> bool:
    return tuple(a.shape) == tuple(b.shape) and all(
        np.array_equal(np.asarray(getattr(a, f)), np.asarray(getattr(b, f)))
        for f in ("origin", "spacing", "x_orientation", "y_orientation", "z_orientation")
    )


def _same(array, mapping, exp_array, exp_mapping) -> bool:
    return (
        array.dtype == exp_array.dtype
        and array.shape == exp_array.shape
        and np.array_equal(array, exp_array)
        and dict(mapping) == dict(exp_mapping)
    )


def read_everything(path: str | os.PathLike) -> dict:
    """Read every mask of a file the way users do (every public read path), in this
    process: ``{name: SegmentationMask}``. Raises what the readers raise."""
    from medmask import MaskArchive, load_mask

    path = Path(path)
    if path.suffix == ".msk":
        return {"mask": load_mask(path)}
    with MaskArchive(path) as ar:
        out = {}
        for i, name in enumerate(ar.all_names()):
            out[name] = ar[i]
            ar.read_cropped(name)
            ar.info(name)
        return out


def check_path(path: str, kind: str, expected: list, space) -> Result:
    """Apply every reading entry point to ``path`` and classify the outcome."""
    from medmask import MaskArchive, MaskFile, load_mask
    from medmask.errors import CorruptFileError, ForeignFileError

    rejected = (CorruptFileError, ForeignFileError)  # at open: damaged, or now another format
    msgs: list[str] = []
    if not kind.startswith("mska"):
        try:
            sm = load_mask(path)
        except rejected as exc:
            return Result("rejected", rejected_at="open", messages=[str(exc)[:300]])
        _, exp_arr, exp_map = expected[0]
        same = _same(sm.data, sm.mapping.to_dict(), exp_arr, exp_map) and _space_equal(
            sm.space, space
        )
        try:
            crop, box, mapping, sp = MaskFile(path).read_cropped()
        except CorruptFileError as exc:  # load succeeded: cropped read must agree
            return Result("bad-exception", f"read_cropped raised after load succeeded: {exc}")
        full = np.zeros(tuple(sp.shape), crop.dtype)
        if box is not None:
            full[box[0] : box[1], box[2] : box[3], box[4] : box[5]] = crop
        if not (np.array_equal(full, sm.data) and mapping == sm.mapping):
            return Result("bad-exception", "read_cropped disagrees with load_mask")
        return Result("intact" if same else "different", messages=msgs)

    try:
        ar = MaskArchive(path)
    except rejected as exc:
        res = Result("rejected", rejected_at="open", messages=[str(exc)[:300]])
        # opening to append must refuse the same file and leave it untouched
        before = Path(path).read_bytes()
        try:
            MaskArchive(path, "a").close()
        except rejected:
            pass
        else:
            res.messages.append("mode 'a' opened a file mode 'r' rejects")
        if Path(path).read_bytes() != before:
            return Result("bad-exception", "mode 'a' modified a corrupt file it could not open")
        return res
    with ar:
        names = ar.all_names()
        exp_names = [n for n, _, _ in expected]
        differs = False
        if names != exp_names[: len(names)]:
            differs = True
        if ar.space is not None and not _space_equal(ar.space, space):
            differs = True
        failed = 0
        for name in names:
            try:
                sm = ar[name]
                crop, box = ar.read_cropped(name)
                info = ar.info(name)
                _ = ar.infos()
            except CorruptFileError as exc:
                failed += 1
                msgs.append(str(exc)[:300])
                continue
            full = np.zeros(tuple(sm.shape), crop.dtype)
            if box is not None:
                full[box[0] : box[1], box[2] : box[3], box[4] : box[5]] = crop
            if not np.array_equal(full, sm.data) or info.mapping != sm.mapping.to_dict():
                return Result(
                    "bad-exception", f"read_cropped/info disagree with load_segmask for {name!r}"
                )
            if name in exp_names:
                _, exp_arr, exp_map = expected[exp_names.index(name)]
                if not _same(sm.data, sm.mapping.to_dict(), exp_arr, exp_map):
                    differs = True
            else:
                differs = True
        if differs:
            return Result("different", failed=failed, messages=msgs)
        if failed:
            return Result("partial", rejected_at="read", failed=failed, messages=msgs)
        if len(names) < len(exp_names):
            return Result("older", messages=msgs)
        return Result("intact", messages=msgs)


def check_bytes(data: bytes, kind: str, expected: list, space, workdir: str) -> Result:
    """Write ``data`` to a file and check it, measuring time and traced peak memory."""
    suffix = ".mska" if kind.startswith("mska") else ".msk"
    path = os.path.join(workdir, "case" + suffix)
    with open(path, "wb") as fh:
        fh.write(data)
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    try:
        res = check_path(path, kind, expected, space)
    except BaseException as exc:  # noqa: BLE001 - anything else is a contract violation
        tb = traceback.format_exc(limit=-4)
        res = Result("bad-exception", f"{type(exc).__name__}: {str(exc)[:300]}\n{tb}")
    res.seconds = time.perf_counter() - t0
    res.peak = max(0, tracemalloc.get_traced_memory()[1] - base)
    if res.peak > MEMORY_BOUND and res.status in OK_STATUSES | {"different"}:
        res.detail = f"traced peak {res.peak} bytes > {MEMORY_BOUND} ({res.status})"
        res.status = "memory"
    return res


# --------------------------------------------------------------------------------------------
# worker process
# --------------------------------------------------------------------------------------------
def _send(fh, obj) -> None:
    raw = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    fh.write(struct.pack("<Q", len(raw)) + raw)
    fh.flush()


def _recv_exact(fh, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = fh.read(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def _recv(fh):
    (n,) = struct.unpack("<Q", _recv_exact(fh, 8))
    return pickle.loads(_recv_exact(fh, n))


def worker_main() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.setrecursionlimit(10_000)
    from . import samples as S

    samples = S.build_samples()
    tracemalloc.start(1)
    import tempfile

    workdir = tempfile.mkdtemp(
        prefix="medmask-contract-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the protocol
    try:
        while True:
            try:
                sample, kind, data = _recv(inp)
            except EOFError:
                break
            s = samples[sample]
            _send(out, check_bytes(data, kind, s.expected, s.space, workdir))
    finally:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


class Worker:
    """A child process running :func:`worker_main`; restarted after a hang or a crash."""

    def __init__(self, timeout: float = TIME_BOUND) -> None:
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.max_rss_kib = 0

    def _start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS_DIR), str(REPO), env.get("PYTHONPATH", "")])
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from reliability.contract import worker_main; worker_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=str(REPO),
        )

    def check(self, sample: str, kind: str, data: bytes) -> Result:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc and self.proc.stdin and self.proc.stdout
        t0 = time.perf_counter()
        try:
            _send(self.proc.stdin, (sample, kind, data))
        except BrokenPipeError:
            return self._died(t0)
        fd = self.proc.stdout.fileno()
        deadline = t0 + self.timeout + 30.0  # the first call also imports and builds samples
        header = b""
        while len(header) < 8:
            left = deadline - time.perf_counter()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            if not ready:
                self._kill()
                return Result(
                    "hang", f"no answer within {self.timeout} s", seconds=time.perf_counter() - t0
                )
            chunk = os.read(fd, 8 - len(header))
            if not chunk:
                return self._died(t0)
            header += chunk
        (n,) = struct.unpack("<Q", header)
        body = b""
        while len(body) < n:
            chunk = os.read(fd, n - len(body))
            if not chunk:
                return self._died(t0)
            body += chunk
        res = pickle.loads(body)
        if res.seconds > self.timeout:
            res.detail = f"took {res.seconds:.1f} s > {self.timeout} s ({res.status})"
            res.status = "hang"
        return res

    def _died(self, t0: float) -> Result:
        assert self.proc
        rc = self.proc.wait()
        self.proc = None
        self.restarts += 1
        return Result("crash", f"worker exited with {rc}", seconds=time.perf_counter() - t0)

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self.restarts += 1

    def close(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            self.max_rss_kib = max(self.max_rss_kib, usage.ru_maxrss)
            self.proc = None

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            self._kill()
        else:
            self.close()


def verdict(case, res: Result) -> str | None:
    """Why ``res`` breaks the contract for ``case`` (a :class:`~reliability.mutators.Case`), or None."""
    if res.status in FAIL_STATUSES:
        return f"{res.status}: {res.detail}"
    if res.status == "different" and not case.forged and case.kind.endswith("2"):
        return "a corrupted version-2 file read back different data (checksums missed it)"
    if case.must_reject and res.status != "rejected" and not res.failed:
        return f"invalid content was accepted ({res.status})"
    if case.family == "intact" and res.status != "intact":
        return f"an intact sample did not read back exactly ({res.status})"
    if case.must_read and res.status not in READ_STATUSES:
        return f"a file the spec allows was not read ({res.status}: {res.messages[:1]})"
    return None


# --------------------------------------------------------------------------------------------
# a whole sweep
# --------------------------------------------------------------------------------------------
@dataclass
class Sweep:
    """What a sweep tried and what happened."""

    counts: dict = field(default_factory=dict)  # (kind, family, status) -> n
    #: (kind, family) -> {"must_read", "must_read_ok", "must_reject", "must_reject_ok"}
    duties: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)  # (sample, family, label, why)
    total: int = 0
    max_seconds: float = 0.0
    max_seconds_case: str = ""
    max_peak: int = 0
    max_peak_case: str = ""
    worker_restarts: int = 0
    worker_max_rss_kib: int = 0
    wall: float = 0.0

    def record(self, case, res: Result) -> None:
        """Count one checked case (its status and whether it met its must-read/reject duty)."""
        key = (case.kind, case.family, res.status)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.total += 1
        d = self.duties.setdefault((case.kind, case.family), dict.fromkeys(DUTIES, 0))
        if case.must_read:
            d["must_read"] += 1
            d["must_read_ok"] += res.status in READ_STATUSES
        if case.must_reject:
            d["must_reject"] += 1
            d["must_reject_ok"] += res.status == "rejected" or res.failed > 0

    def by_family(self) -> dict[str, dict[str, int]]:
        """Per family (all kinds together): how many variants were ``rejected`` at open,
        ``partly rejected`` (damaged masks refused, or the previous commit read), ``read``
        whole, ``failed`` (broke the contract), and the must-read / must-reject duties
        with how many met them."""
        out: dict[str, dict[str, int]] = {}
        for (_kind, fam, status), n in self.counts.items():
            row = out.setdefault(fam, {**dict.fromkeys(OUTCOMES, 0), **dict.fromkeys(DUTIES, 0)})
            row[OUTCOME_OF[status]] += n
        for (_kind, fam), d in self.duties.items():
            for k, v in d.items():
                out[fam][k] += v
        return out


OUTCOMES = ("rejected", "partly rejected", "read", "failed")
DUTIES = ("must_read", "must_read_ok", "must_reject", "must_reject_ok")


def run_sweep(cases, workers: int = 1, timeout: float = TIME_BOUND) -> Sweep:
    """Check every case in ``workers`` sandboxed worker processes."""
    import queue
    import threading

    sweep = Sweep()
    lock = threading.Lock()
    todo: queue.Queue = queue.Queue(maxsize=256)
    t0 = time.perf_counter()

    def run() -> None:
        with Worker(timeout) as w:
            while True:
                case = todo.get()
                if case is None:
                    break
                res = w.check(case.sample, case.kind, case.data)
                why = verdict(case, res)
                with lock:
                    sweep.record(case, res)
                    where = f"{case.sample}/{case.family}/{case.label}"
                    if res.seconds > sweep.max_seconds:
                        sweep.max_seconds, sweep.max_seconds_case = res.seconds, where
                    if res.peak > sweep.max_peak:
                        sweep.max_peak, sweep.max_peak_case = res.peak, where
                    if why:
                        sweep.failures.append((case.sample, case.family, case.label, why))
            w.close()
        with lock:
            sweep.worker_restarts += w.restarts
            sweep.worker_max_rss_kib = max(sweep.worker_max_rss_kib, w.max_rss_kib)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for case in cases:
        todo.put(case)
    for _ in threads:
        todo.put(None)
    for t in threads:
        t.join()
    sweep.wall = time.perf_counter() - t0
    return sweep
