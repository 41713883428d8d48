"""The one interface :class:`medmask.MaskArchive` drives, with one implementation per format
version (:class:`medmask.format.v1.V1Archive`, :class:`medmask.format.v2.V2Archive`).

Everything that depends on the format version lives behind this interface: how an
archive is opened (from a :class:`~medmask.io.source.ByteSource`), created, read, how
staged changes (added, deleted, replaced masks) become durable (:meth:`commit`) and how a
new archive is published. ``MaskArchive`` keeps what does not: locking, the handle's
lifecycle, names and positions, and conversion to :class:`~medmask.SegmentationMask`.

State model: :attr:`entries` is the list the handle sees, committed masks followed by
staged changes. :meth:`commit` makes the staged state durable and visible to other
readers; :meth:`rollback` returns to the last committed state (except when a commit's
slot was already written and only its final fsync failed: that commit stands, see
:meth:`commit`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..bbox import BBox, bbox_slices
from ..codecs import Codec
from ..errors import MaskValidationError
from ..io.source import ByteSource
from ..mapping import LabelMapping
from ..spaces import Space
from .base import Entry
from .layouts import LAYOUTS, Layout

__all__ = ["ArchiveBackend", "Prepared"]


@dataclass
class Prepared:
    """A mask made ready to stage by :meth:`ArchiveBackend.prepare` (encoded, where the
    format allows it, away from the archive's state).

    Attributes:
        name: The mask's name.
        array: The mask on the whole grid (``None`` once encoded).
        mapping: Its label mapping.
        codec: The codec it is (to be) encoded with.
        attrs: Its validated attributes.
        encoded: What the format computed ahead (``None``: :meth:`stage` does the work).
    """

    name: str
    array: np.ndarray | None
    mapping: LabelMapping
    codec: Codec
    attrs: dict | None = None
    encoded: Any = None


class ArchiveBackend(ABC):
    """A ``.mska`` archive of one format version, open for reading or writing.

    Attributes:
        version: The format major version.
        default_codec: Name of the codec new masks are written with.
        minor: The format minor version of the file (new archives: the newest one).
        path: The file or URL, for messages.
        source: Where committed bytes are read from (``None`` for a version-1 archive
            that does not exist yet).
    """

    version: ClassVar[int]
    #: Name of the codec new masks of this version are written with.
    default_codec: ClassVar[str]
    minor: int = 0
    path: object
    source: ByteSource | None = None

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def open(cls, source: ByteSource, *, fd: int | None = None) -> ArchiveBackend:
        """Open the newest commit of an existing archive.

        Args:
            source: The archive's bytes (its header was sniffed as this version).
            fd: A read-write descriptor of the same (local, locked) file, to append to it;
                ``None`` opens read-only.

        Raises:
            CorruptFileError: The file is damaged.
            UnsupportedFormatError: A layout this release does not read.
        """

    @classmethod
    @abstractmethod
    def create(cls, path: Path, *, space: Space | None, minor: int | None) -> ArchiveBackend:
        """A new, empty archive to be published at ``path`` by :meth:`publish` (mode ``"w"``).

        ``minor`` chooses an older layout of the version (``None``: the newest)."""

    @classmethod
    @abstractmethod
    def create_missing(
        cls, path: Path, *, space: Space | None, minor: int | None
    ) -> ArchiveBackend | None:
        """Create an empty archive at ``path`` unless a file appeared there meanwhile
        (mode ``"a"`` on a missing file).

        Returns:
            ``None`` when a file now exists at ``path`` (the caller opens and locks it), or
            a backend whose first :meth:`commit` creates the file (when an empty file of
            this version cannot exist yet, e.g. version 1 without a space).
        """

    # -- what the handle sees ----------------------------------------------------------------
    @property
    @abstractmethod
    def space(self) -> Space | None:
        """The archive's ``(z, y, x)`` space (committed, or set for the next commit)."""

    @property
    @abstractmethod
    def entries(self) -> Sequence[Entry]:
        """Committed masks followed by staged ones, in archive order."""

    @property
    @abstractmethod
    def names(self) -> list[str]:
        """The names of :attr:`entries`, in order (cheap; entries may be validated lazily)."""

    @property
    def layout(self) -> Layout:
        """The archive's row of the compatibility table (what it can hold)."""
        return LAYOUTS.of(self.version, self.minor)

    @property
    def supports_attrs(self) -> bool:
        """Whether masks can carry attributes and centroids (:attr:`layout`)."""
        return self.layout.supports_attrs

    @property
    def generation(self) -> int | None:
        """Commit generation the handle sees (``None`` where the format has none)."""
        return None

    @property
    def index_segments(self) -> int | None:
        """Index segments of the commit the handle sees (``None`` where not applicable)."""
        return None

    @property
    def end_offset(self) -> int | None:
        """Logical end of the committed archive (``None`` where not applicable)."""
        return None

    @property
    def archive_attrs(self) -> dict:
        """The archive's own attributes (committed, or staged for the next commit); ``{}``
        where the layout has none (:attr:`Layout.archive_attrs`)."""
        return {}

    # -- reading -----------------------------------------------------------------------------
    @abstractmethod
    def read_box(self, entry: Entry, out: np.ndarray | None = None) -> np.ndarray:
        """Decode the stored region of a non-empty entry (its bbox; the full volume for
        version 1), into ``out`` when given (a writable view of the region's shape)."""

    def read_boxes(self, entries: Sequence[Entry]) -> list[np.ndarray | None]:
        """:meth:`read_box` of several entries (``None`` for empty ones); formats whose
        blobs lie apart read them through one :meth:`ByteSource.read_many` call."""
        return [None if e.bbox is None else self.read_box(e) for e in entries]

    def read_full(self, entry: Entry) -> np.ndarray:
        """The full-volume array of one entry (new, writable)."""
        out = np.zeros(tuple(int(s) for s in self.space.shape), entry.dtype)
        if entry.bbox is not None:
            self.read_box(entry, out=out[bbox_slices(entry.bbox)])
        return out

    def read_many_full(self, entries: Sequence[Entry]) -> list[np.ndarray]:
        """:meth:`read_full` of several entries, their blobs read together (:meth:`read_boxes`)."""
        shape = tuple(int(s) for s in self.space.shape) if entries else ()
        out = []
        for e, box in zip(entries, self.read_boxes(entries), strict=True):
            full = np.zeros(shape, e.dtype)
            if box is not None:
                full[bbox_slices(e.bbox)] = box
            out.append(full)
        return out

    def iter_regions(
        self,
        entries: Sequence[Entry],
        regions: Sequence[BBox],
        fills: Sequence[int | None] | None = None,
    ) -> Iterator[np.ndarray]:
        """The part of each entry inside its region, in order (what a window read needs).

        Args:
            entries: Non-empty entries.
            regions: For each, a box in volume coordinates inside the entry's :attr:`bbox`.
            fills: For each, ``None`` or, for a boolean entry only, a value 1-255: the part
                comes as ``uint8`` holding that value where the mask is set
                (:meth:`~medmask.codecs.Codec.decode_region`).

        Yields:
            An array of the region's shape per entry (possibly a read-only view, unless
            filled). Layouts with cropped blobs read every blob through one
            :meth:`ByteSource.read_many` call first and unpack only the region; the default
            decodes each stored region whole and slices it.
        """
        fills = fills or [None] * len(entries)
        for entry, region, fill in zip(entries, regions, fills, strict=True):
            box = entry.bbox
            part = self.read_box(entry)[
                region[0] - box[0] : region[1] - box[0],
                region[2] - box[2] : region[3] - box[2],
                region[4] - box[4] : region[5] - box[4],
            ]
            yield part if fill is None else np.multiply(part != 0, np.uint8(fill))

    def read_cropped(self, entry: Entry) -> tuple[np.ndarray, BBox | None]:
        """``(bounding-box region, bbox)`` of one entry; ``((0, 0, 0) array, None)`` if empty."""
        if entry.bbox is None:
            return np.zeros((0, 0, 0), entry.dtype), None
        return np.ascontiguousarray(self.read_box(entry)), entry.bbox

    # -- staging changes ---------------------------------------------------------------------
    @abstractmethod
    def set_space(self, space: Space) -> None:
        """Set the space of an archive that has none yet (stored at the next commit)."""

    @abstractmethod
    def stage(
        self,
        name: str,
        array: np.ndarray,
        mapping: LabelMapping,
        codec: Codec,
        attrs: dict | None = None,
    ) -> Entry:
        """Append a mask (visible to this handle at once, durable at :meth:`commit`).

        ``attrs`` must be validated and may be given only when :attr:`supports_attrs`.
        """

    def prepare(
        self,
        name: str,
        array: np.ndarray,
        mapping: LabelMapping,
        codec: Codec,
        attrs: dict | None = None,
        origin: tuple[int, int, int] | None = None,
    ) -> Prepared:
        """Do what :meth:`stage` can do before it touches the archive (encode the mask),
        so that several masks can be prepared at once on different threads; it reads no
        state that staging changes. The default defers all of it to :meth:`stage`.

        Args:
            name: The mask's name.
            array: The mask on the whole grid, or (``origin``) a box of the grid holding
                every voxel of it.
            mapping: Its label mapping.
            codec: The codec.
            attrs: Validated attributes.
            origin: Where the box ``array`` lies on the grid (the archive's space must be
                set).
        """
        if origin is not None:
            assert self.space is not None
            full = np.zeros(tuple(int(s) for s in self.space.shape), array.dtype)
            z, y, x = (int(v) for v in origin)
            full[z : z + array.shape[0], y : y + array.shape[1], x : x + array.shape[2]] = array
            array = full
        return Prepared(name, array, mapping, codec, attrs)

    def stage_prepared(self, prepared: Prepared) -> Entry:
        """:meth:`stage` a mask made ready by :meth:`prepare`."""
        assert prepared.array is not None
        return self.stage(
            prepared.name, prepared.array, prepared.mapping, prepared.codec, prepared.attrs
        )

    @abstractmethod
    def stage_delete(self, index: int) -> None:
        """Remove the mask at ``index`` (durable at :meth:`commit`)."""

    @abstractmethod
    def stage_replace(
        self,
        index: int,
        array: np.ndarray,
        mapping: LabelMapping,
        codec: Codec,
        attrs: dict | None,
    ) -> Entry:
        """Replace the data (and attributes) of the mask at ``index``, keeping its name and
        position (durable at :meth:`commit`)."""

    @abstractmethod
    def stage_attrs(self, index: int, attrs: dict) -> None:
        """Replace the attributes of the mask at ``index`` (durable at :meth:`commit`)."""

    def stage_archive_attrs(self, attrs: dict) -> None:
        """Replace the archive's attributes (validated; durable at :meth:`commit`).

        Raises:
            MaskValidationError: The layout cannot hold archive attributes.
        """
        raise MaskValidationError(
            f"this archive is format {self.layout.name}, which cannot hold archive "
            "attributes (format 2.3 can); convert it with 'medmask convert' first",
            path=self.path,
        )

    @abstractmethod
    def commit(self) -> int | None:
        """Make the staged state durable and visible (mode ``"a"``); crash-safe.

        Returns:
            ``None``, or a new descriptor, locked, of a file renamed over the archive's path
            (formats that rewrite the whole file): the caller holds it as its lock from now on.
        """

    @abstractmethod
    def rollback(self) -> None:
        """Forget staged changes: back to the last committed state."""

    @abstractmethod
    def publish(self) -> None:
        """Mode ``"w"``: write the staged archive and atomically put it at its path."""

    def discard(self) -> None:  # noqa: B027 - optional hook
        """Mode ``"w"``: abandon the unpublished archive (remove temporary files)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds (not the caller's descriptors)."""
