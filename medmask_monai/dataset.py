"""MaskArchiveDataset: single masks pulled out of archives, for multi-worker training."""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from multiprocessing import util as mp_util
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from medmask import MaskArchive, MaskInfo
from medmask.errors import MaskNotFoundError, MaskValidationError, close_matches
from medmask.io.names import is_url

from ._load import MissingNameWarning, label_dtype, mask_meta
from .transforms import to_metatensor

__all__ = ["MaskArchiveDataset", "MissingNameWarning"]


PathLike = str | os.PathLike


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

    def __init__(self, max_open: int, storage_options: Mapping[str, Any] | None = None) -> None:
        self.pid = os.getpid()
        self.storage_options = storage_options
        self.lock = threading.Lock()
        self.cache: OrderedDict[int, MaskArchive] = OrderedDict()
        self.max_open = max_open
        # runs when this object is freed, or when a multiprocessing worker exits
        mp_util.Finalize(self, _close_all, args=(self.cache,), exitpriority=0)

    def get(self, a_idx: int, path: str) -> MaskArchive:
        with self.lock:
            ar = self.cache.get(a_idx)
            if ar is not None:
                self.cache.move_to_end(a_idx)
                return ar
        # outside the lock: other threads keep reading meanwhile
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


def _url_folder(url: str, storage_options: Mapping[str, Any] | None) -> list[str]:
    """The ``*.mska`` objects directly under a URL ending in ``/``, sorted by name."""
    from medmask.io.remote import list_files

    found = list_files(url, (".mska",), storage_options=storage_options, recursive=False)
    if not found:
        raise MaskValidationError(f"{url}: no .mska archive under this prefix")
    return found


def _archive_paths(
    archives: PathLike | Iterable[PathLike], storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Archive paths and URLs, a folder (or a URL ending in ``/``) expanded to its ``*.mska``."""
    if isinstance(archives, str | os.PathLike):
        if is_url(archives):
            if str(archives).endswith("/"):
                return _url_folder(str(archives), storage_options)
            return [str(archives)]
        p = Path(archives)
        if p.is_dir():
            found = sorted(p.glob("*.mska"))
            if not found:
                raise MaskValidationError(f"{p}: no .mska archive in this folder")
            return [str(f) for f in found]
        return [str(p)]
    return [str(a) if is_url(a) else str(Path(a)) for a in archives]


def _voxels(ar: MaskArchive, info: MaskInfo) -> int:
    """A mask's voxel count: from the index (version 2) or by decoding it (version 1)."""
    if info.voxels is not None:
        return int(info.voxels)
    return int(np.count_nonzero(ar.read_array(info.index)))


class MaskArchiveDataset(Dataset):
    """A ``torch.utils.data.Dataset`` over the masks of one archive or many.

    Item ``i`` is the ``i``-th ``(archive, mask)`` pair: archives in the order given
    and, inside each, masks in archive order (or in the order of ``names``), read by
    index-based random access. Building the dataset reads only the archives'
    indexes (about a millisecond per archive; nothing is decoded).

    Each item is a dict ``{key: MetaTensor (1, x, y, z), "name": str, "archive": str,
    "index": int}`` (``index``: the mask's position in its archive), passed through
    ``transform`` when one is given. The mask is ``uint8`` 0/1 for binary masks; an
    entry holding several labels keeps its stored labels unless ``binary``. Its
    ``affine`` is the RAS affine MONAI's ``LoadImage`` reports for the NIfTI it came
    from; its meta has ``filename_or_obj`` (the archive) and ``mask_name``, and
    nothing that differs in structure between masks, so MONAI's and torch's
    collation batch masks of different names and archives.

    Worker safety: the dataset holds paths, not open files. Each process opens the
    archives it needs lazily (at most ``max_open`` at a time) and notices a fork by
    its process id, so no file handle is ever used across processes; pickling (for
    ``spawn`` workers) leaves handles behind. Reads use ``os.pread``: threads of one
    process may share the dataset. :meth:`close` (or a ``with`` block) closes what
    the calling process opened; workers close theirs when they exit.

    Filters: ``min_voxels`` and ``where`` select masks from each archive's index alone
    (:class:`medmask.MaskInfo`: name, voxels, bounding box, bytes, centroid,
    attributes), before anything is decoded. Version-1 archives do not record voxel
    counts: with ``min_voxels`` their masks are decoded once, while the dataset is built.

    Args:
        archives: A ``.mska`` path or URL, a folder (its ``*.mska``, sorted by name), a
            URL ending in ``/`` (the ``*.mska`` objects under it) or a sequence of
            ``.mska`` paths and URLs.
        names: Only these mask names, in this order. A name absent from some archives
            is skipped there (organs missing from some cases are normal); a name found
            in no archive at all warns (:class:`MissingNameWarning`, with close
            matches), as it is most likely misspelt. ``strict`` raises instead.
        transform: Applied to each item dict (e.g. a MONAI ``Compose``).
        key: Dict key of the mask.
        binary: Return entries holding several labels as 0/1 (their non-zero voxels).
        strict: With ``names``, raise if an archive lacks one of them.
        max_open: Most archives kept open per process.
        min_voxels: Keep only masks with at least this many non-zero voxels
            (``min_voxels=1`` drops empty masks).
        where: Keep only masks for which ``where(info)`` is true, ``info`` being the
            mask's :class:`medmask.MaskInfo`
            (e.g. ``where=lambda info: info.attrs.get("reviewed")``).
        storage_options: fsspec options for URLs (credentials, endpoint...).

    Raises:
        MaskNotFoundError: ``strict`` and an archive lacks one of ``names``.
        FileNotFoundError: An archive does not exist.
        CorruptFileError: An archive's index is damaged.

    Example:
        >>> ds = MaskArchiveDataset("packed/", names=["liver", "spleen"])  # doctest: +SKIP
        >>> loader = DataLoader(ds, batch_size=2, num_workers=2)           # doctest: +SKIP
    """

    def __init__(
        self,
        archives: PathLike | Sequence[PathLike],
        names: str | Iterable[str] | None = None,
        transform: Callable[[dict], Any] | None = None,
        *,
        key: str = "mask",
        binary: bool = False,
        strict: bool = False,
        max_open: int = 32,
        min_voxels: int | None = None,
        where: Callable[[MaskInfo], bool] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.storage_options = None if storage_options is None else dict(storage_options)
        self.archives = _archive_paths(archives, self.storage_options)
        self.names = None if names is None else [names] if isinstance(names, str) else list(names)
        if min_voxels is not None and (
            isinstance(min_voxels, bool) or not isinstance(min_voxels, int | np.integer)
        ):
            raise MaskValidationError(f"min_voxels must be an integer, got {min_voxels!r}")
        if where is not None and not callable(where):
            raise MaskValidationError(f"where must be a function of a MaskInfo, got {where!r}")
        self.transform = transform
        self.key = key
        self.binary = binary
        self.max_open = max(1, int(max_open))
        #: ``(archive position, mask position, mask name)`` of every item, in order.
        self.items: list[tuple[int, int, str]] = []
        seen: set[str] = set()  # every stored name, for the check of ``names``
        found: set[str] = set()
        for a_idx, path in enumerate(self.archives):
            with MaskArchive(path, storage_options=self.storage_options) as ar:
                stored = ar.all_names()
                if self.names is None:
                    chosen = list(enumerate(stored))
                else:
                    positions = {n: i for i, n in enumerate(stored)}
                    chosen = []
                    for n in self.names:
                        if n in positions:
                            chosen.append((positions[n], n))
                            found.add(n)
                        elif strict:
                            raise MaskNotFoundError(
                                f"{path}: no mask named {n!r} ({len(stored)} masks)"
                                + close_matches(n, stored)
                            )
                    seen.update(stored)
                if min_voxels is not None or where is not None:
                    infos = ar.infos()
                    chosen = [
                        (i, n)
                        for i, n in chosen
                        if (min_voxels is None or _voxels(ar, infos[i]) >= min_voxels)
                        and (where is None or where(infos[i]))
                    ]
            self.items.extend((a_idx, i, n) for i, n in chosen)
        if self.names is not None:
            for n in self.names:
                if n not in found:
                    warnings.warn(
                        f"MaskArchiveDataset: no mask named {n!r} in any of the "
                        f"{len(self.archives)} archives" + close_matches(n, seen),
                        MissingNameWarning,
                        stacklevel=2,
                    )
        self._open: _OpenArchives | None = None

    def __len__(self) -> int:
        return len(self.items)

    def _archive(self, a_idx: int) -> MaskArchive:
        opened = self._open
        if opened is None or opened.pid != os.getpid():  # first use here, or a forked child
            opened = self._open = _OpenArchives(self.max_open, self.storage_options)
        return opened.get(a_idx, self.archives[a_idx])

    def __getitem__(self, i: int) -> Any:
        n = len(self.items)
        if not isinstance(i, int | np.integer) or isinstance(i, bool):
            raise TypeError(f"dataset indices are integers, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} masks")
        a_idx, pos, name = self.items[int(i)]
        ar = self._archive(a_idx)
        array = ar.read_array(pos)
        if array.dtype == np.bool_:
            array = array.view(np.uint8)
        elif self.binary:
            array = (array != 0).view(np.uint8)
        elif array.dtype.kind == "u" and array.dtype.itemsize > 1:
            # torch has few kernels for uint16/32/64 (no flip): a signed type of the labels
            array = array.astype(label_dtype(int(array.max(initial=0))))
        meta = mask_meta(self.archives[a_idx], ar.space, None, "labelmap")
        meta["mask_name"] = name
        item = {
            self.key: to_metatensor(array[None].transpose(0, 3, 2, 1), meta),
            "name": name,
            "archive": self.archives[a_idx],
            "index": pos,
        }
        return self.transform(item) if self.transform is not None else item

    @property
    def _handles(self) -> dict[int, MaskArchive]:
        """``{archive position: open archive}`` of the calling process (a snapshot)."""
        opened = self._open
        if opened is None or opened.pid != os.getpid():
            return {}
        with opened.lock:
            return dict(opened.cache)

    def close(self) -> None:
        """Close the archives the calling process opened (they reopen on the next read)."""
        opened, self._open = self._open, None
        if opened is not None and opened.pid == os.getpid():
            opened.close()

    def __enter__(self) -> MaskArchiveDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = None  # never ship open files (or a lock) to another process
        return state

    def __repr__(self) -> str:
        return f"MaskArchiveDataset({len(self.archives)} archives, {len(self)} masks)"
