"""Version 2: the ``.mska`` archive backend (preamble, two commit slots, appended blobs
and index segments; see the package docstring).

``V2Archive`` is one state machine (open a commit, stage, commit, edit, roll back) whose
steps share the commit state; the commit structure is read and encoded by :mod:`.chain`,
the entries are :class:`.entries.LazyEntries`, index rows and blobs :mod:`.rows`."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ...bbox import bbox_slices
from ...codecs import MASK_DTYPES, Codec
from ...errors import MaskValidationError
from ...io.atomic import atomic_temp, fsync_dir, make_temp
from ...io.source import ByteSource, LocalFileSource
from ...mapping import LabelMapping
from ...spaces import Space, space_to_disk_json
from .._io import crc32, read_verified
from ..backend import ArchiveBackend, Prepared
from ..base import (
    Entry,
    decode_blob_region,
    read_space,
)
from .chain import (
    check_preamble,
    encode_archive_segment,
    encode_segment,
    newest_slot,
    read_chain,
)
from .entries import LazyEntries
from .layout import (
    DATA_START,
    MINOR,
    MINORS,
    PREAMBLE,
    ROWS_MINOR,
    SLOT,
    SLOT_OFFSETS,
    rows_minor,
)
from .rows import (
    _bad,
    _decode,
    _entry_from_row,
    _row,
    encode_record,
    read_blob,
    read_box,
)


class V2Archive(ArchiveBackend):
    """A version-2 archive (see :class:`~medmask.format.backend.ArchiveBackend`), read
    through a :class:`~medmask.io.source.ByteSource` and appended to with ``pwrite`` on a
    local descriptor.

    Args:
        source: Where the archive's bytes are read from.
        fd: A read-write descriptor of the same local file to append to (``None``:
            read-only).
        fsync: Whether commits call ``os.fsync`` (off only for temporary files).
        minor: The format minor version (3: the rows of 2.2 and archive attributes, 2
            compact rows with a centroid column, 1 the 10 columns of 2.1, 0 the 9 of 2.0);
            commits write the rows of :func:`.layout.rows_minor`.
    """

    version = 2
    default_codec = "bitzstd"

    def __init__(
        self,
        source: ByteSource,
        *,
        fd: int | None = None,
        fsync: bool = True,
        minor: int = MINOR,
    ) -> None:
        self.source = source
        self.path = source.name
        self.fd = fd
        self.fsync = fsync
        self.minor = minor
        self._rows_minor = rows_minor(minor)
        #: the committed archive attributes and their segment; staged ones (None: unchanged)
        self._attrs: dict = {}
        self._attrs_ref: tuple[int, int, int] | None = None
        self._pending_attrs: dict | None = None
        self._space: Space | None = None
        self._pending_space: Space | None = None
        self._entries: LazyEntries = LazyEntries([], None, self.path)
        self._generation = 0
        self.active_slot = 1  # so that the first commit writes slot 0
        self.end = DATA_START
        self.write_pos = DATA_START
        self._space_ref = (0, 0, 0)
        #: index segments of the commit, oldest first: (offset, length, crc, rows)
        self._segments: list[tuple[int, int, int, int]] = []
        self._committed = 0
        #: the committed entries, kept while deletions/replacements are staged
        self._saved: LazyEntries | None = None
        self._tmp: Path | None = None  # mode "w": the temporary file published at the end
        self._target: Path | None = None

    # -- creation --------------------------------------------------------------------------
    @staticmethod
    def _init_file(fd: int, minor: int) -> None:
        """Write the preamble and two empty slots on ``fd`` (no commit yet)."""
        if minor not in MINORS:
            raise MaskValidationError(f"minor version must be one of {MINORS}, got {minor!r}")
        pre = PREAMBLE.pack_named(
            magic=b"MSKA", major=2, minor=minor, flags=0, slot_size=SLOT.size, slot_count=2
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, pre + b"\0" * (2 * SLOT.size), 0)

    @classmethod
    def create(cls, path: Path, *, space: Space | None, minor: int | None = None) -> V2Archive:
        path = Path(path)
        minor = MINOR if minor is None else minor
        fd, tmp = make_temp(path)
        try:
            cls._init_file(fd, minor)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self = cls(LocalFileSource(path, fd=fd, own_fd=True), fd=fd, fsync=False, minor=minor)
        self._tmp, self._target = Path(tmp), path
        self._pending_space = space
        return self

    @classmethod
    def create_missing(cls, path: Path, *, space: Space | None, minor: int | None = None) -> None:
        minor = MINOR if minor is None else minor
        # replace=False: if another writer created it meanwhile, the caller opens theirs
        with contextlib.suppress(FileExistsError):  # noqa: SIM117 - the link may raise it
            with atomic_temp(Path(path), replace=False) as (fh, tmp):
                fd = fh.fileno()
                cls._init_file(fd, minor)
                new = cls(
                    LocalFileSource(tmp, fd=fd, own_fd=False), fd=fd, fsync=False, minor=minor
                )
                new._pending_space = space
                new.commit()
        return None

    # -- state -----------------------------------------------------------------------------
    @property
    def space(self) -> Space | None:
        return self._space if self._space is not None else self._pending_space

    @property
    def entries(self) -> LazyEntries:
        return self._entries

    @property
    def names(self) -> list[str]:
        return self._entries.names

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def index_segments(self) -> int:
        return len(self._segments) + (self._attrs_ref is not None)

    @property
    def archive_attrs(self) -> dict:
        return self._attrs if self._pending_attrs is None else self._pending_attrs

    @property
    def end_offset(self) -> int:
        return self.end

    @property
    def pending(self) -> list[Entry]:
        """Entries appended since the last commit (readable, not yet durable)."""
        return self._entries[self._committed :]

    # -- reading ---------------------------------------------------------------------------
    @classmethod
    def open(cls, source: ByteSource, *, fd: int | None = None) -> V2Archive:
        """Parse and verify the preamble, the newest valid commit, the space and the index.

        The steps, each its own function: :func:`.chain.check_preamble`, :func:`.chain.newest_slot`,
        :meth:`_load_commit` (end offset, space, index chain, mask count), then the bytes
        of an interrupted append are dropped when opened for appending.
        """
        path = source.name
        head = source.read(0, DATA_START, field="header")
        # the size is taken after the slots: a writer may commit in between, and a
        # commit never points past the file size at the moment it is written
        size = source.size()
        minor = check_preamble(head, path)
        self = cls(source, fd=fd, minor=min(minor, MINOR))  # appends keep the file's layout
        k, slot = newest_slot(head, path)
        self._load_commit(k, slot, size)
        if fd is not None and source.size() > self.end:
            os.ftruncate(fd, self.end)  # bytes of an interrupted append: unreferenced, dropped
        return self

    def _load_commit(self, k: int, slot: NamedTuple, size: int) -> None:
        """Take the commit of slot ``k``: its end, space and index rows (validated lazily)."""
        path = self.path
        end = slot.end_offset
        if not DATA_START <= end <= size:
            raise _bad(
                f"commit {slot.generation} ends at byte {end} but the file has {size} bytes "
                "(truncated?)",
                path,
                "end_offset",
            )
        self._generation, self.active_slot, self.end, self.write_pos = slot.generation, k, end, end
        self._space_ref = (slot.space_offset, slot.space_length, slot.space_crc)
        if slot.space_length:
            raw = self._section(*self._space_ref, "space")
            self._space = read_space(raw, path=path)
        shape = None if self._space is None else tuple(int(s) for s in self._space.shape)
        index_ref = (slot.index_offset, slot.index_length, slot.index_crc)
        chain = read_chain(self._section, index_ref if slot.index_length else None, path)
        segments, flat, minors = chain.segments, chain.rows, chain.minors
        self._attrs, self._attrs_ref = chain.attrs, chain.attrs_ref
        if chain.attrs_ref is not None:  # a 2.2 file given archive attributes is 2.3
            self.minor = max(self.minor, 3)
        if len(flat) != slot.mask_count:
            raise _bad(
                f"commit says {slot.mask_count} masks but the index lists {len(flat)}",
                path,
                "mask_count",
            )
        # every commit that stores a mask also stores the space: masks without one mean a
        # damaged commit (an empty mask would otherwise reach code that needs the shape)
        if flat and self._space is None:
            raise _bad(f"the commit lists {len(flat)} masks but no space", path, "space")
        self._entries = LazyEntries(
            flat,
            lambda row, k, minor: _entry_from_row(row, k, shape, end, path, minor),
            path,
            minors,
        )
        self._segments = segments
        self._committed = len(self._entries)

    def _section(self, off: int, length: int, crc: int, field: str) -> bytes:
        if off < DATA_START or off + length > self.end:
            raise _bad(
                f"section [{off}, {off + length}) lies outside [{DATA_START}, {self.end})",
                self.path,
                field,
            )
        return read_verified(self.source, off, length, crc, field=field)

    def read_box(self, entry: Entry, out: np.ndarray | None = None) -> np.ndarray:
        """Read, verify and decode the stored (cropped) region of a non-empty entry."""
        return read_box(self.source, entry, out)

    def _blobs(self, entries: Sequence[Entry]) -> dict[str, bytes | None]:
        """The blobs of the non-empty entries, read in one
        :meth:`~medmask.io.source.ByteSource.read_many` call (coalesced remotely); a blob
        whose CRC fails is ``None`` (the caller reads it again through :meth:`read_box`,
        which retries remotely or raises with the usual message)."""
        full = [e for e in entries if e.bbox is not None]
        blobs = self.source.read_many([(e.offset, e.length) for e in full], field="data")
        return {
            e.name: (b if crc32(b) == e.crc else None) for e, b in zip(full, blobs, strict=True)
        }

    def iter_regions(
        self,
        entries: Sequence[Entry],
        regions: Sequence[tuple[int, ...]],
        fills: Sequence[int | None] | None = None,
    ) -> Iterator[np.ndarray]:
        """The part of each entry inside its region: the blobs read together (one
        :meth:`~medmask.io.source.ByteSource.read_many`), each checked and decompressed,
        and only the region's rows and bytes unpacked."""
        blobs = self._blobs(entries)
        fills = fills or [None] * len(entries)
        for e, r, fill in zip(entries, regions, fills, strict=True):
            blob = blobs[e.name]
            if blob is None:  # the CRC failed: read again (retried remotely) or raise
                blob = read_blob(self.source, e)
            b = e.bbox
            rel = (r[0] - b[0], r[1] - b[0], r[2] - b[2], r[3] - b[2], r[4] - b[4], r[5] - b[4])
            yield decode_blob_region(
                e.codec, blob, e.spec, rel, path=self.path, mask=e.name, fill=fill
            )

    def read_boxes(self, entries: Sequence[Entry]) -> list[np.ndarray | None]:
        """The stored regions of several entries, their blobs read together."""
        blobs = self._blobs(entries)
        out: list[np.ndarray | None] = []
        for e in entries:
            if e.bbox is None:
                out.append(None)
            elif blobs[e.name] is None:
                out.append(self.read_box(e))
            else:
                out.append(_decode(e, blobs[e.name], self.path, None))
        return out

    def read_many_full(self, entries: Sequence[Entry]) -> list[np.ndarray]:
        """Full volumes of several entries, their blobs read together and each decoded
        straight into its volume."""
        blobs = self._blobs(entries)
        shape = tuple(int(s) for s in self.space.shape) if entries else ()
        out = []
        for e in entries:
            full = np.zeros(shape, e.dtype)
            if e.bbox is not None:
                view = full[bbox_slices(e.bbox)]
                if blobs[e.name] is None:
                    self.read_box(e, out=view)
                else:
                    _decode(e, blobs[e.name], self.path, view)
            out.append(full)
        return out

    # -- staging ---------------------------------------------------------------------------
    def _writable(self) -> None:
        if self.fd is None:
            raise io.UnsupportedOperation(f"{self.path}: opened read-only")

    def _save(self) -> None:
        """Keep the committed entries before a deletion or replacement is staged."""
        self._writable()
        if self._saved is None:
            saved = self._entries.copy()
            del saved[self._committed :]
            self._saved = saved

    def _write(self, data: bytes) -> int:
        pos = self.write_pos
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.pwrite(self.fd, view[done:], pos + done)
        self.write_pos = pos + len(data)
        return pos

    def set_space(self, space: Space) -> None:
        self._writable()
        if self._space is None:
            self._pending_space = space

    def _check_storable(self, name: str, array: np.ndarray, attrs: dict | None) -> None:
        if array.dtype.name not in MASK_DTYPES:
            raise MaskValidationError(f"mask {name!r}: dtype {array.dtype} cannot be stored")
        if attrs and not self.supports_attrs:
            raise MaskValidationError(
                "this archive has the layout of medmask 0.2.0 "
                "(format 2.0), which cannot hold attributes; convert it to the current layout "
                "with 'medmask convert' first",
                path=self.path,
                mask=name,
            )

    def prepare(
        self,
        name: str,
        array: np.ndarray,
        mapping: LabelMapping,
        codec: Codec,
        attrs: dict | None = None,
        origin: tuple[int, int, int] | None = None,
    ) -> Prepared:
        """Crop and encode the mask (no state read or written: safe on any thread)."""
        self._check_storable(name, array, attrs)
        encoded = encode_record(array, codec, origin)
        return Prepared(name, None, mapping, codec, attrs, (array.dtype.name, encoded))

    def stage_prepared(self, prepared: Prepared) -> Entry:
        """Write a prepared mask's blob after the end and stage its entry."""
        self._writable()
        entry = self._entry_of(prepared)
        self._entries.append(entry)
        return entry

    def _entry_of(self, prepared: Prepared) -> Entry:
        """Write a prepared mask's blob after the end; its index entry."""
        dtype, (blob, bbox, voxels, centroid) = prepared.encoded
        offset = self._write(blob) if blob else 0
        entry = Entry(
            prepared.name,
            prepared.mapping.to_dict(),
            offset,
            len(blob),
            prepared.codec,
            MASK_DTYPES[dtype],  # the stored dtype (native byte order)
            bbox,
            crc32(blob),
            voxels,
            centroid if self.supports_attrs else None,
            dict(prepared.attrs or {}),
        )
        entry._mapping = prepared.mapping.copy()
        return entry

    def _encode(
        self,
        name: str,
        array: np.ndarray,
        mapping: LabelMapping,
        codec: Codec,
        attrs: dict | None,
    ) -> Entry:
        return self._entry_of(self.prepare(name, array, mapping, codec, attrs))

    def stage(
        self,
        name: str,
        array: np.ndarray,
        mapping: LabelMapping,
        codec: Codec,
        attrs: dict | None = None,
    ) -> Entry:
        """Write one mask's blob after the end; it becomes durable and visible to
        other readers at :meth:`commit` (this object sees it at once)."""
        return self.stage_prepared(self.prepare(name, array, mapping, codec, attrs))

    def stage_delete(self, index: int) -> None:
        self._save()
        self._entries.pop(index)

    def stage_replace(
        self,
        index: int,
        array: np.ndarray,
        mapping: LabelMapping,
        codec: Codec,
        attrs: dict | None,
    ) -> Entry:
        self._save()
        entry = self._encode(self._entries.names[index], array, mapping, codec, attrs)
        self._entries[index] = entry
        return entry

    def stage_attrs(self, index: int, attrs: dict) -> None:
        if attrs and not self.supports_attrs:
            raise MaskValidationError(
                "this archive has the layout of medmask 0.2.0 (format 2.0), "
                "which cannot hold attributes",
                path=self.path,
            )
        self._save()
        old = self._entries[index]
        new = dataclasses.replace(old, attrs=dict(attrs))
        self._entries[index] = new

    def rollback(self) -> None:
        """Forget staged changes (their bytes past the end are ignored and later overwritten)."""
        if self._saved is not None:
            self._entries = self._saved
            self._saved = None
        else:
            del self._entries[self._committed :]
        self._pending_space = None
        self._pending_attrs = None
        self.write_pos = self.end

    def stage_archive_attrs(self, attrs: dict) -> None:
        """Replace the archive's attributes (validated; durable at :meth:`commit`). A 2.2
        archive becomes 2.3 (its rows are 2.3 rows); older layouts cannot hold them.

        Raises:
            MaskValidationError: The archive's rows are of format 2.1 or older.
        """
        self._writable()
        if self._rows_minor < ROWS_MINOR:
            raise MaskValidationError(
                f"this archive is format 2.{self.minor}, which cannot hold archive attributes "
                "(format 2.3 can); convert it to the current layout with 'medmask convert' first",
                path=self.path,
            )
        self._pending_attrs = dict(attrs)

    def commit(self) -> None:
        """Make staged changes durable and visible: write space/index after the end, then
        a slot. Appends add one segment (merged like a binary counter); a commit after a
        deletion or replacement writes one segment with every row (``prev: null``)."""
        self._writable()
        space_ref = self._space_ref
        if self._pending_space is not None:
            sb = space_to_disk_json(self._pending_space)
            space_ref = (self._write(sb), len(sb), crc32(sb))
        n = len(self._entries)
        if self._saved is not None:  # rows were removed or changed: one fresh segment
            segments: list = []
            start = 0
        else:
            segments = list(self._segments)
            start = self._committed
            # binary-counter merge: fold the newest segments into the new one while not larger
            while segments and segments[-1][3] <= n - start:
                start -= segments.pop()[3]
        if start < n:
            prev = segments[-1][:3] if segments else None
            rows = [_row(e, self._rows_minor) for e in self._entries[start:]]
            seg_b = encode_segment(prev, self._rows_minor, rows)
            segments.append((self._write(seg_b), len(seg_b), crc32(seg_b), len(rows)))
        attrs = self.archive_attrs
        head = segments[-1][:3] if segments else (0, 0, 0)
        attrs_ref = None
        if attrs:  # the archive-attributes segment is always the newest
            seg_b = encode_archive_segment(head if segments else None, attrs)
            head = attrs_ref = (self._write(seg_b), len(seg_b), crc32(seg_b))
        end = self.write_pos
        if self.fsync:
            os.fsync(self.fd)
        gen = self._generation + 1
        slot_idx = 1 - self.active_slot
        raw = SLOT.pack_named(
            generation=gen,
            mask_count=n,
            space_offset=space_ref[0],
            space_length=space_ref[1],
            space_crc=space_ref[2],
            index_offset=head[0],
            index_length=head[1],
            index_crc=head[2],
            end_offset=end,
            reserved=0,
        )
        os.pwrite(self.fd, raw, SLOT_OFFSETS[slot_idx])
        # The slot is written, so readers already see this commit: the in-memory view is
        # updated *before* the last fsync, so that a failing fsync never makes the caller's
        # rollback rewind to the previous commit (whose successor's bytes the next append
        # would then overwrite).
        self._generation, self.active_slot, self.end = gen, slot_idx, end
        self._space_ref = space_ref
        if self._pending_space is not None:
            self._space = self._pending_space
        self._committed = n
        self._segments = segments
        self._attrs, self._attrs_ref, self._pending_attrs = attrs, attrs_ref, None
        if attrs_ref is not None:
            self.minor = max(self.minor, 3)
        self._pending_space = None
        self._saved = None
        if self.fsync:
            os.fsync(self.fd)

    def publish(self) -> None:
        """Mode ``"w"``: commit, fsync and rename the temporary file over the target."""
        if self._tmp is None:
            raise io.UnsupportedOperation(f"{self.path}: not a new archive")
        self.commit()
        os.fsync(self.fd)
        os.replace(self._tmp, self._target)
        self._tmp = None
        fsync_dir(self._target.parent)

    def discard(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None

    def close(self) -> None:
        if self._target is not None:  # mode "w": the backend owns the temporary file
            self.discard()
            self.source.close()
