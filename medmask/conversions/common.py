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
from ..storage import MaskArchive, PreparedMask, load_mask
from .pipeline import ordered_map

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
        array: A bool ``(z, y, x)`` array on the file's grid, or (with ``origin``) the
            box of the grid that holds every voxel of the mask.
        attrs: Attributes for :meth:`MaskArchive.add_segmask` (colour, coded
            terminology, description, label value, format-specific extras).
        origin: ``(z0, y0, x0)``: ``array`` is the box of the grid starting there
            (readers that know where a mask lies build only that box); ``None``: ``array``
            covers the whole grid.
    """

    name: str
    array: np.ndarray
    attrs: dict = field(default_factory=dict)
    origin: tuple[int, int, int] | None = None

    def full(self, shape: tuple[int, ...]) -> np.ndarray:
        """The mask on the whole grid of ``shape`` (the array itself when it covers it).

        Raises:
            MaskValidationError: The array (or its box) does not fit the grid.
        """
        shape = tuple(int(s) for s in shape)
        if self.origin is None:
            if tuple(self.array.shape) != shape:
                raise MaskValidationError(
                    f"mask {self.name!r}: shape {self.array.shape} is not the grid {shape}"
                )
            return self.array
        box = self.box(shape)
        out = np.zeros(shape, bool)
        out[box] = self.array
        return out

    def box(self, shape: tuple[int, ...]) -> tuple[slice, slice, slice]:
        """The slices of the grid ``shape`` that ``array`` covers.

        Raises:
            MaskValidationError: The box does not fit the grid.
        """
        origin = self.origin or (0, 0, 0)
        if self.array.ndim != 3 or any(
            o < 0 or o + n > s for o, n, s in zip(origin, self.array.shape, shape, strict=True)
        ):
            raise MaskValidationError(
                f"mask {self.name!r}: a box of {self.array.shape} at {origin} does not fit "
                f"the grid {tuple(shape)}"
            )
        return tuple(slice(o, o + n) for o, n in zip(origin, self.array.shape, strict=True))  # type: ignore[return-value]


#: A record, or a function that builds one (run on the case's threads; see
#: :func:`records_to_archive`).
RecordSource = MaskRecord | Callable[[], MaskRecord]


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
        ids: Identifiers of the source that join the archive back to its images (a DICOM
            SEG's patient, study, series, instance and algorithm), where the format has
            them.
        taken_by: ``{name: [the masks that took its voxels]}`` for the masks in ``lost``.
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
    ids: dict = field(default_factory=dict)
    source_bytes: int | None = None
    taken_by: dict[str, list[str]] = field(default_factory=dict)

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
            "ids": dict(self.ids),
            "source_bytes": self.source_bytes,
            "taken_by": {k: list(v) for k, v in self.taken_by.items()},
        }


def records_to_archive(
    records: Iterable[RecordSource],
    space: Space,
    out: str | os.PathLike,
    *,
    codec: str | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    threads: int | None = None,
    archive_attrs: Mapping[str, Any] | None = None,
) -> list[str]:
    """Write mask records into a new archive (atomically: on error nothing is left).

    Records given as functions are built, and every record is encoded (crop, bit-pack,
    zstd), on the case's threads (:func:`medmask.conversions.pipeline.ordered_map`): a few
    masks are in flight at a time, and they are stored in the order given.

    Args:
        records: The masks (bool ``(z, y, x)`` arrays on ``space``, or boxes of it), or
            functions that build them.
        space: The grid.
        out: The ``.mska`` to write.
        codec: ``None`` (version 2) or ``"zstd"`` (version 1: attributes are then dropped).
        progress: Optional wrapper of the iterable of stored records.
        threads: Threads (default: :func:`medmask.conversions.pipeline.current_threads`).
        archive_attrs: Attributes of the archive as a whole (e.g. its ``source``,
            ``{"grid": "segmentation"}``), set with :meth:`MaskArchive.set_archive_attrs`
            where the layout holds them (dropped, like mask attributes, by version 1).

    Returns:
        The names written.

    Raises:
        MaskValidationError: A record's array is not on ``space``, or bad
            ``archive_attrs``.
    """
    shape = tuple(int(s) for s in space.shape)
    names = []
    with MaskArchive(out, "w", codec=codec, space=space) as ar:
        keep = ar.supports_attrs

        def build(item: RecordSource) -> tuple[MaskRecord, object]:
            rec = item() if callable(item) else item
            return rec, _ready(ar, rec, shape, keep)

        done = ordered_map(build, records, threads=threads)
        for rec, ready in progress(done) if progress else done:
            ar.add(rec.name, ready)
            names.append(rec.name)
        if archive_attrs and ar.layout.archive_attrs:
            ar.set_archive_attrs(archive_attrs)
    return names


def _ready(ar: MaskArchive, rec: MaskRecord, shape: tuple[int, ...], keep: bool) -> PreparedMask:
    """A record checked and encoded for the archive (on one of the case's threads)."""
    attrs = (rec.attrs or None) if keep else None
    if rec.origin is None:
        seg = SegmentationMask(rec.full(shape), {rec.name: 1}, ar.space, copy=False)
        return ar.prepare(rec.name, seg, attrs=attrs)
    rec.box(shape)  # a clear error for a box outside the grid
    box = rec.array if rec.array.dtype == np.bool_ else rec.array != 0
    return ar.prepare(rec.name, box, attrs=attrs, origin=rec.origin)


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
