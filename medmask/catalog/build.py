"""Building a catalogue: every file's rows read in chunks, in this process, a local process
pool or on Dask, and (``--update``) only the files that changed since a previous one.

Each task reads a chunk of files with :func:`medmask.stats.rows.file_part` (the index alone
for version-2 archives) and returns their rows as one Arrow table
(:func:`~medmask.catalog.schema.parts_table`), so that the derived columns are computed in
the workers and the parent only concatenates. With a previous catalogue, a file it lists
is first *peeked* (:func:`medmask.format.peek_archive`: the commit slots of a version-2
archive, 144 bytes) and re-read only when its size, generation or index checksum changed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import MaskValidationError, MedMaskError
from ..format import ArchiveFingerprint, peek_archive
from ..io.names import format_from_name, is_url
from ..io.target import Target, open_source
from ..stats.files import find_mask_files, progress_wrapper
from ..stats.rows import file_part
from .schema import _pa, arrow_schema, parts_table

__all__ = ["BuildResult", "read_chunk", "build_table", "chunks_of"]

Progress = Callable[[Iterable], Iterable]
#: Files per task, at most (fewer when that gives each worker at least four tasks).
CHUNK = 64
#: Fewer files are read in this process: starting a pool of processes (each importing
#: medmask and pyarrow) costs about as much as reading a few hundred archives.
POOL_MIN_FILES = 400


@dataclass
class BuildResult:
    """What :func:`build_table` produced.

    Attributes:
        table: The catalogue rows, in the order of the files.
        files: The files catalogued (in order).
        read: Files whose index was read.
        kept: Files whose rows were taken from the previous catalogue, unchanged.
        removed: Files of the previous catalogue no longer found.
        failed: ``(file, message)`` of the files that could not be read (``on_error="skip"``).
        cpu_seconds: CPU time the reading took, summed over the processes that read.
    """

    table: Any
    files: list[str]
    read: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    cpu_seconds: float = 0.0


def _fingerprint_now(path: str, storage_options: Mapping | None) -> ArchiveFingerprint:
    """The file's fingerprint as it is now, reading as little as possible."""
    with open_source(Target.of(path, storage_options)) as source:
        if format_from_name(path) == "msk":
            return ArchiveFingerprint(source.size(), None, None)
        return peek_archive(source)


def _message(path: str, exc: BaseException) -> str:
    text = str(exc).strip()
    msg = text.splitlines()[0] if text else type(exc).__name__
    return msg if path in msg else f"{path}: {msg}"


def read_chunk(
    files: Sequence[str],
    storage_options: Mapping | None = None,
    on_error: str = "raise",
    expected: Mapping[str, tuple] | None = None,
) -> tuple[Any, list[str], list[tuple[str, str]]]:
    """Read a chunk of files (one task).

    Args:
        files: Paths or URLs.
        storage_options: fsspec options for URLs.
        on_error: ``"raise"`` or ``"skip"`` (failures returned).
        expected: ``{file: fingerprint}`` from a previous catalogue: a file whose
            fingerprint is unchanged is not read.

    Returns:
        ``(table, unchanged files, failed (file, message), CPU seconds)``.
    """
    cpu = time.process_time()
    parts, unchanged, failed = [], [], []
    for f in files:
        try:
            if (
                expected
                and f in expected
                and tuple(_fingerprint_now(f, storage_options)) == tuple(expected[f])
            ):
                unchanged.append(f)
                continue
            part = file_part(Target.of(f, storage_options))
            if part is not None:
                parts.append(part)
        except (MedMaskError, OSError, ValueError) as exc:
            if on_error == "raise":
                raise
            failed.append((f, _message(f, exc)))
    table = parts_table(parts)
    return table, unchanged, failed, time.process_time() - cpu


def chunks_of(files: Sequence[str], workers: int) -> list[list[str]]:
    """``files`` cut into tasks: at most :data:`CHUNK` files, at least four per worker."""
    size = max(1, min(CHUNK, -(-len(files) // max(1, 4 * workers))))
    return [list(files[k : k + size]) for k in range(0, len(files), size)]


def _run_pool(chunks: list[list[str]], args: tuple, workers: int) -> Iterator[tuple]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # forkserver where there is one: a fork of a process running threads (an fsspec event
    # loop, a server in the caller) can inherit a held lock and hang
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else None)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(read_chunk, c, *args): c for c in chunks}
        try:
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _run_dask(client: Any, chunks: list[list[str]], args: tuple) -> Iterator[tuple]:
    from distributed import as_completed

    futures = {client.submit(read_chunk, c, *args, pure=False): k for k, c in enumerate(chunks)}
    try:
        for fut in as_completed(list(futures)):
            yield chunks[futures[fut]], fut.result()
    except BaseException:
        client.cancel(list(futures))
        raise


def _engine(chunks, args, workers: int, client: Any) -> Iterator[tuple]:
    if client is not None:
        return _run_dask(client, chunks, args)
    if workers > 1 and len(chunks) > 1 and sum(map(len, chunks)) >= POOL_MIN_FILES:
        return _run_pool(chunks, args, min(workers, len(chunks)))
    return ((c, read_chunk(c, *args)) for c in chunks)


def _files_done(results: Iterator[tuple], sink: list) -> Iterator[str]:
    """Each finished chunk's result into ``sink``, and its files one by one (what a
    progress bar counts)."""
    for chunk, result in results:
        sink.append(result)
        yield from chunk


def list_files(paths: Any, storage_options: Mapping | None, *, absolute: bool = True) -> list[str]:
    """The ``.mska``/``.msk`` files under ``paths``; local ones made absolute.

    Raises:
        FileNotFoundError: A path that does not exist.
        MaskValidationError: No file found.
    """
    files = find_mask_files(paths, storage_options=storage_options)
    if absolute:
        files = [f if is_url(f) else os.path.abspath(f) for f in files]
    if not files:
        shown = paths if isinstance(paths, str | os.PathLike) else ", ".join(map(str, paths))
        raise MaskValidationError(f"no .mska / .msk files in {shown}")
    return files


def build_table(
    files: list[str],
    *,
    workers: int = 1,
    client: Any = None,
    storage_options: Mapping | None = None,
    progress: bool | Progress | None = None,
    on_error: str = "raise",
    previous: Any = None,
) -> BuildResult:
    """The catalogue rows of ``files`` (see the module docstring).

    Args:
        files: Paths (absolute) and URLs.
        workers: Local processes (``1``: this process; fewer than
            :data:`POOL_MIN_FILES` files are read here anyway). Ignored with ``client``.
        client: A :class:`dask.distributed.Client`: each chunk is one task.
        storage_options: fsspec options for URLs.
        progress: ``True`` for a progress bar on stderr, ``False`` for none, a wrapper of
            the iterable of files as they are read (e.g. ``tqdm.tqdm``), or ``None``: a bar
            on a terminal for more than 20 files.
        on_error: ``"raise"`` or ``"skip"``.
        previous: A previous catalogue's table: files it lists unchanged keep its rows.

    Returns:
        A :class:`BuildResult`.
    """
    if on_error not in ("raise", "skip"):
        raise MaskValidationError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    expected = _previous_fingerprints(previous) if previous is not None else None
    args = (dict(storage_options) if storage_options else None, on_error, expected)
    results: list[tuple] = []
    done = _files_done(_engine(chunks_of(files, workers), args, workers, client), results)
    for _ in progress_wrapper(progress, len(files), "catalog")(done):
        pass
    tables = [t for t, _u, _f, _c in results if t.num_rows]
    unchanged = {f for _t, u, _f, _c in results for f in u}
    failed = [x for _t, _u, fs, _c in results for x in fs]
    if unchanged:
        tables.append(_rows_of(previous, unchanged))
    pa = _pa()
    table = pa.concat_tables(tables) if tables else arrow_schema().empty_table()
    failed_set = {f for f, _m in failed}
    kept_files = [f for f in files if f not in failed_set]
    gone = [] if previous is None else sorted(set(_paths(previous)) - set(files))
    return BuildResult(
        _in_order(table, kept_files),
        kept_files,
        read=[f for f in kept_files if f not in unchanged],
        kept=[f for f in files if f in unchanged],
        removed=gone,
        failed=failed,
        cpu_seconds=sum(c for _t, _u, _f, c in results),
    )


def _paths(table: Any) -> list[str]:
    col = table.column("path").combine_chunks()
    return [p for p in col.dictionary.to_pylist() if p is not None] if len(col) else []


def _previous_fingerprints(table: Any) -> dict[str, tuple]:
    """``{path: (size, generation, index crc)}`` of a catalogue table, one per archive."""
    pa = _pa()
    cols = ["archive_size", "archive_generation", "archive_index_crc"]
    sub = table.select(cols).append_column("path", table.column("path").cast(pa.string()))
    rows = sub.group_by("path", use_threads=False).aggregate([(c, "first") for c in cols])
    return {
        p: (s, g, c)
        for p, s, g, c in zip(
            rows.column("path").to_pylist(),
            rows.column("archive_size_first").to_pylist(),
            rows.column("archive_generation_first").to_pylist(),
            rows.column("archive_index_crc_first").to_pylist(),
            strict=True,
        )
    }


def _rows_of(table: Any, paths: set[str]) -> Any:
    """The rows of ``table`` whose archive is in ``paths``."""
    import pyarrow.compute as pc

    pa = _pa()
    return table.filter(
        pc.is_in(table.column("path").cast(pa.string()), pa.array(sorted(paths), type=pa.string()))
    )


def _in_order(table: Any, files: list[str]) -> Any:
    """``table``'s rows ordered by the position of their file in ``files`` (stable)."""
    import numpy as np
    import pyarrow.compute as pc

    pa = _pa()
    if table.num_rows == 0:
        return table
    order = {f: k for k, f in enumerate(files)}
    path = pc.dictionary_encode(table.column("path").cast(pa.string())).combine_chunks()
    rank = np.array([order[p] for p in path.dictionary.to_pylist()], dtype=np.int64)
    keys = rank[path.indices.to_numpy()]
    return table.take(pa.array(np.argsort(keys, kind="stable")))
