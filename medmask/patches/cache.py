"""A least-recently-used cache bounded in bytes: what a loader worker keeps between patches.

Every cache of the patch machinery is one of these, with a byte budget: decoded mask rows
for exact foreground draws, foreground coordinates, whole images read from compressed
files. Nothing grows with the dataset (the trap of caching every index of every case).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from ..errors import MaskValidationError

__all__ = ["ByteLRU"]


class ByteLRU:
    """A mapping that keeps at most ``max_bytes`` of values, dropping the least recently used.

    Each value is stored with its size (given by the caller); a value larger than the
    whole budget is not kept. Safe to share between threads of one process; never shared
    between processes (each loader worker builds its own).

    Args:
        max_bytes: The budget (0 keeps nothing).

    Attributes:
        hits: Lookups that found their key.
        misses: Lookups that did not.

    Raises:
        MaskValidationError: A negative or non-integer budget.
    """

    def __init__(self, max_bytes: int) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise MaskValidationError(f"a cache budget is bytes >= 0, got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any | None:
        """The value of ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Keep ``value`` under ``key``, dropping old values until the budget holds.

        Args:
            key: The key (replaces a value already kept under it).
            value: The value.
            nbytes: Its size in bytes.
        """
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if nbytes > self.max_bytes:
                return
            self._items[key] = (value, int(nbytes))
            self._bytes += int(nbytes)
            while self._bytes > self.max_bytes:
                _, (_, size) = self._items.popitem(last=False)
                self._bytes -= size

    @property
    def nbytes(self) -> int:
        """Bytes held now (never above ``max_bytes``)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def clear(self) -> None:
        """Drop every value."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __getstate__(self) -> dict:
        # a copy sent to another process starts empty: caches are per process
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_bytes"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"ByteLRU({len(self)} values, {self._bytes:,} of {self.max_bytes:,} B)"
