"""Packing every case of a dataset (:func:`pack_tree`) on one of the engines."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import MaskValidationError
from ..io.names import format_from_name
from ..io.target import Target
from .cases import find_cases, plan_outputs
from .dask_engine import _run_dask
from .local import _default_workers, _run_local
from .results import PackReport, Progress


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
    force: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool | Progress | None = False,
) -> PackReport:
    """Pack every case of a dataset into ``DEST/<case name>.mska``, resumably.

    Args:
        root: The dataset root (or one case folder): a path, an fsspec URL or a
            :class:`~medmask.io.Target`.
        dest: The output folder: a path, a URL or a Target (created when missing). With
            Dask, both must be reachable from every worker (a shared file system, or URLs).
        workers: Local worker processes (default: CPU count, at most 8); ``1`` packs in this
            process. Ignored with ``client``. The pool starts through a fork server: a
            script calling this with ``workers > 1`` needs ``if __name__ == "__main__":``.
        client: A :class:`dask.distributed.Client`: each case becomes one Dask task on its
            cluster (see :func:`dask_client`). A worker that dies mid-case leaves no archive
            behind and Dask runs the case again on another worker (up to the scheduler's
            ``allowed-failures``; then the case is reported as failed).
        codec: ``None`` (format version 2) or ``"zstd"`` (version 1).
        resample: See :func:`pack_case`.
        allow_float: See :func:`pack_case`.
        force: Repack cases that are already packed and verified.
        storage_options: fsspec options for URLs given as strings (they travel to the
            workers inside each task's targets).
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
    root_t, dest_t = Target.of(root, storage_options), Target.of(dest, storage_options)
    if format_from_name(dest_t.path.rstrip("/")) in ("mska", "msk"):
        raise MaskValidationError(
            f"{dest_t}: pack_tree writes one archive per case into a folder; give a folder"
        )
    jobs = _plan(root_t, dest_t, absolute=client is not None)
    options = {"codec": codec, "resample": resample, "allow_float": allow_float, "force": force}
    bar = _progress(progress, len(jobs))
    if client is not None:
        engine = f"dask {getattr(client.scheduler, 'address', '') or client}"
        done = _run_dask(client, jobs, options, bar)
    else:
        n = min(workers or _default_workers(), len(jobs))
        engine = f"{n} process{'' if n == 1 else 'es'}"
        done = _run_local(jobs, options, n, bar)
    order = {case.path: k for k, (case, _out) in enumerate(jobs)}
    results = sorted(done, key=lambda r: order[r.case])
    if not dest_t.is_url:
        _remove_stale_temps(Path(out.path) for _case, out in jobs)
    return PackReport(root_t.path, dest_t.path, results, time.perf_counter() - t0, engine)


def _plan(root: Target, dest: Target, *, absolute: bool) -> list[tuple[Target, Target]]:
    """``[(case, archive), ...]``: every case under ``root`` and its archive in ``dest``
    (created when local). ``absolute``: local paths made absolute, for workers elsewhere.

    Raises:
        MaskValidationError: No case under ``root``.
    """
    cases = find_cases(root)
    if not cases:
        raise MaskValidationError(f"{root}: no folder with .nii.gz masks found")
    if not dest.is_url:
        Path(dest.path).mkdir(parents=True, exist_ok=True)
    jobs = [
        (Target.of(str(c), root.storage_options), Target.of(str(o), dest.storage_options))
        for c, o in plan_outputs(root.path, dest.path, cases)
    ]
    if absolute:  # Dask workers may run elsewhere: no paths relative to our folder
        jobs = [(_absolute(c), _absolute(o)) for c, o in jobs]
    return jobs


def _absolute(target: Target) -> Target:
    return target if target.is_url else Target(os.path.abspath(target.path))


def _remove_stale_temps(outs: Iterable[Path]) -> None:
    """Remove the temporary siblings (``.NAME.*.tmp``) that an interrupted write left.

    Called when every case of the run has finished, so none of them is still being written.
    """
    for out in outs:
        with contextlib.suppress(OSError):
            for tmp in out.parent.glob(f".{out.name}.*.tmp"):
                with contextlib.suppress(OSError):
                    tmp.unlink()
