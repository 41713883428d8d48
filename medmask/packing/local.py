"""The local engines: this process, or a pool of worker processes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from ..io.target import Target
from .case import _run_case
from .discover import Case
from .results import CaseResult, Progress, _failed


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _run_local(
    jobs: list[tuple[Case, Target]], options: dict[str, Any], n: int, bar: Progress
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
    jobs: list[tuple[Case, Target]], options: dict[str, Any], n: int
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
        broken: list[tuple[Case, Target]] = []
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
                            case.source,
                            out.path,
                            RuntimeError(
                                "a worker process died while packing this case, twice "
                                "(killed, or out of memory?)"
                            ),
                        )
                except Exception as exc:  # noqa: BLE001 - anything else the pool raises
                    yield _failed(case.source, out.path, exc)
        pending = broken
        if not pending:
            return
