"""Packing one case into one archive, and the check that lets a run skip a finished one."""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..conversions.names import strip_suffix
from ..conversions.nifti import MaskResampledWarning, folder_to_archive, nifti_files
from ..conversions.nifti.cases import is_mask_file_name
from ..conversions.targets import local_copy
from ..errors import MaskValidationError, MedMaskError
from ..io.target import Target
from .heap import _reusable_heap
from .results import CaseResult, _failed

#: Downloads of one URL case in flight at once.
_FETCHES = 8


# -- one case ---------------------------------------------------------------------------------
def _case_files(case: Target) -> list[tuple[str, int, float | None]]:
    """``[(name or URL, size, modification time or None), ...]`` of a case's mask files."""
    if case.is_url:
        from ..io.remote import list_entries

        out = []
        for e in list_entries(case.path, storage_options=case.storage_options):
            name = posixpath.basename(e["name"])
            if e.get("type") == "directory" or not is_mask_file_name(name):
                continue
            out.append((e["name"], int(e.get("size") or 0), _mtime(e)))
        return out
    files = nifti_files(case.path)
    stats = [f.stat() for f in files]
    return [(str(f), s.st_size, s.st_mtime) for f, s in zip(files, stats, strict=True)]


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


def _out_info(out: Target) -> tuple[int, float | None] | None:
    """``(size, mtime)`` of an output, or ``None`` when there is none (``Target.info`` says
    no modification time, which the resume check compares)."""
    if out.is_url:
        from ..io.remote import object_info

        info = object_info(out.path, storage_options=out.storage_options)
        return None if info is None else (int(info.get("size") or 0), _mtime(info))
    p = Path(out.path)
    if not p.is_file():
        return None
    st = p.stat()
    return st.st_size, st.st_mtime


def _verify_names(archive: str | os.PathLike, names: list[str]) -> bool:
    """Whether a local archive holds exactly ``names``, and every mask checks and decodes."""
    from ..storage import MaskArchive

    with MaskArchive(archive) as ar:
        if ar.all_names() != names:
            return False
        for i in range(len(ar)):
            ar.read_cropped(i)  # the blob's CRC32 and a full decode
            ar.info(i)
    return True


def already_packed(
    case: str | os.PathLike | Target,
    out: str | os.PathLike | Target,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> bool:
    """Whether ``out`` is a finished archive of ``case`` (the resumability check).

    True when ``out`` exists, is at least as new as every mask file of the case (where the
    store reports modification times), verifies (every checksum, every mask decoded), and
    holds one mask per file, named after the files, in order.

    Args:
        case: The case folder (path, URL or :class:`~medmask.io.Target`).
        out: The archive (path, URL or Target; a URL archive is fetched to check it:
            archives are small).
        storage_options: fsspec options for URLs given as strings.

    Returns:
        ``True`` when the case can be skipped; ``False`` on any doubt (missing, older,
        damaged, different names, unreadable).
    """
    case_t, out_t = Target.of(case, storage_options), Target.of(out, storage_options)
    try:
        files = _case_files(case_t)
        have = _out_info(out_t)
        if not files or have is None:
            return False
        newest = [t for _f, _s, t in files if t is not None]
        if have[1] is not None and newest and have[1] < max(newest):
            return False
        names = [strip_suffix(posixpath.basename(str(f))) for f, _s, _t in files]
        with local_copy(out_t) as local:
            return _verify_names(local, names)
    except (MedMaskError, OSError, ValueError, KeyError):
        return False


def pack_case(
    case: str | os.PathLike | Target,
    out: str | os.PathLike | Target,
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
        case: The case folder (path, URL or :class:`~medmask.io.Target`) holding
            ``<mask name>.nii.gz`` files.
        out: The ``.mska`` to write (path, URL or Target).
        codec: ``None`` (format version 2) or ``"zstd"`` (version 1, for medmask 0.1.x).
        resample: Resample masks on another grid onto the first file's grid instead of
            failing (each one is named in ``notes``).
        allow_float: Accept float files whose values are whole numbers.
        force: Pack even when :func:`already_packed` says the archive is finished.
        storage_options: fsspec options for URLs given as strings.

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
    case_t, out_t = Target.of(case, storage_options), Target.of(out, storage_options)
    if out_t.format_name != "mska":
        raise MaskValidationError(f"{out_t}: a case packs into an archive; name it *.mska")
    if not force and already_packed(case_t, out_t):
        return CaseResult(case_t.path, out_t.path, "skipped", seconds=time.perf_counter() - t0)
    with _local_case(case_t) as local_case, out_t.writing() as local_out:
        names, notes = _pack_folder(local_case, local_out, codec, resample, allow_float)
        bytes_in = sum(f.stat().st_size for f in nifti_files(local_case))
        bytes_out = local_out.stat().st_size
    return CaseResult(
        case_t.path,
        out_t.path,
        "packed",
        masks=len(names),
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        seconds=time.perf_counter() - t0,
        notes=notes,
    )


@contextlib.contextmanager
def _local_case(case: Target) -> Iterator[Path]:
    """The case as a local folder: itself, or its mask files downloaded (a few requests in
    flight) into a temporary folder that is removed afterwards."""
    if not case.is_url:
        yield Path(case.path)
        return
    from concurrent.futures import ThreadPoolExecutor

    from ..io.remote import download

    urls = [url for url, _size, _t in _case_files(case)]
    with tempfile.TemporaryDirectory(prefix="medmask-case-") as tmp:
        local = Path(tmp) / "case"
        local.mkdir()

        def fetch(url: str) -> Path:
            name = posixpath.basename(url)
            return download(url, local / name, storage_options=case.storage_options)

        with ThreadPoolExecutor(max_workers=_FETCHES) as pool:
            list(pool.map(fetch, urls))
        yield local


def _pack_folder(
    folder: Path, out: Path, codec: str | None, resample: bool, allow_float: bool
) -> tuple[list[str], list[str]]:
    """``folder_to_archive``, with the resampling warnings collected as notes."""
    if out.parent != Path(""):
        out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MaskResampledWarning)
        names = folder_to_archive(
            folder, out, codec=codec, resample=resample, allow_float=allow_float
        )
    notes = [str(w.message) for w in caught if issubclass(w.category, MaskResampledWarning)]
    return names, notes


def _run_case(case: Target, out: Target, options: dict[str, Any]) -> CaseResult:
    """:func:`pack_case` that reports a failure instead of raising (runs in a worker)."""
    t0 = time.perf_counter()
    try:
        with _reusable_heap():
            return pack_case(case, out, **options)
    except Exception as exc:  # noqa: BLE001 - one bad case must not stop the others
        return _failed(case.path, out.path, exc, time.perf_counter() - t0)
