"""The archives one process keeps open for a dataset (torch- and MONAI-free, so that the
patch loader's workers import neither MONAI nor anything of it)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from multiprocessing import util as mp_util
from typing import Any

from medmask import MaskArchive
from medmask.catalog import ArchiveRef, open_checked


def _close_all(cache: OrderedDict) -> None:
    while cache:
        with contextlib.suppress(Exception):
            cache.popitem(last=False)[1].close()


class _OpenArchives:
    """The archives one process opened for one dataset; never crosses a fork or a pickle.

    At most ``max_open`` stay open (least recently used dropped first). A dropped
    archive is closed as soon as no thread is reading from it (CPython frees it, and
    ``MaskArchive`` releases its file then); :meth:`close` and process exit close
    what is left.
    """

    def __init__(
        self,
        max_open: int,
        storage_options: Mapping[str, Any] | None = None,
        on_stale: str = "raise",
    ) -> None:
        self.pid = os.getpid()
        self.storage_options = storage_options
        self.on_stale = on_stale
        self.lock = threading.Lock()
        self.cache: OrderedDict[int, MaskArchive] = OrderedDict()
        self.max_open = max_open
        # runs when this object is freed, or when a multiprocessing worker exits
        mp_util.Finalize(self, _close_all, args=(self.cache,), exitpriority=0)

    def get(self, a_idx: int, path: str | ArchiveRef) -> MaskArchive:
        with self.lock:
            ar = self.cache.get(a_idx)
            if ar is not None:
                self.cache.move_to_end(a_idx)
                return ar
        # outside the lock: other threads keep reading meanwhile; a catalogued archive is
        # checked against its row when first opened here
        if isinstance(path, ArchiveRef):
            opened = open_checked(
                path, storage_options=self.storage_options, on_stale=self.on_stale
            )
        else:
            opened = MaskArchive(path, storage_options=self.storage_options)
        with self.lock:
            ar = self.cache.get(a_idx)
            if ar is not None:  # another thread was quicker
                opened.close()
                self.cache.move_to_end(a_idx)
                return ar
            self.cache[a_idx] = opened
            while len(self.cache) > self.max_open:
                self.cache.popitem(last=False)
        return opened

    def close(self) -> None:
        with self.lock:
            _close_all(self.cache)
