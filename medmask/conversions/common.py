"""What every foreign format shares: masks read from a file as ``(name, array, attrs)``
records, the report of a conversion, and writing records into an archive."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MaskValidationError
from ..io.formats import identify_target
from ..segmask import SegmentationMask
from ..spaces import Space
from ..storage import MaskArchive, load_mask

__all__ = [
    "NeedsOptionError",
    "MaskRecord",
    "ConversionReport",
    "records_to_archive",
    "iter_archive_records",
    "is_archive",
    "MAX_VOXELS",
    "MAX_SEGMENTS",
]


class NeedsOptionError(MaskValidationError):
    """A source that can be read only with an option the caller did not give (a label
    table, a threshold, ``binarize``), or an option that does not apply to the source.
    The message names the option; the command line exits with status 2 (bad usage)."""


#: Largest grid a foreign file may declare (voxels); larger headers are refused before
#: anything is allocated.
MAX_VOXELS = 2**31
#: Most segments one foreign file may declare.
MAX_SEGMENTS = 65_535


@dataclass
class MaskRecord:
    """One mask read from a foreign file.

    Attributes:
        name: The mask name (made unique by the reader).
        array: A bool ``(z, y, x)`` array on the file's grid.
        attrs: Attributes for :meth:`MaskArchive.add_segmask` (colour, coded
            terminology, description, label value, format-specific extras).
    """

    name: str
    array: np.ndarray
    attrs: dict = field(default_factory=dict)


@dataclass
class ConversionReport:
    """What a conversion did, for printing.

    Attributes:
        source: The file or folder read.
        output: The file or folder written.
        kind: The source's (or output's) format.
        masks: Mask names, in order.
        renamed: ``{new name: name in the file}`` for names changed to be unique.
        notes: Other things worth telling (one line each).
        voxels: ``{name: voxels}`` where known.
        lost: ``{name: voxels lost to overlaps}`` (label-map exports).
        emptied: Masks that lost all their voxels to overlaps.
        source_bytes: Bytes of the files packed, when they are not the whole source (a
            case folder whose image is not packed); ``None``: the source's size.
    """

    source: str
    output: str
    kind: str
    masks: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    voxels: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    emptied: list[str] = field(default_factory=list)
    source_bytes: int | None = None

    def to_json(self) -> dict:
        """The report as a JSON-ready dict."""
        return {
            "source": self.source,
            "output": self.output,
            "kind": self.kind,
            "masks": list(self.masks),
            "renamed": dict(self.renamed),
            "notes": list(self.notes),
            "voxels": dict(self.voxels),
            "lost": dict(self.lost),
            "emptied": list(self.emptied),
            "source_bytes": self.source_bytes,
        }


def records_to_archive(
    records: Iterable[MaskRecord],
    space: Space,
    out: str | os.PathLike,
    *,
    codec: str | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    archive_attrs: Mapping[str, Any] | None = None,
) -> list[str]:
    """Write mask records into a new archive (atomically: on error nothing is left).

    Args:
        records: The masks (bool ``(z, y, x)`` arrays on ``space``).
        space: The grid.
        out: The ``.mska`` to write.
        codec: ``None`` (version 2) or ``"zstd"`` (version 1: attributes are then dropped).
        progress: Optional wrapper of the record iterable.
        archive_attrs: Attributes of the archive as a whole (e.g. ``{"grid":
            "segmentation"}``), kept where the layout holds them (dropped, like mask
            attributes, by version 1).

    Returns:
        The names written.

    Raises:
        MaskValidationError: A record's array is not on ``space``.
    """
    names = []
    with MaskArchive(out, "w", codec=codec, space=space) as ar:
        keep = ar.supports_attrs
        for rec in _prefetch(progress(records) if progress else records):
            if tuple(rec.array.shape) != tuple(int(s) for s in space.shape):
                raise MaskValidationError(
                    f"mask {rec.name!r}: shape {rec.array.shape} is not the grid {tuple(space.shape)}"
                )
            seg = SegmentationMask(rec.array, {rec.name: 1}, space, copy=False)
            ar.add(rec.name, seg, attrs=(rec.attrs or None) if keep else None)
            names.append(rec.name)
        if archive_attrs and ar.layout.archive_attrs:
            ar.set_archive_attrs(archive_attrs)
    return names


def _prefetch(items: Iterable[MaskRecord], depth: int = 2) -> Iterator[MaskRecord]:
    """Iterate ``items`` while a thread builds the next ``depth`` of them.

    Building a mask (unpacking a foreign file's voxels) then overlaps with encoding the
    previous one (zstd and numpy release the GIL). Memory stays bounded (``depth`` masks
    ahead); an exception in the builder is raised here; when the consumer stops early the
    builder stops too.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(exc)

    t = threading.Thread(target=work, name="medmask-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join()


def is_archive(path: str | os.PathLike) -> bool:
    """Whether a local file is a ``.mska`` archive, by its first bytes (not its name).

    Raises:
        FileNotFoundError: No such file.
    """
    fmt = identify_target(path)
    return fmt is not None and fmt.kind == "mska"


def iter_archive_records(
    archive: str | os.PathLike, names: Iterable[str] | None = None
) -> tuple[Space, int, Iterator[MaskRecord]]:
    """The masks of an archive as bool records (a multi-label mask gives one per label), read
    one at a time.

    Args:
        archive: The ``.mska`` (or ``.msk``), a local file.
        names: Only these masks (default: all, archive order).

    Returns:
        ``(space, number of records, iterator)``; the iterator reopens the archive.

    Raises:
        MaskValidationError: The archive holds no masks.
        MaskNotFoundError: A name is not stored.
    """
    path = Path(archive)
    if not is_archive(path):
        seg = load_mask(path)
        out = []
        for n, v in seg.mapping.items():
            if v:
                out.append(MaskRecord(n, seg.data == v if seg.data.dtype != np.bool_ else seg.data))
        return seg.space, len(out), iter(out)
    with MaskArchive(path) as ar:
        if len(ar) == 0 or ar.space is None:
            raise MaskValidationError(f"{archive}: the archive holds no masks")
        wanted = list(names) if names is not None else ar.all_names()
        mappings = {i.name: i.mapping for i in ar.infos()}
        plan = []
        for name in wanted:
            if name not in mappings:
                ar.info(name)  # raises MaskNotFoundError with close matches
            items = [(n, v) for n, v in mappings[name].items() if v]
            plan.append((name, items))
        space = ar.space
    count = sum(max(1, len(items)) for _n, items in plan)

    def gen() -> Iterator[MaskRecord]:
        with MaskArchive(path) as ar:
            for name, items in plan:
                arr = ar.read_array(name)
                attrs = dict(getattr(ar.info(name), "attrs", None) or {})
                if arr.dtype == np.bool_ or len(items) <= 1:
                    yield MaskRecord(name, arr != 0, attrs)
                else:
                    for n, v in items:
                        yield MaskRecord(f"{name}:{n}" if n != name else n, arr == v, {})

    return space, count, gen()
