"""Version 2: the entries of an archive, validated lazily."""

from __future__ import annotations

from ..base import Entry
from ..checks import check_unique_names
from .layout import ROWS_MINOR
from .rows import _bad

__all__ = ["LazyEntries"]


class LazyEntries:
    """The index rows of an archive, turned into validated :class:`Entry` objects on
    first use (opening a 10,000-mask archive then costs one JSON parse and a name
    check, not 10,000 validations). Names, their uniqueness and the count are checked
    at once.

    Args:
        rows: The parsed rows, oldest first.
        make: ``make(row, k, minor)`` validates row ``k`` of layout ``minor``.
        path: The file, for messages.
        minors: The layout (minor version) of each row's segment.
    """

    def __init__(self, rows: list, make, path: object, minors: list[int] | None = None) -> None:
        names = [
            r[0] if type(r) is list and r and type(r[0]) is str and r[0] else None for r in rows
        ]
        if None in names:
            k = names.index(None)
            raise _bad(f"index row {k} is not a list starting with a non-empty name", path, "index")
        if len(set(names)) != len(names):
            check_unique_names(names, path=path)
        self.names = names
        self._rows = rows
        self._minors = [ROWS_MINOR] * len(rows) if minors is None else minors
        self._items: list[Entry | None] = [None] * len(rows)
        self._make = make

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        item = self._items[i]
        if item is None:
            k = i + len(self) if i < 0 else i
            item = self._items[k] = self._make(self._rows[k], k, self._minors[k])
        return item

    def __iter__(self):
        return (self[k] for k in range(len(self)))

    def append(self, entry: Entry) -> None:
        self._items.append(entry)
        self._rows.append(None)
        self._minors.append(ROWS_MINOR)
        self.names.append(entry.name)

    def __delitem__(self, i: slice) -> None:
        del self._items[i], self._rows[i], self._minors[i], self.names[i]

    def __setitem__(self, i: int, entry: Entry) -> None:
        self._items[i] = entry
        self._rows[i] = None
        self.names[i] = entry.name

    def pop(self, i: int) -> None:
        """Remove position ``i``."""
        del self._items[i], self._rows[i], self._minors[i], self.names[i]

    def copy(self) -> LazyEntries:
        """A shallow copy (entries are shared; rows not yet validated stay lazy)."""
        new = LazyEntries.__new__(LazyEntries)
        new.names = list(self.names)
        new._rows = list(self._rows)
        new._minors = list(self._minors)
        new._items = list(self._items)
        new._make = self._make
        return new
