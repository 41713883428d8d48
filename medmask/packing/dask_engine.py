"""The Dask engine: one task per case on a :class:`dask.distributed.Client`, and
:func:`dask_client` to get one."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from ..io.target import Target
from .case import _run_case
from .discover import Case
from .local import _default_workers
from .results import CaseResult, Progress, _failed


def _run_dask(
    client: Any, jobs: list[tuple[Case, Target]], options: dict[str, Any], bar: Progress
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
                results.append(_failed(case.source, out.path, exc))
    except BaseException:
        client.cancel(list(futures))
        raise
    return results


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
