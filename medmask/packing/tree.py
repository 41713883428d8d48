"""Packing every case of a collection (:func:`pack_tree`) on one of the engines."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..conversions.pipeline import default_threads
from ..errors import MaskValidationError
from ..io.names import format_from_name
from ..io.target import Target
from .cases import plan_outputs
from .dask_engine import _run_dask
from .discover import Case, Discovery, discover
from .local import _default_workers, _run_local
from .results import CaseResult, PackReport, Progress


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


def pack_tree(
    root: str | os.PathLike | Target,
    dest: str | os.PathLike | Target,
    *,
    workers: int | None = None,
    client: Any = None,
    codec: str | None = None,
    resample: bool = False,
    allow_float: bool = False,
    threshold: float | None = None,
    labels: Mapping[str, int] | str | os.PathLike | None = None,
    scheme: str | None = None,
    name_by: str | None = None,
    threads: int | None = None,
    force: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool | Progress | None = False,
    found: Discovery | None = None,
) -> PackReport:
    """Pack every case of a collection into ``DEST/<name>.mska``, resumably.

    The cases are every kind ``pack`` reads, mixed at any depth (:mod:`.discover`); archive
    names follow the rule of :mod:`.cases`.

    Args:
        root: The collection's root (or one case): a path, an fsspec URL or a Target.
        dest: The output folder (path, URL or Target; created when missing). With Dask, both
            must be reachable from every worker (a shared file system, or URLs).
        workers: Local worker processes (default: CPU count, at most 8); ``1``: this process.
            Ignored with ``client``. The pool starts through a fork server: a script
            calling this with ``workers > 1`` needs ``if __name__ == "__main__":``.
        client: A :class:`dask.distributed.Client`: each case is one Dask task (see
            :func:`dask_client`); a worker that dies mid-case leaves no archive behind and
            Dask runs the case again (up to ``allowed-failures``, then it is failed).
        codec, resample, allow_float, threshold: See :func:`pack_case`.
        labels: The label table of NIfTI label maps (a mapping or a table file): every NIfTI
            file is then a label map.
        scheme: A built-in scheme (:func:`medmask.schemes.get_scheme`) instead of ``labels``.
        name_by: A DICOM attribute (``PatientID``...) naming each SEG's archive.
        threads: Threads of each case (default: the CPUs shared by the local workers; 1 on Dask).
        force: Repack cases that are already packed and verified.
        storage_options: fsspec options for URLs given as strings (they travel with the tasks).
        progress: ``True`` for a tqdm bar on stderr, or a wrapper of the finished cases.
        found: Cases already found by :func:`discover` (same ``root`` and options).

    Returns:
        A :class:`PackReport`: one :class:`CaseResult` per case (packed, skipped as already
        packed and verified, or failed with the reason), and the files skipped.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        MaskValidationError: No case under ``root``, ``dest`` names a file, both ``labels``
            and ``scheme``, or an unreadable label table.
        VocabularyError: An unknown ``scheme``.
        ValueError: ``workers`` or ``threads`` below 1.
    """
    t0 = time.perf_counter()
    for what, n in (("workers", workers), ("threads", threads)):
        if n is not None and n < 1:
            raise ValueError(f"{what} must be at least 1, got {n}")
    root_t, dest_t = Target.of(root, storage_options), Target.of(dest, storage_options)
    if format_from_name(dest_t.path.rstrip("/")) in ("mska", "msk"):
        raise MaskValidationError(
            f"{dest_t}: pack_tree writes one archive per case into a folder; give a folder"
        )
    table = label_table(labels, scheme)
    found = found or discover(root_t, label_maps=table is not None, name_by=name_by)
    jobs = _plan(root_t, dest_t, found.cases, absolute=client is not None)
    options = dict(codec=codec, resample=resample, allow_float=allow_float, force=force)
    options.update(threshold=threshold, labels=table)
    done, engine = _run(jobs, options, workers, client, threads, _progress(progress, len(jobs)))
    order = {case.source: k for k, (case, _out) in enumerate(jobs)}
    results = sorted(done, key=lambda r: order[r.case])
    if not dest_t.is_url:
        _remove_stale_temps(Path(out.path) for _case, out in jobs)
    return PackReport(
        root_t.path, dest_t.path, results, time.perf_counter() - t0, engine, found.skipped
    )


def _run(
    jobs: list[tuple[Case, Target]],
    options: dict[str, Any],
    workers: int | None,
    client: Any,
    threads: int | None,
    bar: Progress,
) -> tuple[list[CaseResult], str]:
    """Every job on the engine asked for: ``(results, the engine's name)``. Each case gets
    ``threads`` threads (default: on Dask 1, locally the CPUs shared between the worker
    processes)."""
    if client is not None:
        engine = f"dask {getattr(client.scheduler, 'address', '') or client}"
        return _run_dask(client, jobs, {**options, "threads": threads or 1}, bar), engine
    n = min(workers or _default_workers(), len(jobs))
    engine = f"{n} process{'' if n == 1 else 'es'}"
    per_case = threads or max(1, default_threads() // n)
    return _run_local(jobs, {**options, "threads": per_case}, n, bar), engine


def label_table(
    labels: Mapping[str, int] | str | os.PathLike | None, scheme: str | None
) -> dict[str, int] | None:
    """The label table of a collection's label maps: ``labels`` (a mapping or a table
    file), or the table of a built-in ``scheme``; ``None`` when neither is given.

    Raises:
        MaskValidationError: Both given, or an unreadable table.
        VocabularyError: An unknown scheme (close matches named).
    """
    if labels is not None and scheme is not None:
        raise MaskValidationError("give a label table or a scheme, not both")
    if scheme is not None:
        from ..schemes import get_scheme

        return get_scheme(scheme).table().to_dict()
    if labels is None:
        return None
    from ..conversions.labels import labels_arg

    return labels_arg(labels)


def _plan(
    root: Target, dest: Target, cases: list[Case], *, absolute: bool
) -> list[tuple[Case, Target]]:
    """``[(case, archive), ...]``: every case and its archive in ``dest`` (created when
    local). ``absolute``: local paths made absolute, for workers elsewhere.

    Raises:
        MaskValidationError: No case under ``root``.
    """
    if not cases:
        raise MaskValidationError(
            f"{root}: no case found (folders of .nii.gz masks, DICOM SEGs, .seg.nrrd files, "
            "or label maps with a label table)"
        )
    if not dest.is_url:
        Path(dest.path).mkdir(parents=True, exist_ok=True)
    jobs = [
        (c, Target.of(str(o), dest.storage_options))
        for c, o in plan_outputs(root.path, dest.path, cases)
    ]
    if absolute:  # Dask workers may run elsewhere: no paths relative to our folder
        jobs = [(_absolute_case(c), _absolute(o)) for c, o in jobs]
    return jobs  # type: ignore[return-value]


def _absolute_case(case: Case) -> Case:
    if case.target.is_url:
        return case
    return replace(
        case,
        source=os.path.abspath(case.source),
        files=tuple(os.path.abspath(f) for f in case.files),
        reference=tuple(os.path.abspath(f) for f in case.reference),
    )


def _absolute(target: Target) -> Target:
    return target if target.is_url else Target(os.path.abspath(target.path))


def _remove_stale_temps(outs: Iterable[Path]) -> None:
    """Remove the temporary siblings (``.NAME.*.tmp`` files and folders) that an
    interrupted write left.

    Called when every case of the run has finished, so none of them is still being written.
    """
    for out in outs:
        with contextlib.suppress(OSError):
            for tmp in out.parent.glob(f".{out.name}.*.tmp"):
                if tmp.is_dir() and not tmp.is_symlink():
                    shutil.rmtree(tmp, ignore_errors=True)
                    continue
                with contextlib.suppress(OSError):
                    tmp.unlink()
