"""One case on every core: a bounded, ordered thread pool for building and encoding masks.

Packing a case is a sequence of independent per-mask jobs (inflate a ``.nii.gz``, unpack a
SEG's frames, crop, bit-pack, zstd) followed by one ordered write. The heavy steps release
the GIL (zlib-ng's inflate, numpy's reductions and copies, zstd), so threads of one process
share the work without copying masks between processes. :func:`ordered_map` runs the jobs
on a few threads, at most ``threads + ahead`` in flight, and hands the results back in
input order; peak memory is therefore a few masks, whatever the case holds.

How many threads a case uses is a setting of the calling context (:func:`case_threads`),
not an option of every reader: ``medmask pack`` uses every core (:func:`default_threads`),
``pack-tree`` divides the cores between its worker processes.

Example:
    >>> with case_threads(2):
    ...     list(ordered_map(lambda x: x * x, range(5)))
    [0, 1, 4, 9, 16]
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

__all__ = ["ordered_map", "case_threads", "current_threads", "default_threads"]

T = TypeVar("T")
R = TypeVar("R")

#: Most threads one case uses by default.
MAX_THREADS = 8

_THREADS: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "medmask_case_threads", default=None
)


def default_threads() -> int:
    """Threads of one case when nothing else is set: the CPUs this process may run on
    (at most :data:`MAX_THREADS`)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, n))


def current_threads() -> int:
    """Threads a case packed now may use: the innermost :func:`case_threads`, else
    :func:`default_threads`."""
    n = _THREADS.get()
    return default_threads() if n is None else n


@contextlib.contextmanager
def case_threads(n: int | None) -> Iterator[int]:
    """Within the block, a case uses ``n`` threads (``None``: :func:`default_threads`).

    Args:
        n: Threads per case (1: everything in the calling thread).

    Yields:
        The number in force.

    Raises:
        ValueError: ``n`` below 1.
    """
    if n is not None and n < 1:
        raise ValueError(f"threads must be at least 1, got {n}")
    token = _THREADS.set(n)
    try:
        yield current_threads()
    finally:
        _THREADS.reset(token)


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    threads: int | None = None,
    ahead: int | None = None,
) -> Iterator[R]:
    """``fn(item)`` for every item, computed on ``threads`` threads, yielded in input order.

    At most ``threads + ahead`` items are taken from ``items`` and not yet yielded, so a
    consumer that stops early, or is slower than the pool, holds memory for a few results
    only. An exception raised by ``fn`` is raised here when its item's turn comes (the
    results before it are yielded first); the items in flight are then cancelled or
    awaited, never left running behind the caller.

    Args:
        fn: The job (thread-safe: it runs concurrently with itself).
        items: The inputs (consumed lazily, from the calling thread).
        threads: Pool size (default: :func:`current_threads`); ``1`` runs every job in the
            calling thread, one after the other, nothing ahead.
        ahead: Jobs queued beyond the running ones (default: ``threads``).

    Yields:
        The results, in the order of ``items``.
    """
    n = current_threads() if threads is None else max(1, int(threads))
    if n == 1:
        for item in items:
            yield fn(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    limit = n + (n if ahead is None else max(0, int(ahead)))
    source = iter(items)
    pending: deque = deque()
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="medmask-case") as pool:
        try:
            for item in source:
                pending.append(pool.submit(fn, item))
                if len(pending) >= limit:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()
