"""Version 2: the ``.mska`` archive backend (preamble, two commit slots, appended blobs
and index segments; see the package docstring).

Longer than most modules (about 650 lines) on purpose: ``V2Archive`` is one state machine
(open a commit, stage, commit, edit, roll back) whose steps share the commit state; the
records, row checks and ``.msk`` layout live in the sibling modules."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import zstandard

from ...codecs import MASK_DTYPES, Codec, decompress_bounded
from ...errors import CorruptFileError, MaskValidationError, UnsupportedFormatError
from ...io.atomic import atomic_temp, fsync_dir, make_temp
from ...io.source import ByteSource, LocalFileSource
from ...mapping import LabelMapping
from ...spaces import Space, space_to_disk_json
from .._io import crc32, read_verified
from ..backend import ArchiveBackend, Prepared
from ..base import (
    Entry,
    bbox_slices,
    loads_json,
    read_space,
)
from ..checks import (
    check_unique_names,
    is_uint,
)
from .layout import (
    DATA_START,
    INDEX_LAYOUTS,
    INDEX_MAX_RATIO,
    INDEX_SMALL,
    MAX_INDEX_BYTES,
    MINOR,
    PREAMBLE,
    SLOT,
    SLOT_OFFSETS,
)
from .rows import (
    _bad,
    _decode,
    _entry_from_row,
    _row,
    encode_record,
    read_box,
)


def _check_preamble(head: bytes, path: object) -> int:
    """Verify an archive's preamble (CRC, two 64-byte slots, no flags); return its minor."""
    if not PREAMBLE.crc_ok(head):
        raise _bad("preamble checksum mismatch", path, "header")
    pre = PREAMBLE.unpack_named(head)
    if (pre.slot_size, pre.slot_count, pre.flags) != (SLOT.size, 2, 0):
        raise _bad(
            f"unexpected slot layout {pre.slot_size}x{pre.slot_count}, flags {pre.flags}",
            path,
            "header",
        )
    return pre.minor


def _newest_slot(head: bytes, path: object) -> tuple[int, NamedTuple]:
    """``(index, fields)`` of the valid commit slot with the highest generation.

    Raises:
        CorruptFileError: Neither slot is valid (both empty or damaged).
    """
    best: tuple[int, NamedTuple] | None = None
    problems = []
    for k, off in enumerate(SLOT_OFFSETS):
        slot = SLOT.unpack_named(head, off)
        if slot.generation == 0:
            problems.append(f"slot {k} empty")
        elif not SLOT.crc_ok(head, off):
            problems.append(f"slot {k} checksum mismatch")
        elif best is None or slot.generation > best[1].generation:
            best = (k, slot)
    if best is None:
        raise _bad("no valid commit slot (" + "; ".join(problems) + ")", path, "commit slot")
    return best


def _segment_layout(fields: object, path: object) -> int:
    """The minor version whose index columns a segment's ``fields`` list names."""
    for minor, layout in INDEX_LAYOUTS.items():
        if fields == layout:
            return minor
    known = "; ".join(f"{layout} (format 2.{m})" for m, layout in INDEX_LAYOUTS.items())
    raise UnsupportedFormatError(
        f"index fields {str(fields)[:200]} are none of the known layouts ({known}); a newer "
        "medmask wrote this archive: upgrade medmask to open it",
        path=path,
        field="index",
    )


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
        self._minors = [MINOR] * len(rows) if minors is None else minors
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
        self._minors.append(MINOR)
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


class V2Archive(ArchiveBackend):
    """A version-2 archive (see :class:`~medmask.format.backend.ArchiveBackend`), read
    through a :class:`~medmask.io.source.ByteSource` and appended to with ``pwrite`` on a
    local descriptor.

    Args:
        source: Where the archive's bytes are read from.
        fd: A read-write descriptor of the same local file to append to (``None``:
            read-only).
        fsync: Whether commits call ``os.fsync`` (off only for temporary files).
        minor: The layout written by commits (:data:`INDEX_LAYOUTS`: 2 compact rows with a
            centroid column, 1 the 10 columns of 2.1, 0 the 9 of 2.0).
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
        if minor not in INDEX_LAYOUTS:
            raise MaskValidationError(
                f"minor version must be one of {sorted(INDEX_LAYOUTS)}, got {minor!r}"
            )
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
    def supports_attrs(self) -> bool:
        return self.minor >= 1

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def index_segments(self) -> int:
        return len(self._segments)

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

        The steps, each its own function: :func:`_check_preamble`, :func:`_newest_slot`,
        :meth:`_load_commit` (end offset, space, index chain, mask count), then the bytes
        of an interrupted append are dropped when opened for appending.
        """
        path = source.name
        head = source.read(0, DATA_START, field="header")
        # the size is taken after the slots: a writer may commit in between, and a
        # commit never points past the file size at the moment it is written
        size = source.size()
        minor = _check_preamble(head, path)
        self = cls(source, fd=fd, minor=min(minor, MINOR))  # appends keep the file's layout
        k, slot = _newest_slot(head, path)
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
        segments, flat, minors = self._read_chain(index_ref if slot.index_length else None)
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

    def _read_chain(self, ref: tuple[int, int, int] | None) -> tuple[list, list, list[int]]:
        """Follow the index chain from the newest segment: ``(segments, rows, minors)``,
        oldest first; ``minors`` gives each row the layout its segment declares."""
        path = self.path
        segments = []
        rows: list = []
        layouts: list[int] = []
        budget = MAX_INDEX_BYTES  # decoded bytes left for the whole chain
        while ref is not None:
            off, length, crc = ref
            raw = self._section(off, length, crc, "index")
            limit = min(budget, max(INDEX_SMALL, len(raw) * INDEX_MAX_RATIO))
            try:
                decoded = decompress_bounded(raw, limit=limit, field="index")
            except CorruptFileError as err:
                raise err.add_context(path=path)  # noqa: B904 - the same exception
            budget -= len(decoded)
            seg = loads_json(decoded, path=path, field="index")
            del decoded
            if not (isinstance(seg, dict) and set(seg) == {"prev", "fields", "rows"}):
                raise _bad("index segment must be an object with prev, fields, rows", path, "index")
            layouts.append(_segment_layout(seg["fields"], path))
            if not isinstance(seg["rows"], list) or not seg["rows"]:
                raise _bad("index segment has no rows", path, "index")
            segments.append((off, length, crc, len(seg["rows"])))
            rows.append(seg["rows"])
            prev = seg["prev"]
            if prev is None:
                ref = None
            elif (
                isinstance(prev, list)
                and len(prev) == 3
                and all(is_uint(v) for v in prev)
                and prev[0] < off
            ):
                ref = tuple(prev)
            else:
                raise _bad(f"invalid previous-segment pointer {prev!r}", path, "index")
            if len(segments) > 64:
                raise _bad("index chain is implausibly long", path, "index")
        segments.reverse()
        rows.reverse()
        layouts.reverse()
        flat: list = []
        minors: list[int] = []
        for minor, seg_rows in zip(layouts, rows, strict=True):
            flat += seg_rows
            minors += [minor] * len(seg_rows)
        return segments, flat, minors

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
        self.write_pos = self.end

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
            prev = list(segments[-1][:3]) if segments else None
            rows = [_row(e, self.minor) for e in self._entries[start:]]
            fields = INDEX_LAYOUTS[self.minor]
            seg_json = json.dumps(
                {"prev": prev, "fields": fields, "rows": rows},
                separators=(",", ":"),
                ensure_ascii=False,
            ).encode("utf-8")
            seg_b = zstandard.ZstdCompressor(level=19, write_content_size=True).compress(seg_json)
            segments.append((self._write(seg_b), len(seg_b), crc32(seg_b), len(rows)))
        end = self.write_pos
        if self.fsync:
            os.fsync(self.fd)
        gen = self._generation + 1
        slot_idx = 1 - self.active_slot
        head = segments[-1] if segments else (0, 0, 0, 0)
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
