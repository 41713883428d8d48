"""Version 2: cropped, checksummed, crash-safe ``.msk`` / ``.mska`` layouts.

``docs/format.md`` is the normative description; this module follows it.

``.msk`` (one mask, written once, atomically)::

    header (64 B) | meta JSON | blob

``.mska`` (many masks, append-only)::

    preamble (16 B) | commit slot A (64 B) | commit slot B (64 B) | blobs, space, index segments ...

A commit slot points at the space section, the newest index segment and the
logical end of the file. Appending writes the new blob(s) and a new index
segment after the current end, fsyncs, then overwrites the *older* slot with a
higher generation and fsyncs again. A reader takes the valid slot with the
highest generation, so a crash at any instant leaves the previous commit
intact. Index segments form a chain (each names its predecessor); merging
equal-sized segments like a binary counter keeps the chain O(log n) long while
each append writes O(log n) entries amortised.
"""

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

from ..attrs import centroid_of, make_extra, parse_extra
from ..codecs import MASK_DTYPES, Codec, check_dtype, codec_by_id, decompress_bounded
from ..errors import CorruptFileError, MaskValidationError, UnsupportedFormatError
from ..io.source import ByteSource, LocalFileSource
from ..mapping import LabelMapping
from ..spaces import Space, space_to_disk_json
from ._io import BBox, atomic_temp, bounding_box, crc32, fsync_dir, make_temp, read_verified
from .backend import ArchiveBackend
from .base import (
    Entry,
    MskRecord,
    bbox_slices,
    decode_blob,
    loads_json,
    read_space,
)
from .checks import (
    check_bbox,
    check_blob_holds,
    check_blob_range,
    check_name,
    check_uint,
    check_unique_names,
    check_voxels,
    is_uint,
)
from .records import Record

__all__ = [
    "MSK_HEADER",
    "PREAMBLE",
    "SLOT",
    "SLOT_OFFSETS",
    "DATA_START",
    "INDEX_FIELDS",
    "INDEX_FIELDS_20",
    "MINOR",
    "encode_record",
    "encode_msk",
    "decode_msk",
    "read_msk",
    "V2Archive",
]

#: ``.msk`` v2 header (64 bytes; the CRC covers bytes 0-59).
MSK_HEADER = Record(
    "header",
    [
        ("magic", "4s"),
        ("major", "B"),
        ("minor", "B"),
        ("flags", "H"),
        ("header_length", "I"),
        ("meta_offset", "Q"),
        ("meta_length", "Q"),
        ("meta_crc", "I"),
        ("blob_crc", "I"),
        ("blob_offset", "Q"),
        ("blob_length", "Q"),
        ("", "8x"),
        ("crc", "I"),
    ],
)
#: ``.mska`` v2 preamble (16 bytes; the CRC covers bytes 0-11).
PREAMBLE = Record(
    "preamble",
    [
        ("magic", "4s"),
        ("major", "B"),
        ("minor", "B"),
        ("flags", "H"),
        ("slot_size", "H"),
        ("slot_count", "H"),
        ("crc", "I"),
    ],
)
#: Commit slot (64 bytes; the CRC covers bytes 0-59).
SLOT = Record(
    "commit slot",
    [
        ("generation", "Q"),
        ("mask_count", "Q"),
        ("space_offset", "Q"),
        ("space_length", "I"),
        ("space_crc", "I"),
        ("index_offset", "Q"),
        ("index_length", "I"),
        ("index_crc", "I"),
        ("end_offset", "Q"),
        ("reserved", "I"),
        ("crc", "I"),
    ],
)
SLOT_OFFSETS = (PREAMBLE.size, PREAMBLE.size + SLOT.size)
DATA_START = PREAMBLE.size + 2 * SLOT.size
#: Column order of an index row of format 2.0 (medmask 0.2.0).
INDEX_FIELDS_20 = [
    "name",
    "codec",
    "offset",
    "length",
    "crc32",
    "dtype",
    "bbox",
    "voxels",
    "mapping",
]
#: Column order of an index row of format 2.1: 2.0's columns and the per-mask ``extra``.
INDEX_FIELDS = [*INDEX_FIELDS_20, "extra"]
#: Minor version written in new files (1: per-mask extras). Files of minor 0 stay minor 0
#: when appended to (their index keeps 2.0's columns, so medmask 0.2.0 still reads them).
MINOR = 1
#: Largest decoded index segment or meta section accepted (bytes).
MAX_INDEX_BYTES = 1 << 30
#: An index segment may not decode to more than this many times its stored size (beyond
#: :data:`INDEX_SMALL` bytes), and all segments of a commit together to more than
#: :data:`MAX_INDEX_BYTES`, so that opening an archive takes memory and time in proportion
#: to its index. Real segments compress 30-90x (100,000 rows of empty masks with
#: sequential names: 86x); a hostile segment of JSON whitespace compresses ~30,000x.
INDEX_MAX_RATIO = 1000
INDEX_SMALL = 1 << 20

assert MSK_HEADER.size == 64 and PREAMBLE.size == 16 and SLOT.size == 64


def encode_record(
    array: np.ndarray, codec: Codec
) -> tuple[bytes, BBox | None, int, tuple[float, float, float] | None]:
    """Crop ``array`` to its bounding box and encode it.

    Returns:
        ``(blob, bbox, voxels, centroid)``; an empty mask gives ``(b"", None, 0, None)``.
    """
    bbox = bounding_box(array)
    if bbox is None:
        return b"", None, 0, None
    crop = array[bbox_slices(bbox)]
    voxels, centroid = centroid_of(crop, (bbox[0], bbox[2], bbox[4]))
    return codec.encode(crop), bbox, voxels, centroid


def _bad(msg: str, path: object, field: str, mask: str | None = None) -> CorruptFileError:
    return CorruptFileError(msg, path=path, mask=mask, field=field)


def _entry_from_row(
    row: object, k: int, shape: tuple[int, ...] | None, end: int, path: object
) -> Entry:
    """Validate one index row (a list in :data:`INDEX_FIELDS` order; rows of format 2.0
    were given a ``None`` extra when their segment was read), one named check per field
    (:mod:`medmask.format.checks`)."""
    if not isinstance(row, list) or len(row) != len(INDEX_FIELDS):
        raise _bad(f"index row {k} is not a list of {len(INDEX_FIELDS)} fields", path, "index")
    name, codec_id, off, length, crc, dtype, bbox, voxels, mapping, extra = row
    check_name(name, k, path=path, row="index row")
    if not is_uint(codec_id, 8):
        raise _bad(f"invalid codec id {codec_id!r}", path, "index.codec", name)
    try:  # error_context inlined: this runs once per index row
        codec = codec_by_id(codec_id)
    except CorruptFileError as err:
        raise err.add_context(path=path, mask=name)  # noqa: B904 - the same exception
    if not (is_uint(off) and is_uint(length) and is_uint(crc, 32)):
        raise _bad(f"invalid offset/length/crc {off!r}/{length!r}/{crc!r}", path, "index", name)
    if length:
        check_blob_range(off, length, DATA_START, end, path=path, mask=name, field="index.offset")
    try:
        np_dtype = check_dtype(dtype, field="index.dtype")
    except CorruptFileError as err:
        raise err.add_context(path=path, mask=name)  # noqa: B904 - the same exception
    check_uint(voxels, "voxel count", path=path, mask=name, field="index.voxels")
    box = _row_box(bbox, shape, length, voxels, path, name)
    if box is not None:
        check_voxels(voxels, box, path=path, mask=name)
        check_blob_holds(codec, np_dtype, box, length, path=path, mask=name)
    centroid, attrs = parse_extra(extra, bbox=box, path=path, mask=name)
    return Entry(name, mapping, off, length, codec, np_dtype, box, crc, voxels, centroid, attrs)


def _row_box(
    bbox: object, shape: tuple[int, ...] | None, length: int, voxels: int, path: object, name: str
) -> BBox | None:
    """The row's bounding box: ``None`` (an empty mask, which has no data) or a box inside
    the archive's volume with a blob."""
    if bbox is None:
        if length or voxels:
            raise _bad("an empty mask (no bbox) cannot have data", path, "index.bbox", name)
        return None
    if shape is None:
        raise _bad("a stored mask needs the archive space", path, "space", name)
    box = check_bbox(bbox, shape, path=path, mask=name)
    if length == 0:
        raise _bad("a non-empty mask has no blob", path, "index.length", name)
    return box


def _row(e: Entry, minor: int) -> list:
    row = [
        e.name,
        e.codec.codec_id,
        e.offset,
        e.length,
        e.crc,
        e.dtype.name,
        list(e.bbox) if e.bbox is not None else None,
        e.voxels,
        e.raw_mapping,
    ]
    if minor >= 1:
        row.append(make_extra(e.centroid, e.attrs) or None)
    return row


def _decode(entry: Entry, blob: bytes, path: object, out: np.ndarray | None) -> np.ndarray:
    return decode_blob(entry.codec, blob, entry.spec, path=path, mask=entry.name, out=out)


def read_box(source: ByteSource, entry: Entry, out: np.ndarray | None = None) -> np.ndarray:
    """Read, verify and decode the stored (cropped) region of a non-empty entry.

    With ``out`` (a writable ``(z, y, x)`` view of the box's shape) the region is
    decoded into it, which bounds the temporary memory when the codec supports it.
    """
    blob = read_verified(
        source,
        entry.offset,
        entry.length,
        entry.crc,
        field="data",
        mask=entry.name,
        what="blob checksum mismatch (the data is damaged)",
        crc_field="data.crc32",
    )
    return _decode(entry, blob, source.name, out)


# --------------------------------------------------------------------------------------------
# .msk
# --------------------------------------------------------------------------------------------
def encode_msk(
    array: np.ndarray,
    mapping: LabelMapping,
    space: Space,
    codec: Codec,
    attrs: dict | None = None,
    *,
    path: object = None,
) -> bytes:
    """Serialise one mask as a version-2 ``.msk`` file (bytes).

    Without ``attrs`` the file is format 2.0, byte for byte what medmask 0.2.0 writes;
    with (validated) ``attrs`` the meta gains ``extra`` and the header says minor 1.
    """
    blob, bbox, voxels, centroid = encode_record(array, codec)
    meta = {
        "space": json.loads(space_to_disk_json(space)),
        "mapping": mapping.to_dict(),
        "codec": codec.codec_id,
        "dtype": array.dtype.name,
        "bbox": list(bbox) if bbox is not None else None,
        "voxels": voxels,
    }
    if attrs:
        meta["extra"] = make_extra(centroid, attrs)
    meta_b = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    m_off = MSK_HEADER.size
    b_off = m_off + len(meta_b)
    head = MSK_HEADER.pack_named(
        magic=b"MSK1",
        major=2,
        minor=1 if attrs else 0,
        flags=0,
        header_length=MSK_HEADER.size,
        meta_offset=m_off,
        meta_length=len(meta_b),
        meta_crc=crc32(meta_b),
        blob_crc=crc32(blob),
        blob_offset=b_off,
        blob_length=len(blob),
    )
    return head + meta_b + blob


def decode_msk(source: ByteSource, header: bytes) -> tuple[Entry, Space, np.ndarray | None]:
    """Read a version-2 ``.msk``: returns the entry, the space and the cropped region (or None)."""
    path = source.name
    h = MSK_HEADER.unpack_checked(header, path=path, field="header")
    if h.header_length != MSK_HEADER.size:
        raise _bad(
            f"header length {h.header_length}, expected {MSK_HEADER.size}", path, "header_length"
        )
    if h.meta_length > MAX_INDEX_BYTES:
        raise _bad(f"meta section of {h.meta_length} bytes is implausibly large", path, "meta")
    m_off, m_len, m_crc = h.meta_offset, h.meta_length, h.meta_crc
    b_off, b_len, b_crc = h.blob_offset, h.blob_length, h.blob_crc
    raw = read_verified(source, m_off, m_len, m_crc, field="meta", what="meta checksum mismatch")
    meta = loads_json(raw, path=path, field="meta")
    keys = {"space", "mapping", "codec", "dtype", "bbox", "voxels"}
    if not isinstance(meta, dict) or set(meta) - {"extra"} != keys:
        raise _bad(
            f"meta must be an object with keys {sorted(keys)} (and optionally 'extra')",
            path,
            "meta",
        )
    try:
        space_raw = json.dumps(meta["space"]).encode()
    except (ValueError, RecursionError) as exc:  # a stored space never raises but CorruptFileError
        raise _bad(f"invalid space ({exc})", path, "space") from exc
    space = read_space(space_raw, path=path)
    entry = _entry_from_row(
        [
            "mask",
            meta["codec"],
            b_off,
            b_len,
            b_crc,
            meta["dtype"],
            meta["bbox"],
            meta["voxels"],
            meta["mapping"],
            meta.get("extra"),
        ],
        0,
        tuple(space.shape),
        source.size(),
        path,
    )
    box = None if entry.bbox is None else read_box(source, entry)
    return entry, space, box


def read_msk(source: ByteSource, header: bytes, *, cropped: bool = False) -> MskRecord:
    """Read a version-2 ``.msk`` (see :func:`medmask.format.read_msk_record`)."""
    entry, space, box_arr = decode_msk(source, header)
    mapping = entry.mapping(source.name)
    if cropped:
        array = (
            np.zeros((0, 0, 0), entry.dtype) if box_arr is None else np.ascontiguousarray(box_arr)
        )
    else:
        array = np.zeros(tuple(space.shape), entry.dtype)
        if box_arr is not None:
            array[bbox_slices(entry.bbox)] = box_arr
    return MskRecord(
        array, mapping, space, entry.bbox, 2, header[5], entry.voxels, entry.centroid, entry.attrs
    )


# --------------------------------------------------------------------------------------------
# .mska
# --------------------------------------------------------------------------------------------
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


class LazyEntries:
    """The index rows of an archive, turned into validated :class:`Entry` objects on
    first use (opening a 10,000-mask archive then costs one JSON parse and a name
    check, not 10,000 validations). Names, their uniqueness and the count are checked
    at once."""

    def __init__(self, rows: list, make, path: object) -> None:
        names = [
            r[0] if isinstance(r, list) and r and isinstance(r[0], str) and r[0] else None
            for r in rows
        ]
        if None in names:
            k = names.index(None)
            raise _bad(f"index row {k} is not a list starting with a non-empty name", path, "index")
        if len(set(names)) != len(names):
            check_unique_names(names, path=path)
        self.names = names
        self._rows = rows
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
            item = self._items[k] = self._make(self._rows[k], k)
        return item

    def __iter__(self):
        return (self[k] for k in range(len(self)))

    def append(self, entry: Entry) -> None:
        self._items.append(entry)
        self._rows.append(None)
        self.names.append(entry.name)

    def __delitem__(self, i: slice) -> None:
        del self._items[i], self._rows[i], self.names[i]

    def __setitem__(self, i: int, entry: Entry) -> None:
        self._items[i] = entry
        self._rows[i] = None
        self.names[i] = entry.name

    def pop(self, i: int) -> None:
        """Remove position ``i``."""
        del self._items[i], self._rows[i], self.names[i]

    def copy(self) -> LazyEntries:
        """A shallow copy (entries are shared; rows not yet validated stay lazy)."""
        new = LazyEntries.__new__(LazyEntries)
        new.names = list(self.names)
        new._rows = list(self._rows)
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
        minor: The layout written by commits (1: 10 index columns with extras; 0: 2.0).
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
        if minor not in (0, 1):
            raise ValueError(f"minor version must be 0 or 1, got {minor!r}")
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
        segments, flat = self._read_chain(index_ref if slot.index_length else None)
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
            flat, lambda row, k: _entry_from_row(row, k, shape, end, path), path
        )
        self._segments = segments
        self._committed = len(self._entries)

    def _read_chain(self, ref: tuple[int, int, int] | None) -> tuple[list, list]:
        """Follow the index chain from the newest segment: ``(segments, rows)``, oldest first."""
        path = self.path
        segments = []
        rows: list = []
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
            if seg["fields"] not in (INDEX_FIELDS, INDEX_FIELDS_20):
                raise UnsupportedFormatError(
                    f"index fields {str(seg['fields'])[:200]} are neither {INDEX_FIELDS} "
                    f"(format 2.1) nor {INDEX_FIELDS_20} (format 2.0); a newer medmask wrote "
                    "this archive: upgrade medmask to open it",
                    path=path,
                    field="index",
                )
            if not isinstance(seg["rows"], list) or not seg["rows"]:
                raise _bad("index segment has no rows", path, "index")
            if seg["fields"] == INDEX_FIELDS_20:  # format 2.0 rows: no extra
                for r in seg["rows"]:
                    if not (isinstance(r, list) and len(r) == len(INDEX_FIELDS_20)):
                        raise _bad(
                            f"an index row is not a list of {len(INDEX_FIELDS_20)} fields",
                            path,
                            "index",
                        )
                    r.append(None)
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
        return segments, [r for seg_rows in rows for r in seg_rows]

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

    def _encode(
        self,
        name: str,
        array: np.ndarray,
        mapping: LabelMapping,
        codec: Codec,
        attrs: dict | None,
    ) -> Entry:
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
        blob, bbox, voxels, centroid = encode_record(array, codec)
        offset = self._write(blob) if blob else 0
        entry = Entry(
            name,
            mapping.to_dict(),
            offset,
            len(blob),
            codec,
            array.dtype,
            bbox,
            crc32(blob),
            voxels,
            centroid if self.supports_attrs else None,
            dict(attrs or {}),
        )
        entry._mapping = mapping.copy()
        return entry

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
        self._writable()
        entry = self._encode(name, array, mapping, codec, attrs)
        self._entries.append(entry)
        return entry

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
            fields = INDEX_FIELDS if self.minor >= 1 else INDEX_FIELDS_20
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
