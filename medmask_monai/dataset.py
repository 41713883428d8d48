"""MaskArchiveDataset: single masks pulled out of archives, for multi-worker training."""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from medmask import MaskArchive
from medmask.errors import MaskNotFoundError, close_matches

from ._load import mask_meta
from .transforms import to_metatensor

__all__ = ["MaskArchiveDataset"]


class MaskArchiveDataset(Dataset):
    """A ``torch.utils.data.Dataset`` over the masks of one or many archives.

    Item ``i`` is the ``i``-th ``(archive, mask)`` pair, archives in the order given
    and masks in archive order, read by index-based random access. Building the
    dataset reads only the archives' indexes.

    Each item is a dict ``{"mask": MetaTensor (1, x, y, z), "name": str, "archive":
    str, "index": int}`` passed through ``transform`` when given. The mask is
    ``uint8`` 0/1 for binary masks (or the stored labels of a multi-label entry) with
    the RAS affine of its NIfTI origin.

    Worker safety: the dataset holds paths, not open files; each process opens the
    archives it needs lazily (at most ``max_open`` at a time, least recently used
    closed first) and reopens them after a fork, so no file handle is shared across
    processes. It pickles (for ``spawn`` workers) without its handles.

    Args:
        archives: One path or a sequence of paths to ``.mska`` files.
        names: Only these mask names (absent ones are skipped unless ``strict``).
        transform: Applied to each item dict (e.g. a MONAI ``Compose``).
        key: Dict key of the mask.
        strict: With ``names``, raise if an archive lacks one of them.
        max_open: Most archives kept open per process.

    Example:
        >>> ds = MaskArchiveDataset(sorted(Path("packed").glob("*.mska")), names=["liver"])  # doctest: +SKIP
        >>> loader = DataLoader(ds, batch_size=2, num_workers=2)                              # doctest: +SKIP
    """

    def __init__(
        self,
        archives: str | os.PathLike | Sequence[str | os.PathLike],
        names: Iterable[str] | None = None,
        transform: Callable | None = None,
        *,
        key: str = "mask",
        strict: bool = False,
        max_open: int = 32,
    ) -> None:
        if isinstance(archives, str | os.PathLike):
            archives = [archives]
        self.archives = [str(Path(a)) for a in archives]
        self.names = None if names is None else [names] if isinstance(names, str) else list(names)
        self.transform = transform
        self.key = key
        self.max_open = max(1, int(max_open))
        self.items: list[tuple[int, int, str]] = []
        for a_idx, path in enumerate(self.archives):
            with MaskArchive(path) as ar:
                stored = ar.all_names()
                if self.names is None:
                    self.items.extend((a_idx, i, n) for i, n in enumerate(stored))
                    continue
                positions = {n: i for i, n in enumerate(stored)}
                for n in self.names:
                    if n in positions:
                        self.items.append((a_idx, positions[n], n))
                    elif strict:
                        raise MaskNotFoundError(
                            f"{path}: no mask named {n!r}" + close_matches(n, stored)
                        )
        self._handles: OrderedDict[int, MaskArchive] = OrderedDict()
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.items)

    def _archive(self, a_idx: int) -> MaskArchive:
        if self._pid != os.getpid():  # forked: never use the parent's descriptors
            self._handles = OrderedDict()
            self._pid = os.getpid()
        ar = self._handles.get(a_idx)
        if ar is None:
            ar = MaskArchive(self.archives[a_idx])
            self._handles[a_idx] = ar
            while len(self._handles) > self.max_open:
                self._handles.popitem(last=False)[1].close()
        else:
            self._handles.move_to_end(a_idx)
        return ar

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} masks")
        a_idx, pos, name = self.items[i]
        ar = self._archive(a_idx)
        array = ar.read_array(pos)
        if array.dtype == np.bool_:
            array = array.view(np.uint8)
        meta = mask_meta(self.archives[a_idx], ar.space, {name: 1}, "labelmap")
        item = {
            self.key: to_metatensor(array[None].transpose(0, 3, 2, 1), meta),
            "name": name,
            "archive": self.archives[a_idx],
            "index": pos,
        }
        return self.transform(item) if self.transform is not None else item

    def close(self) -> None:
        """Close the archives this process opened."""
        if self._pid == os.getpid():
            for ar in self._handles.values():
                ar.close()
        self._handles = OrderedDict()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()  # never ship open files to another process
        return state

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown
            self.close()

    def __repr__(self) -> str:
        return f"MaskArchiveDataset({len(self.archives)} archives, {len(self)} masks)"
