"""glibc heap settings while a case is packed (see :func:`_reusable_heap`)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

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
