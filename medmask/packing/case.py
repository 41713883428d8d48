"""Packing one case into one archive, and the check that lets a run skip a finished one."""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..conversions.common import ConversionReport
from ..conversions.names import strip_suffix
from ..conversions.nifti import nifti_files
from ..conversions.nifti.cases import is_mask_file_name
from ..conversions.pipeline import case_threads
from ..conversions.targets import local_copy
from ..errors import MaskValidationError, MedMaskError
from ..io.atomic import fsync_dir
from ..io.formats import get_format, identify_target
from ..io.names import format_from_name
from ..io.target import Target
from ..storage import MaskArchive
from .discover import Case
from .heap import _reusable_heap
from .results import CaseResult, _failed

#: Downloads of one URL case in flight at once.
_FETCHES = 8


# -- what a case is made of -------------------------------------------------------------------
def as_case(
    case: Case | str | os.PathLike | Target, storage_options: Mapping[str, Any] | None = None
) -> Case:
    """A :class:`Case` for a case given as a path or URL: a folder of NIfTI masks, or a file
    of a format ``pack`` reads (recognised by content; a URL by its name).

    Raises:
        FileNotFoundError: A local path that does not exist.
        MaskValidationError: A file no format packs.
    """
    if isinstance(case, Case):
        return case
    t = Target.of(case, storage_options)
    opts = t.storage_options
    if t.is_url:
        kind = format_from_name(t.path.rstrip("/"))
        if kind is None or t.path.endswith("/") or not get_format(kind).capabilities.pack:
            return Case("folder", t.path.rstrip("/"), "", storage_options=opts)
    elif Path(t.path).is_dir():
        return Case("folder", t.path, "")
    else:
        fmt = identify_target(t)
        if fmt is None or not fmt.capabilities.pack or fmt.folder:
            raise MaskValidationError("not a case medmask packs", path=t.path)
        kind = fmt.kind
    files = (t.path,) if kind == "dicom-seg" else ()
    return Case(kind, t.path, posixpath.basename(t.path), files, storage_options=opts)


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


def _file_info(path: str, case: Case) -> tuple[str, int, float | None]:
    if case.target.is_url:
        from ..io.remote import object_info

        info = object_info(path, storage_options=case.storage_options)
        if info is None:
            raise FileNotFoundError(f"{path}: no such object")
        return path, int(info.get("size") or 0), _mtime(info)
    st = os.stat(path)
    return path, st.st_size, st.st_mtime


def _case_files(case: Case) -> list[tuple[str, int, float | None]]:
    """``[(path or URL, size, modification time or None), ...]`` of the files a case is
    packed from (a SEG's referenced images included: they give it its grid)."""
    if case.kind != "folder":
        return [_file_info(p, case) for p in (*(case.files or (case.source,)), *case.reference)]
    if case.target.is_url:
        from ..io.remote import list_entries

        out = []
        for e in list_entries(case.source, storage_options=case.storage_options):
            name = posixpath.basename(e["name"])
            if e.get("type") == "directory" or not is_mask_file_name(name):
                continue
            out.append((e["name"], int(e.get("size") or 0), _mtime(e)))
        return out
    files = nifti_files(case.source)
    stats = [f.stat() for f in files]
    return [(str(f), s.st_size, s.st_mtime) for f, s in zip(files, stats, strict=True)]


def _out_info(out: Target) -> tuple[int, float | None] | None:
    """``(size, mtime)`` of an output, or ``None`` when there is none."""
    if out.is_url:
        from ..io.remote import object_info

        info = object_info(out.path, storage_options=out.storage_options)
        return None if info is None else (int(info.get("size") or 0), _mtime(info))
    p = Path(out.path)
    if not p.is_file():
        return None
    st = p.stat()
    return st.st_size, st.st_mtime


def _verify(archive: str | os.PathLike, names: list[str] | None) -> bool:
    """Whether a local archive verifies (every mask checks and decodes) and, when
    ``names`` is given, holds exactly those."""
    with MaskArchive(archive) as ar:
        if len(ar) == 0 or (names is not None and ar.all_names() != names):
            return False
        for i in range(len(ar)):
            ar.read_cropped(i)  # the blob's CRC32 and a full decode
            ar.info(i)
    return True


def already_packed(
    case: Case | str | os.PathLike | Target,
    out: str | os.PathLike | Target,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> bool:
    """Whether ``out`` is a finished archive of ``case`` (the resumability check).

    True when ``out`` exists, is at least as new as every file the case is packed from
    (where the store reports modification times), verifies (every checksum, every mask
    decoded), and, for a folder of NIfTI masks, holds one mask per file, named after the
    files, in order.

    Args:
        case: The case (a :class:`Case`, or a path, URL or :class:`~medmask.io.Target`).
        out: The archive (path, URL or Target; a URL archive is fetched to check it:
            archives are small).
        storage_options: fsspec options for URLs given as strings.

    Returns:
        ``True`` when the case can be skipped; ``False`` on any doubt (missing, older,
        damaged, different names, unreadable).
    """
    out_t = Target.of(out, storage_options)
    try:
        c = as_case(case, storage_options)
        files = _case_files(c)
        have = _out_info(out_t)
        if not files or have is None:
            return False
        newest = [t for _f, _s, t in files if t is not None]
        if have[1] is not None and newest and have[1] < max(newest):
            return False
        names = None
        if c.kind == "folder":
            names = [strip_suffix(posixpath.basename(str(f))) for f, _s, _t in files]
        with local_copy(out_t) as local:
            return _verify(local, names)
    except (MedMaskError, OSError, ValueError, KeyError):
        return False


# -- packing ----------------------------------------------------------------------------------
def pack_case(
    case: Case | str | os.PathLike | Target,
    out: str | os.PathLike | Target,
    *,
    codec: str | None = None,
    resample: bool = False,
    allow_float: bool = False,
    threshold: float | None = None,
    labels: Mapping[str, int] | None = None,
    threads: int | None = None,
    force: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> CaseResult:
    """Pack one case into one archive, unless it is already packed and verified.

    The case is read by its format's entry in the format table. The archive appears
    whole or not at all: it is written into a temporary folder beside it (or, for a URL,
    a local one) and renamed into place (uploaded whole). A URL case is downloaded to a
    local temporary folder first. Where the source is known it is kept as the archive's
    ``source`` attribute (a SEG's identifiers, the case's path below the root).

    Args:
        case: A :class:`Case` from :func:`~medmask.packing.find_cases`, or a case folder
            or file (path, URL or :class:`~medmask.io.Target`).
        out: The ``.mska`` to write (path, URL or Target).
        codec: ``None`` (format version 2) or ``"zstd"`` (version 1, for medmask 0.1.x).
        resample: NIfTI folders: resample masks on another grid onto the first file's
            grid instead of failing (each one is named in ``notes``).
        allow_float: NIfTI: accept float files whose values are whole numbers.
        threshold: DICOM SEG: threshold of a truly fractional SEG (0 < T <= 1).
        labels: NIfTI label maps: ``{name: label}``.
        threads: Threads of this case (default: every core; see
            :func:`medmask.conversions.pipeline.case_threads`).
        force: Pack even when :func:`already_packed` says the archive is finished.
        storage_options: fsspec options for URLs given as strings.

    Returns:
        A :class:`CaseResult` with status ``"packed"`` or ``"skipped"``.

    Raises:
        MaskValidationError: A case that cannot be packed (a non-binary, float, 4-D or
            unreadable mask, no masks, a truncated or damaged file, a SEG whose grid
            cannot be made...).
        NeedsOptionError: A truly fractional SEG without ``threshold``, a label map
            without labels.
        SpaceMismatchError: Masks on different grids (and not ``resample``).
        OSError: The case cannot be read or the archive cannot be written.
        RemoteReadError: A URL that stays unreadable / unwritable after retries.
    """
    t0 = time.perf_counter()
    c, out_t = as_case(case, storage_options), Target.of(out, storage_options)
    if out_t.format_name != "mska":
        raise MaskValidationError(f"{out_t}: a case packs into an archive; name it *.mska")
    if not force and already_packed(c, out_t):
        return CaseResult(c.source, out_t.path, "skipped", seconds=time.perf_counter() - t0)
    options = {"resample": resample, "allow_float": allow_float, "threshold": threshold}
    options["labels"] = labels
    with case_threads(threads), _local_case(c) as local, _staging(out_t) as staged:
        report = _read(local, staged, codec, options)
        _record_source(staged, {**report.ids, "format": c.kind, "path": c.rel})
        bytes_out = staged.stat().st_size
        bytes_in = sum(size for _p, size, _t in _case_files(local))
    notes = list(report.notes)
    notes += [f"segment {old!r} stored as {new!r}" for new, old in report.renamed.items()]
    return CaseResult(
        c.source,
        out_t.path,
        "packed",
        masks=len(report.masks),
        bytes_in=bytes_in,
        bytes_out=bytes_out,
        seconds=time.perf_counter() - t0,
        notes=notes,
    )


def _read(case: Case, out: Path, codec: str | None, options: dict[str, Any]) -> ConversionReport:
    """Pack a local case with its format's entry of the format table."""
    fmt = get_format(case.kind)
    given = {k: v for k, v in options.items() if k in fmt.pack_options and v not in (None, False)}
    if case.kind == "dicom-seg":
        if case.reference:
            given["reference"] = list(case.reference)
        if len(case.files) > 1:
            given["instances"] = list(case.files[1:])
    return fmt.read(Target(case.source), Target(out), codec=codec, **given)


def _record_source(archive: Path, source: Mapping[str, Any]) -> None:
    """Keep where an archive comes from in its ``source`` archive attribute (reserved key;
    :meth:`MaskArchive.set_archive_attrs`, format 2.3): ``source`` is merged into what the
    format's reader already put there (a SEG's patient, study, series, instance and
    algorithm), so a case's path below the collection's root and its format join them.
    A layout without archive attributes (``codec="zstd"``, version 1) keeps nothing.
    """
    with MaskArchive(archive, "a") as ar:
        if not ar.layout.archive_attrs:
            return
        attrs = dict(ar.archive_attrs)
        attrs["source"] = {**attrs.get("source", {}), **source}
        ar.set_archive_attrs(attrs)


@contextlib.contextmanager
def _staging(out: Target) -> Iterator[Path]:
    """A local path to build the archive at, published whole on normal exit: renamed over
    a local ``out`` (from a hidden temporary folder beside it), or uploaded to a URL."""
    if out.is_url:
        with out.writing() as local:
            yield local
        return
    final = Path(out.path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        local = tmpdir / final.name
        yield local
        os.replace(local, final)
        fsync_dir(final.parent)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


@contextlib.contextmanager
def _local_case(case: Case) -> Iterator[Case]:
    """The case with local files: itself, or its files downloaded (a few requests in
    flight) into a temporary folder that is removed afterwards."""
    if not case.target.is_url:
        yield case
        return
    from concurrent.futures import ThreadPoolExecutor

    from ..io.remote import download

    if case.kind == "folder":
        urls = [url for url, _size, _t in _case_files(case)]
    else:
        urls = [*(case.files or (case.source,)), *case.reference]
    with tempfile.TemporaryDirectory(prefix="medmask-case-") as tmp:
        where = {
            url: Path(tmp) / f"{k:05d}" / posixpath.basename(url) for k, url in enumerate(urls)
        }

        def fetch(url: str) -> Path:
            where[url].parent.mkdir()
            return download(url, where[url], storage_options=case.storage_options)

        with ThreadPoolExecutor(max_workers=_FETCHES) as pool:
            list(pool.map(fetch, urls))
        if case.kind == "folder":
            folder = Path(tmp) / "case"
            folder.mkdir()
            for p in where.values():
                p.rename(folder / p.name)
            yield replace(case, source=str(folder), storage_options={})
            return
        local = [str(where[u]) for u in urls]
        n = len(case.files or (case.source,))
        yield replace(
            case,
            source=local[0],
            files=tuple(local[:n]) if case.files else (),
            reference=tuple(local[n:]),
            storage_options={},
        )


def _run_case(case: Case, out: Target, options: dict[str, Any]) -> CaseResult:
    """:func:`pack_case` that reports a failure instead of raising (runs in a worker)."""
    t0 = time.perf_counter()
    try:
        with _reusable_heap():
            return pack_case(case, out, **options)
    except Exception as exc:  # noqa: BLE001 - one bad case must not stop the others
        return _failed(case.source, out.path, exc, time.perf_counter() - t0)
