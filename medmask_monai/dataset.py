"""MaskArchiveDataset: single masks pulled out of archives, for multi-worker training."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from medmask import MaskArchive, MaskInfo
from medmask.catalog import ArchiveRef, Catalog
from medmask.errors import MaskNotFoundError, MaskValidationError, close_matches
from medmask.io.names import is_url
from medmask.schemes import LabelScheme, case_labels

from ._cases import check_on_stale
from ._items import catalog_items
from ._load import MissingNameWarning, label_dtype, mask_meta
from ._open import _OpenArchives
from .transforms import to_metatensor

__all__ = ["MaskArchiveDataset", "MissingNameWarning"]


PathLike = str | os.PathLike


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

    Catalogues: given a :class:`medmask.Catalog`, the items are its rows (filtered with
    ``names`` and ``min_voxels``; filter the catalogue itself for anything else), and
    building the dataset opens no archive at all. Each archive is checked against its row
    when a process first opens it: one that changed since the catalogue was written raises
    :class:`~medmask.errors.StaleCatalogError` (or, ``on_stale="reread"``, is read as it
    is now), one that is gone :class:`~medmask.errors.MissingArchiveError`; both name the
    archive and the catalogue.

    Partial labels: with ``scheme``, each item also holds ``label_available`` (a bool
    array, one per class of the scheme, in its order): which classes its case was
    annotated for (``docs/datasets.md``), and ``class``, the scheme class its mask makes
    (``None`` when none).

    Args:
        archives: A ``.mska`` path or URL, a folder (its ``*.mska``, sorted by name), a
            URL ending in ``/`` (the ``*.mska`` objects under it), a sequence of
            ``.mska`` paths and URLs, or a :class:`medmask.Catalog`.
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
        storage_options: fsspec options for URLs (credentials, endpoint...); default for
            a catalogue: the catalogue's.
        scheme: A :class:`medmask.schemes.LabelScheme`: adds ``label_available`` and
            ``class`` to each item.
        on_stale: ``"raise"`` or ``"reread"``, for catalogued archives that changed.
        available_key: The item key of the availability vector.

    Raises:
        MaskNotFoundError: ``strict`` and an archive lacks one of ``names``.
        FileNotFoundError: An archive does not exist.
        CorruptFileError: An archive's index is damaged.
        MaskValidationError: ``where`` with a catalogue (filter the catalogue instead).

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
        scheme: LabelScheme | None = None,
        on_stale: str = "raise",
        available_key: str = "label_available",
    ) -> None:
        catalog = archives if isinstance(archives, Catalog) else None
        if storage_options is None and catalog is not None:
            storage_options = catalog.storage_options
        self.storage_options = None if storage_options is None else dict(storage_options)
        self.on_stale = check_on_stale(on_stale)
        self.scheme = scheme
        self.available_key = available_key
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
        self._refs: list[ArchiveRef] | None = None
        #: With ``scheme``: ``(archives, classes)`` availability and each item's class.
        self._available: np.ndarray | None = None
        self._case_labels: list = []
        self._open: _OpenArchives | None = None
        if catalog is not None:
            if where is not None:
                raise MaskValidationError(
                    "where= filters masks by their MaskInfo; with a catalogue, filter the "
                    "catalogue instead: catalog.filter(lambda df: ...)"
                )
            self._from_catalog(catalog, strict, min_voxels)
            return
        self.archives = _archive_paths(archives, self.storage_options)
        self._from_paths(strict, min_voxels, where)

    def _from_catalog(self, catalog: Catalog, strict: bool, min_voxels: int | None) -> None:
        """Items from a catalogue's rows: no archive is opened."""
        self._refs = catalog.refs()
        self.archives = [r.path for r in self._refs]
        #: ``(archive position, mask position, mask name)`` of every item, in order.
        self.items = catalog_items(catalog, self.names, strict=strict, min_voxels=min_voxels)
        if self.scheme is not None:
            self._set_scheme(catalog.case_labels(self.scheme))

    def _set_scheme(self, labels: list) -> None:
        """Each archive's :class:`~medmask.schemes.CaseLabels` (cases with one set of names
        share one) and availability."""
        self._case_labels = labels
        self._available = np.array([cl.available for cl in labels], dtype=bool).reshape(
            len(labels), len(self.scheme)
        )

    def _class_of(self, a_idx: int, name: str) -> str | None:
        """The scheme class the mask ``name`` of archive ``a_idx`` paints (``None``: none)."""
        for cls in self._case_labels[a_idx].mapping.classes:
            if name in cls.sources:
                return cls.name
        return None

    def _from_paths(
        self, strict: bool, min_voxels: int | None, where: Callable[[MaskInfo], bool] | None
    ) -> None:
        """Items from each archive's index."""
        #: ``(archive position, mask position, mask name)`` of every item, in order.
        self.items: list[tuple[int, int, str]] = []
        labels: list = []
        seen: set[str] = set()  # every stored name, for the check of ``names``
        found: set[str] = set()
        for a_idx, path in enumerate(self.archives):
            with MaskArchive(path, storage_options=self.storage_options) as ar:
                stored = ar.all_names()
                if self.scheme is not None:
                    labels.append(
                        case_labels(
                            self.scheme,
                            stored,
                            ar.archive_attrs,
                        )
                    )
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
                        stacklevel=3,
                    )
        if self.scheme is not None:
            self._set_scheme(labels)

    def __len__(self) -> int:
        return len(self.items)

    def _archive(self, a_idx: int) -> MaskArchive:
        opened = self._open
        if opened is None or opened.pid != os.getpid():  # first use here, or a forked child
            opened = self._open = _OpenArchives(self.max_open, self.storage_options, self.on_stale)
        return opened.get(a_idx, self._refs[a_idx] if self._refs else self.archives[a_idx])

    def __getitem__(self, i: int) -> Any:
        n = len(self.items)
        if not isinstance(i, int | np.integer) or isinstance(i, bool):
            raise TypeError(f"dataset indices are integers, got {type(i).__name__}")
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} masks")
        a_idx, pos, name = self.items[int(i)]
        ar = self._archive(a_idx)
        array = self._read(ar, a_idx, pos, name)
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
        if self._available is not None:
            item[self.available_key] = self._available[a_idx].copy()
            item["class"] = self._class_of(a_idx, name)
        return self.transform(item) if self.transform is not None else item

    def _read(self, ar: MaskArchive, a_idx: int, pos: int, name: str) -> np.ndarray:
        """One mask's array: by position, or for a catalogue by name (an archive re-read
        with ``on_stale="reread"`` may have moved it)."""
        if self._refs is None:
            return ar.read_array(pos)
        try:
            return ar.read_array(name)
        except MaskNotFoundError as exc:
            raise MaskNotFoundError(
                f"{exc.message} (listed in the catalogue {self._refs[a_idx].catalog or ''}; "
                "the archive changed since: rebuild the catalogue)",
                path=ar.path,
            ) from None

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
