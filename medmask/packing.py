"""Packing whole datasets: find the cases, pack each into one archive, resumably, in a local
process pool or on a Dask cluster.

A *case* is a folder that directly holds NIfTI masks (:func:`find_cases`); it becomes
``DEST/<case name>.mska`` (:func:`case_name`). :func:`pack_case` packs one case,
:func:`pack_tree` packs every case of a dataset and returns a :class:`PackReport`:

* **resumable**: a case whose archive already exists, is newer than every file of the case,
  verifies (every checksum, every mask decoded) and holds the same names is skipped
  (:func:`already_packed`); ``force=True`` repacks;
* **whole outputs**: archives are written to a temporary file and renamed into place (local
  paths) or uploaded whole (URLs), so a crash or a killed worker never leaves a partial
  archive under its final name; temporary files of an interrupted case are removed at the
  end of the run;
* **one bad case does not stop the others**: it is reported as failed, with the reason;
* **engines**: one process (``workers=1``), a local process pool (``workers=N``), or Dask
  (``client=``: a :class:`dask.distributed.Client`; each case is one task, and a worker that
  dies mid-case has its task rescheduled on another worker by Dask);
* **URLs**: ``root`` and ``dest`` may be fsspec URLs (``s3://bucket/raw/`` ->
  ``s3://bucket/packed/``). Cases are listed with fsspec; a worker downloads a case to a local
  temporary folder, packs it there and uploads the archive whole
  (:func:`medmask.io.remote.upload`).

Example:
    >>> from medmask.packing import pack_tree                         # doctest: +SKIP
    >>> report = pack_tree("Totalsegmentator_dataset/", "packed/", workers=8)
    >>> print(report.summary())                                        # doctest: +SKIP
    >>> from dask.distributed import Client                            # doctest: +SKIP
    >>> report = pack_tree("s3://b/raw/", "s3://b/packed/", client=Client("tcp://host:8786"))
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import MaskValidationError, MedMaskError
from .io.names import is_url

__all__ = [
    "CaseResult",
    "PackReport",
    "find_cases",
    "case_name",
    "plan_outputs",
    "pack_case",
    "already_packed",
    "pack_tree",
    "dask_client",
]

#: File name endings of NIfTI masks.
_NIFTI = (".nii.gz", ".nii")

Progress = Callable[[Iterable], Iterable]


# -- results ----------------------------------------------------------------------------------
@dataclass
class CaseResult:
    """What happened to one case.

    Attributes:
        case: The case folder (path or URL).
        out: The archive (path or URL).
        status: ``"packed"``, ``"skipped"`` (already packed and verified) or ``"failed"``.
        masks: Masks written (0 unless packed).
        bytes_in: Bytes of the case's mask files (0 unless packed).
        bytes_out: Bytes of the archive written (0 unless packed).
        seconds: Time spent on the case (in the worker).
        notes: Things worth telling (e.g. masks resampled onto the archive's grid).
        error: One line saying what went wrong (``status == "failed"``), naming the case.
        traceback: The full Python traceback of that failure (for ``--debug``), when there is
            one.
    """

    case: str
    out: str
    status: str
    masks: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    traceback: str | None = None


@dataclass
class PackReport:
    """The outcome of :func:`pack_tree`.

    Attributes:
        root: The dataset root.
        dest: The output folder.
        results: One :class:`CaseResult` per case, in case order.
        seconds: Wall time of the whole run.
        engine: ``"1 process"``, ``"N processes"`` or ``"dask <scheduler address>"``.
    """

    root: str
    dest: str
    results: list[CaseResult]
    seconds: float
    engine: str

    @property
    def packed(self) -> list[CaseResult]:
        """Cases packed in this run."""
        return [r for r in self.results if r.status == "packed"]

    @property
    def skipped(self) -> list[CaseResult]:
        """Cases skipped: already packed and verified."""
        return [r for r in self.results if r.status == "skipped"]

    @property
    def failed(self) -> list[CaseResult]:
        """Cases that failed (see their ``error``)."""
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        """Whether no case failed."""
        return not self.failed

    def summary(self) -> str:
        """One line: counts, masks, bytes before and after, time, destination."""
        packed = self.packed
        n = len(self.results)
        total_in = sum(r.bytes_in for r in packed)
        total_out = sum(r.bytes_out for r in packed)
        ratio = f", {total_in / total_out:.1f}x smaller" if total_out else ""
        return (
            f"{n} case{'' if n == 1 else 's'}: {len(packed)} packed "
            f"({sum(r.masks for r in packed)} masks, {total_in:,} -> {total_out:,} bytes{ratio}), "
            f"{len(self.skipped)} already packed and verified, {len(self.failed)} failed, "
            f"in {self.seconds:.1f} s on {self.engine} -> {self.dest}"
        )


# -- where things are -------------------------------------------------------------------------
def _fs(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    """``(filesystem, path)`` of a URL; medmask's own option keys are left out."""
    try:
        from fsspec.core import url_to_fs
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('URLs need fsspec: pip install "medmask[remote]"') from None
    opts = {k: v for k, v in (storage_options or {}).items() if not k.startswith("medmask_")}
    return url_to_fs(url, **opts)


def _join(base: str | os.PathLike, name: str) -> str | Path:
    if is_url(base):
        return f"{str(base).rstrip('/')}/{name}"
    return Path(base) / name


def _is_mask_name(name: str) -> bool:
    return name.endswith(_NIFTI) and not name.startswith(".")


def _has_nifti(d: Path) -> bool:
    try:
        return any(_is_mask_name(p.name) and p.is_file() for p in d.iterdir())
    except OSError:
        return False


def find_cases(
    root: str | os.PathLike, *, storage_options: Mapping[str, Any] | None = None
) -> list[Path] | list[str]:
    """The case folders of a dataset.

    A case is a folder that directly holds NIfTI masks. In TotalSegmentator's layout
    (``CASE/ct.nii.gz`` + ``CASE/segmentations/<organ>.nii.gz``) the ``segmentations``
    folder is the case and the image beside it is not a mask. A ``root`` that directly holds
    masks is one case. Hidden folders and files are skipped.

    Args:
        root: The dataset root, or one case folder: a local path or an fsspec URL
            (``s3://bucket/raw/``).
        storage_options: fsspec options for a URL.

    Returns:
        The case folders, sorted: :class:`~pathlib.Path` objects for a local root, URLs for
        a URL root.

    Raises:
        FileNotFoundError: A local ``root`` that does not exist.
        RemoteReadError: A URL root that cannot be listed.
    """
    if is_url(root):
        return _find_url_cases(str(root), storage_options)
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder")

    def is_case(d: Path) -> bool:
        return _has_nifti(d) and not (d / "segmentations").is_dir()

    if is_case(root):
        return [root]
    found = []
    for dirpath, dirnames, _files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        d = Path(dirpath)
        if d != root and is_case(d):
            found.append(d)
    return sorted(found)


def _url_key(url: str) -> str:
    """A URL without its scheme and outer slashes, for comparing URL paths
    (``memory://x/a/`` and ``memory:///x/a`` are the same folder)."""
    return str(url).split("://", 1)[-1].strip("/")


def _find_url_cases(root: str, storage_options: Mapping[str, Any] | None) -> list[str]:
    from .io.remote import list_files

    root_key = _url_key(root)
    files = list_files(root, _NIFTI, storage_options=storage_options)
    folders: dict[str, list[str]] = {}
    for url in files:
        folder, name = url.rsplit("/", 1)
        rel = _url_key(folder)[len(root_key) :].strip("/")
        if name.startswith(".") or any(p.startswith(".") for p in rel.split("/") if p):
            continue
        folders.setdefault(folder, []).append(url)
    with_segmentations = {f.rsplit("/", 1)[0] for f in folders if f.endswith("/segmentations")}
    return sorted(f for f in folders if f not in with_segmentations)


def case_name(root: str | os.PathLike, case: str | os.PathLike) -> str:
    """The archive name (without ``.mska``) of a case: its path below ``root``, made safe.

    ``ROOT/s0001/segmentations`` -> ``s0001``; ``ROOT/site/s0001`` -> ``site__s0001``;
    a root that is itself a case is named after its folder (or the folder above a
    ``segmentations`` folder). Works on URLs the same way.

    Args:
        root: The dataset root given to :func:`find_cases`.
        case: One of the cases it returned.

    Returns:
        A safe file name (no separators, no ``..``; see
        :func:`medmask.conversions.names.safe_filename`).
    """
    from .conversions.names import safe_filename

    if is_url(root) or is_url(case):
        r, c = _url_key(root), _url_key(case)
        if c == r:
            parts = c.split("/")
            parts = [parts[-2] if parts[-1] == "segmentations" and len(parts) > 1 else parts[-1]]
        else:
            rel = c[len(r) :].strip("/") if c.startswith(r) else posixpath.basename(c)
            parts = [p for p in rel.split("/") if p and p != "segmentations"] or [
                posixpath.basename(c)
            ]
        return safe_filename("__".join(parts))
    root, case = Path(root), Path(case)
    if case == root:
        full = case.resolve()
        parts = [full.parent.name if full.name == "segmentations" else full.name]
    else:
        parts = [p for p in case.relative_to(root).parts if p != "segmentations"]
        parts = parts or [case.name]
    return safe_filename("__".join(parts))


def plan_outputs(
    root: str | os.PathLike, dest: str | os.PathLike, cases: Sequence[str | os.PathLike]
) -> list[tuple[str | Path, str | Path]]:
    """Pair every case with its archive: ``DEST/<case name>.mska``.

    Names that collide once made safe (``a b`` and ``a_b``) get ``-2``, ``-3`` ... suffixes,
    in case order, so that two cases never write the same archive.

    Args:
        root: The dataset root.
        dest: The output folder (path or URL).
        cases: From :func:`find_cases`.

    Returns:
        ``[(case, archive), ...]`` in case order.
    """
    from .conversions.names import safe_filename

    taken: set[str] = set()
    return [(c, _join(dest, f"{safe_filename(case_name(root, c), taken)}.mska")) for c in cases]


# -- one case ---------------------------------------------------------------------------------
def _case_files(
    case: str | os.PathLike, storage_options: Mapping[str, Any] | None
) -> list[tuple[str, int, float | None]]:
    """``[(name or URL, size, modification time or None), ...]`` of a case's mask files."""
    if is_url(case):
        fs, path = _fs(str(case), storage_options)
        out = []
        for e in fs.ls(path.rstrip("/"), detail=True):
            name = posixpath.basename(e["name"].rstrip("/"))
            if e.get("type") == "directory" or not _is_mask_name(name):
                continue
            out.append((fs.unstrip_protocol(e["name"]), int(e.get("size") or 0), _mtime(e)))
        return sorted(out)
    from .conversions.nifti import nifti_files

    files = nifti_files(case)
    stats = [f.stat() for f in files]
    return [(str(f), s.st_size, s.st_mtime) for f, s in zip(files, stats)]


def _mtime(info: Mapping[str, Any]) -> float | None:
    """A modification time from an fsspec ``info`` entry, as seconds since the epoch."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        v = info.get(key)
        if v is None:
            continue
        if hasattr(v, "timestamp"):
            return float(v.timestamp())
        try:
            return float(v)
        except (TypeError, ValueError):
            with contextlib.suppress(ValueError):
                from datetime import datetime

                return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()
    return None


def _out_info(
    out: str | os.PathLike, storage_options: Mapping[str, Any] | None
) -> tuple[int, float | None] | None:
    """``(size, mtime)`` of an output, or ``None`` when there is none."""
    if is_url(out):
        fs, path = _fs(str(out), storage_options)
        fs.invalidate_cache(path)
        try:
            info = fs.info(path)
        except FileNotFoundError:
            return None
        if info.get("type") == "directory":
            return None
        return int(info.get("size") or 0), _mtime(info)
    p = Path(out)
    if not p.is_file():
        return None
    st = p.stat()
    return st.st_size, st.st_mtime


def _verify_names(archive: str | os.PathLike, names: list[str]) -> bool:
    """Whether a local archive holds exactly ``names``, and every mask checks and decodes."""
    from .storage import MaskArchive

    with MaskArchive(archive) as ar:
        if ar.all_names() != names:
            return False
        for i in range(len(ar)):
            ar.read_cropped(i)  # the blob's CRC32 and a full decode
            ar.info(i)
    return True


def already_packed(
    case: str | os.PathLike,
    out: str | os.PathLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> bool:
    """Whether ``out`` is a finished archive of ``case`` (the resumability check).

    True when ``out`` exists, is at least as new as every mask file of the case (where the
    store reports modification times), verifies (every checksum, every mask decoded), and
    holds one mask per file, named after the files, in order.

    Args:
        case: The case folder (path or URL).
        out: The archive (path or URL; a URL archive is fetched to check it: archives are
            small).
        storage_options: fsspec options for URLs.

    Returns:
        ``True`` when the case can be skipped; ``False`` on any doubt (missing, older,
        damaged, different names, unreadable).
    """
    from .conversions.names import strip_suffix

    try:
        files = _case_files(case, storage_options)
        have = _out_info(out, storage_options)
        if not files or have is None:
            return False
        newest = [t for _f, _s, t in files if t is not None]
        if have[1] is not None and newest and have[1] < max(newest):
            return False
        names = [strip_suffix(posixpath.basename(str(f))) for f, _s, _t in files]
        if not is_url(out):
            return _verify_names(out, names)
        from .io.remote import download

        with tempfile.TemporaryDirectory(prefix="medmask-verify-") as tmp:
            local = download(str(out), Path(tmp) / "archive.mska", storage_options=storage_options)
            return _verify_names(local, names)
    except (MedMaskError, OSError, ValueError, KeyError):
        return False


def pack_case(
    case: str | os.PathLike,
    out: str | os.PathLike,
    *,
    codec: str | None = None,
    resample: bool = False,
    allow_float: bool = False,
    force: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> CaseResult:
    """Pack one case folder into one archive, unless it is already packed and verified.

    The archive appears whole or not at all: a local one is written to a temporary sibling
    and renamed into place; a URL one is packed in a local temporary folder and uploaded
    whole. A URL case is downloaded to a local temporary folder first.

    Args:
        case: The case folder (path or URL) holding ``<mask name>.nii.gz`` files.
        out: The ``.mska`` to write (path or URL).
        codec: ``None`` (format version 2) or ``"zstd"`` (version 1, for medmask 0.1.x).
        resample: Resample masks on another grid onto the first file's grid instead of
            failing (each one is named in ``notes``).
        allow_float: Accept float files whose values are whole numbers.
        force: Pack even when :func:`already_packed` says the archive is finished.
        storage_options: fsspec options for URLs.

    Returns:
        A :class:`CaseResult` with status ``"packed"`` or ``"skipped"``.

    Raises:
        MaskValidationError: A mask that cannot be packed (non-binary, float, 4-D,
            unreadable), or no masks in the folder.
        SpaceMismatchError: Masks on different grids (and not ``resample``).
        OSError: The case cannot be read or the archive cannot be written.
        RemoteReadError: A URL that stays unreadable / unwritable after retries.
    """
    t0 = time.perf_counter()
    case_s, out_s = str(case), str(out)
    if not out_s.endswith(".mska"):
        raise MaskValidationError(f"{out_s}: a case packs into an archive; name it *.mska")
    if not force and already_packed(case, out, storage_options=storage_options):
        return CaseResult(case_s, out_s, "skipped", seconds=time.perf_counter() - t0)
    with contextlib.ExitStack() as stack:
        if is_url(case) or is_url(out):
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="medmask-case-")))
        if is_url(case):
            from concurrent.futures import ThreadPoolExecutor

            from .io.remote import download

            local_case = tmp / "case"
            local_case.mkdir()
            urls = [url for url, _size, _t in _case_files(case, storage_options)]
            with ThreadPoolExecutor(max_workers=8) as pool:  # a few requests in flight
                list(
                    pool.map(
                        lambda u: download(
                            u, local_case / posixpath.basename(u), storage_options=storage_options
                        ),
                        urls,
                    )
                )
        else:
            local_case = Path(case)
        local_out = tmp / "archive.mska" if is_url(out) else Path(out)
        names, notes = _pack_folder(local_case, local_out, codec, resample, allow_float)
        bytes_in = sum(f.stat().st_size for f in _nifti_files(local_case))
        bytes_out = local_out.stat().st_size
        if is_url(out):
            from .io.remote import upload

            upload(local_out, out_s, storage_options=storage_options)
    return CaseResult(
        case_s,
        out_s,
        "packed",
        masks=len(names),
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        seconds=time.perf_counter() - t0,
        notes=notes,
    )


def _nifti_files(folder: Path) -> list[Path]:
    from .conversions.nifti import nifti_files

    return nifti_files(folder)


def _pack_folder(
    folder: Path, out: Path, codec: str | None, resample: bool, allow_float: bool
) -> tuple[list[str], list[str]]:
    """``folder_to_archive``, with the resampling warnings collected as notes."""
    from .conversions.nifti import MaskResampledWarning, folder_to_archive

    if out.parent != Path(""):
        out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MaskResampledWarning)
        names = folder_to_archive(
            folder, out, codec=codec, resample=resample, allow_float=allow_float
        )
    notes = [str(w.message) for w in caught if issubclass(w.category, MaskResampledWarning)]
    return names, notes


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, KeyError) and not isinstance(exc, MedMaskError):
        text = text.strip("'\"")
    first = text.splitlines()[0] if text else ""
    return first or type(exc).__name__


def _failed(case: str, out: str, exc: BaseException, seconds: float = 0.0) -> CaseResult:
    import traceback

    msg = _one_line(exc)
    if case not in msg:
        msg = f"{case}: {msg}"
    detail = "".join(traceback.format_exception(exc)) if exc.__traceback__ else None
    return CaseResult(case, out, "failed", seconds=seconds, error=msg, traceback=detail)


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_malloc_lock = threading.Lock()
_malloc_users = 0


def _glibc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # musl and others: nothing to tune
        return None


@contextlib.contextmanager
def _reusable_heap() -> Iterator[None]:
    """Let mask-sized arrays reuse freed memory while a case is packed.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_`` set (65536), which turns off
    glibc's adaptive mmap threshold: every array above 128 KiB (each 10 MB mask) is then a
    fresh ``mmap``, page-faulted in and unmapped when freed, which doubles the time per case.
    While a case is packed, large blocks come from the heap and stay there; afterwards the
    pinned settings are restored and the memory handed back (``malloc_trim``). Nothing is
    changed where the variable is not set (glibc's defaults adapt by themselves) or where
    the C library is not glibc.
    """
    global _malloc_users
    pinned = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    libc = _glibc() if pinned is not None else None
    if libc is None:
        yield
        return
    with _malloc_lock:
        _malloc_users += 1
        if _malloc_users == 1:
            libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
            libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    try:
        yield
    finally:
        with _malloc_lock:
            _malloc_users -= 1
            if _malloc_users == 0:
                mmap_threshold = os.environ.get("MALLOC_MMAP_THRESHOLD_", str(128 << 10))
                with contextlib.suppress(ValueError):
                    libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))
                    libc.mallopt(_M_TRIM_THRESHOLD, int(pinned))
                libc.malloc_trim(0)


def _run_case(case: str, out: str, options: dict[str, Any]) -> CaseResult:
    """:func:`pack_case` that reports a failure instead of raising (runs in a worker)."""
    t0 = time.perf_counter()
    try:
        with _reusable_heap():
            return pack_case(case, out, **options)
    except Exception as exc:  # noqa: BLE001 - one bad case must not stop the others
        return _failed(case, out, exc, time.perf_counter() - t0)


# -- a whole tree -----------------------------------------------------------------------------
def _progress(progress: bool | Progress | None, total: int) -> Progress:
    if callable(progress):
        return progress
    if not progress:
        return lambda it: it
    try:
        from tqdm import tqdm
    except ImportError:  # the ``cli`` extra is optional
        return lambda it: it
    return lambda it: tqdm(it, total=total, desc="cases", unit="case", leave=False, file=sys.stderr)


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def pack_tree(
    root: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    workers: int | None = None,
    client: Any = None,
    codec: str | None = None,
    resample: bool = False,
    allow_float: bool = False,
    force: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool | Progress | None = False,
) -> PackReport:
    """Pack every case of a dataset into ``DEST/<case name>.mska``, resumably.

    Args:
        root: The dataset root (or one case folder): a path or an fsspec URL.
        dest: The output folder: a path or a URL (created when missing). With Dask, both
            must be reachable from every worker (a shared file system, or URLs).
        workers: Local worker processes (default: CPU count, at most 8); ``1`` packs in this
            process. Ignored with ``client``.
        client: A :class:`dask.distributed.Client`: each case becomes one Dask task on its
            cluster (see :func:`dask_client`). A worker that dies mid-case leaves no archive
            behind and Dask runs the case again on another worker (up to the scheduler's
            ``allowed-failures``; then the case is reported as failed).
        codec: ``None`` (format version 2) or ``"zstd"`` (version 1).
        resample: See :func:`pack_case`.
        allow_float: See :func:`pack_case`.
        force: Repack cases that are already packed and verified.
        storage_options: fsspec options for URLs (sent to the workers with each task).
        progress: ``True`` for a tqdm bar on stderr as cases finish, or a callable that wraps
            the iterable of finished cases (e.g. a configured ``tqdm``).

    Returns:
        A :class:`PackReport`: one :class:`CaseResult` per case (packed, skipped as already
        packed and verified, or failed with the reason).

    Raises:
        FileNotFoundError: ``root`` does not exist.
        MaskValidationError: No case under ``root``, or ``dest`` names a file
            (``.mska``/``.msk``) rather than a folder.
        ValueError: ``workers`` below 1.
    """
    t0 = time.perf_counter()
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    dest_s = str(dest)
    if dest_s.rstrip("/").endswith((".mska", ".msk")):
        raise MaskValidationError(
            f"{dest_s}: pack_tree writes one archive per case into a folder; give a folder"
        )
    cases = find_cases(root, storage_options=storage_options)
    if not cases:
        raise MaskValidationError(f"{root}: no folder with .nii.gz masks found")
    if not is_url(dest):
        Path(dest).mkdir(parents=True, exist_ok=True)
    jobs = [(str(c), str(o)) for c, o in plan_outputs(root, dest, cases)]
    if client is not None:  # workers may run elsewhere: no paths relative to our folder
        jobs = [(_absolute(c), _absolute(o)) for c, o in jobs]
    options = {
        "codec": codec,
        "resample": resample,
        "allow_float": allow_float,
        "force": force,
        "storage_options": dict(storage_options) if storage_options else None,
    }
    bar = _progress(progress, len(jobs))
    if client is not None:
        engine = f"dask {getattr(client.scheduler, 'address', '') or client}"
        done = _run_dask(client, jobs, options, bar)
    else:
        n = min(workers or _default_workers(), len(jobs))
        engine = f"{n} process{'' if n == 1 else 'es'}"
        done = _run_local(jobs, options, n, bar)
    order = {case: k for k, (case, _out) in enumerate(jobs)}
    results = sorted(done, key=lambda r: order[r.case])
    if not is_url(dest):
        _remove_stale_temps(Path(out) for _case, out in jobs)
    return PackReport(str(root), dest_s, results, time.perf_counter() - t0, engine)


def _absolute(target: str) -> str:
    return target if is_url(target) else os.path.abspath(target)


def _run_local(
    jobs: list[tuple[str, str]], options: dict[str, Any], n: int, bar: Progress
) -> list[CaseResult]:
    if n <= 1:
        return list(bar(_run_case(c, o, options) for c, o in jobs))
    return list(bar(_local_pool(jobs, options, n)))


def _adopt(environ: dict[str, str], cwd: str) -> None:
    """Give a pool worker the caller's environment and folder as they are now (a forkserver
    child starts from the server's, taken when the server started)."""
    for key in set(os.environ) - set(environ):
        del os.environ[key]
    os.environ.update(environ)
    with contextlib.suppress(OSError):
        os.chdir(cwd)


def _local_pool(
    jobs: list[tuple[str, str]], options: dict[str, Any], n: int
) -> Iterator[CaseResult]:
    """Results as cases finish in a process pool. A worker process that dies (killed, out of
    memory) breaks a ``ProcessPoolExecutor`` and every case it had not finished: those are
    run once more in a fresh pool; a case whose worker dies again is reported as failed."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    # forkserver where there is one: a fork of a process with threads running (an fsspec
    # event loop, a Dask client, a server in the caller) can inherit a held lock and hang
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else None)
    pending = list(jobs)
    for attempt in (1, 2):
        broken: list[tuple[str, str]] = []
        with ProcessPoolExecutor(
            max_workers=min(n, len(pending)),
            mp_context=context,
            initializer=_adopt,
            initargs=(dict(os.environ), os.getcwd()),
        ) as pool:
            futures = {pool.submit(_run_case, c, o, options): (c, o) for c, o in pending}
            for fut in as_completed(futures):
                case, out = futures[fut]
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    if attempt == 1:
                        broken.append((case, out))
                    else:
                        yield _failed(
                            case,
                            out,
                            RuntimeError(
                                "a worker process died while packing this case, twice "
                                "(killed, or out of memory?)"
                            ),
                        )
                except Exception as exc:  # noqa: BLE001 - anything else the pool raises
                    yield _failed(case, out, exc)
        pending = broken
        if not pending:
            return


def _run_dask(
    client: Any, jobs: list[tuple[str, str]], options: dict[str, Any], bar: Progress
) -> list[CaseResult]:
    from dask.base import tokenize
    from distributed import as_completed

    run = tokenize(jobs, options, time.time_ns())
    futures = {
        client.submit(_run_case, c, o, options, key=f"medmask-pack-{run}-{k}", pure=False): (c, o)
        for k, (c, o) in enumerate(jobs)
    }
    results: list[CaseResult] = []
    try:
        for fut in bar(as_completed(list(futures))):
            case, out = futures[fut]
            try:
                results.append(fut.result())
            except Exception as exc:  # noqa: BLE001 - KilledWorker, lost scheduler, ...
                if type(exc).__name__ == "KilledWorker":
                    exc = RuntimeError(
                        "the Dask workers running this case died too often (KilledWorker): "
                        "look at the workers' memory and logs"
                    )
                results.append(_failed(case, out, exc))
    except BaseException:
        client.cancel(list(futures))
        raise
    return results


def _remove_stale_temps(outs: Iterable[Path]) -> None:
    """Remove the temporary siblings (``.NAME.*.tmp``) that an interrupted write left.

    Called when every case of the run has finished, so none of them is still being written.
    """
    for out in outs:
        with contextlib.suppress(OSError):
            for tmp in out.parent.glob(f".{out.name}.*.tmp"):
                with contextlib.suppress(OSError):
                    tmp.unlink()


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, *, workers: int | None = None) -> Iterator[Any]:
    """A :class:`dask.distributed.Client`, closed (with its cluster) on exit.

    Args:
        scheduler: A scheduler address (``tcp://host:8786``) to use an existing cluster, or
            ``None`` to start a :class:`~dask.distributed.LocalCluster` of worker processes on
            127.0.0.1 (one thread each, no dashboard).
        workers: Worker processes of the local cluster (default: CPU count, at most 8).

    Yields:
        The client.

    Raises:
        ImportError: Dask is not installed (``pip install "medmask[dask]"``).
        OSError: The scheduler cannot be reached (Dask's timeout applies).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('Dask needs the dask extra: pip install "medmask[dask]"') from None
    if scheduler:
        try:
            client = Client(scheduler)
        except (OSError, TimeoutError) as exc:
            raise OSError(
                f"cannot reach the Dask scheduler at {scheduler} ({exc}); start one with "
                "'dask scheduler' and workers with 'dask worker ADDRESS', or leave the address "
                "out to run on a local cluster"
            ) from None
        with client:
            yield client
        return
    import dask

    # Dask's nanny pins MALLOC_TRIM_THRESHOLD_ in its workers, which turns off glibc's
    # adaptive mmap threshold: every mask-sized array is then a fresh mmap, page-faulted in
    # and unmapped again (15x the page faults, twice the time per case). Not in our cluster.
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        cluster = LocalCluster(
            n_workers=workers or _default_workers(),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,  # no dashboard; its small HTTP server (health
            # routes) on a free loopback port rather than 8787, which may be taken
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        )
    with cluster, Client(cluster) as client:
        yield client
