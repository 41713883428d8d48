"""Version 1: the ``.msk`` / ``.mska`` layouts of medmask 0.1.x.

See ``docs/format.md`` (section "Version 1") and ``../shared/spec/v1-format.md``.
Reading is exact and defensive; writing produces files 0.1.x opens.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np

from ..bbox import BBox, crop_to_bbox, full_bbox
from ..codecs import BlobSpec, Codec, ZstdCodec, codec_by_id
from ..errors import (
    ArchiveLockedError,
    CorruptFileError,
    MaskValidationError,
    UnsupportedFormatError,
)
from ..io.atomic import atomic_temp
from ..io.source import ByteSource
from ..mapping import LabelMapping
from ..spaces import Space, space_to_disk_json
from ._io import lock_exclusive
from .backend import ArchiveBackend
from .base import (
    Entry,
    MskRecord,
    decode_blob,
    error_context,
    loads_json,
    parse_mapping,
    read_space,
)
from .checks import (
    check_blob_range,
    check_count,
    check_name,
    check_uint,
    check_unique_names,
)
from .records import Record

__all__ = [
    "MSK_HEADER",
    "MSKA_HEADER",
    "encode_msk",
    "decode_msk",
    "read_msk",
    "build_mska",
    "V1Archive",
    "INDEX_CAPACITY",
    "CODEC_IDS",
]

#: The first fields of both version-1 headers.
_HEAD_FIELDS = [
    ("magic", "4s"),
    ("major", "B"),
    ("minor", "B"),
    ("codec_id", "B"),
    ("space_offset", "Q"),
    ("space_length", "Q"),
]
#: ``.msk`` header (62 bytes, no checksum).
MSK_HEADER = Record(
    "header",
    [
        *_HEAD_FIELDS,
        ("mapping_offset", "Q"),
        ("mapping_length", "Q"),
        ("data_offset", "Q"),
        ("data_length", "Q"),
        ("", "7x"),
    ],
)
#: ``.mska`` header (90 bytes, no checksum).
MSKA_HEADER = Record(
    "header",
    [
        *_HEAD_FIELDS,
        ("index_offset", "Q"),
        ("index_length", "Q"),
        ("data_offset", "Q"),
        ("data_length", "Q"),
        ("mask_count", "Q"),
        ("", "27x"),
    ],
)
#: Initial capacity of the zero-padded index region.
INDEX_CAPACITY = 4000

_CODEC = ZstdCodec()
#: The codec ids a version-1 file may declare (the blob of medmask 0.1.x).
CODEC_IDS = frozenset({_CODEC.codec_id})


def encode_msk(
    array: np.ndarray,
    mapping: LabelMapping,
    space: Space,
    codec: Codec | None = None,
    attrs: dict | None = None,
    *,
    path: object = None,
) -> bytes:
    """Serialise one mask as a version-1 ``.msk`` file (bytes; the codec is always zstd).

    Raises:
        MaskValidationError: ``attrs`` given: version 1 cannot hold attributes.
    """
    if attrs:
        raise MaskValidationError(
            "a version-1 file (codec 'zstd') cannot hold attributes; write version 2 "
            "(the default codec) or drop attrs=",
            path=path,
        )
    space_b = space_to_disk_json(space)
    map_b = json.dumps(mapping.to_dict()).encode("utf-8")
    blob = _CODEC.encode(array)
    s_off = MSK_HEADER.size
    m_off = s_off + len(space_b)
    d_off = m_off + len(map_b)
    head = MSK_HEADER.pack_named(
        magic=b"MSK1",
        major=1,
        minor=0,
        codec_id=_CODEC.codec_id,
        space_offset=s_off,
        space_length=len(space_b),
        mapping_offset=m_off,
        mapping_length=len(map_b),
        data_offset=d_off,
        data_length=len(blob),
    )
    return head + space_b + map_b + blob


def decode_msk(source: ByteSource, header: bytes) -> tuple[np.ndarray, LabelMapping, Space]:
    """Read a version-1 ``.msk`` whose first :data:`MSK_HEADER` bytes are ``header``."""
    path = source.name
    h = MSK_HEADER.unpack_named(header)
    codec = _v1_codec(h.codec_id, path)
    space = read_space(source.read(h.space_offset, h.space_length, field="space"), path=path)
    raw_map = source.read(h.mapping_offset, h.mapping_length, field="mapping")
    mapping = parse_mapping(loads_json(raw_map, path=path, field="mapping"), path=path, mask=None)
    blob = source.read(h.data_offset, h.data_length, field="data")
    array = decode_blob(codec, blob, BlobSpec(shape=tuple(space.shape)), path=path, mask=None)
    return array, mapping, space


def read_msk(source: ByteSource, header: bytes, *, cropped: bool = False) -> MskRecord:
    """Read a version-1 ``.msk`` (see :func:`medmask.format.read_msk_record`)."""
    array, mapping, space = decode_msk(source, header)
    box = None
    if cropped:
        array, box = crop_to_bbox(array)
    voxels = int(np.count_nonzero(array))
    return MskRecord(array, mapping, space, box, 1, 0, voxels, None, {}, _CODEC.name)


def _v1_codec(codec_id: int, path: object) -> Codec:
    """The codec of a version-1 file: only :data:`CODEC_IDS` are valid there."""
    with error_context(path):
        codec = codec_by_id(codec_id)
    if codec.codec_id not in CODEC_IDS:
        raise UnsupportedFormatError(
            f"codec id {codec_id} ({codec.name}) is not valid in a version-1 file; "
            "version 1 uses codec id 0 (zstd)",
            path=path,
            field="codec_id",
        )
    return codec


def build_mska(space: Space, items: list[tuple[str, bytes, dict[str, int]]]) -> bytes:
    """Serialise a whole version-1 archive.

    Args:
        space: The archive's ``(z, y, x)`` space.
        items: ``(name, v1 blob, mapping dict)`` per mask, in order.
    """
    space_b = space_to_disk_json(space)
    s_off = MSKA_HEADER.size
    i_off = s_off + len(space_b)
    capacity = INDEX_CAPACITY
    while True:
        d_off = i_off + capacity
        entries = []
        pos = d_off
        for name, blob, mapping in items:
            entries.append({"name": name, "offset": pos, "length": len(blob), "mapping": mapping})
            pos += len(blob)
        index_b = json.dumps(entries).encode("utf-8")
        if len(index_b) <= capacity:
            break
        capacity *= 2
    data_len = pos - d_off
    head = MSKA_HEADER.pack_named(
        magic=b"MSKA",
        major=1,
        minor=0,
        codec_id=_CODEC.codec_id,
        space_offset=s_off,
        space_length=len(space_b),
        index_offset=i_off,
        index_length=capacity,
        data_offset=d_off,
        data_length=data_len,
        mask_count=len(items),
    )
    return b"".join(
        [head, space_b, index_b, b"\0" * (capacity - len(index_b))] + [blob for _, blob, _ in items]
    )


_ROW_KEYS = frozenset({"name", "offset", "length", "mapping"})


def _check_row(row: object, k: int, size: int, path: object) -> None:
    """Say what is wrong with a version-1 index row (an object with name, offset, length,
    mapping), one named check at a time."""
    if not isinstance(row, dict) or not set(row) >= _ROW_KEYS:
        raise CorruptFileError(
            f"index entry {k} is not an object with name, offset, length, mapping",
            path=path,
            field="index",
        )
    name, off, length = row["name"], row["offset"], row["length"]
    check_name(name, k, path=path)
    check_uint(off, "offset", path=path, mask=name, field="index")
    check_uint(length, "length", path=path, mask=name, field="index")
    check_blob_range(off, length, 0, size, path=path, mask=name, field="index")


def _entries(rows: list, codec: Codec, box: BBox, size: int, path: object) -> list[Entry]:
    """The validated entries of the index rows.

    Every row is tested at once (a sound archive pays one comparison chain per row);
    a row that fails goes through :func:`_check_row`, which names the failing check.
    """
    entries = []
    for k, row in enumerate(rows):
        try:
            name, off, length, mapping = row["name"], row["offset"], row["length"], row["mapping"]
            sound = (
                type(name) is str
                and name
                and type(off) is int
                and type(length) is int
                and off >= 0
                and length >= 0
                and off + length <= size
            )
        except (TypeError, KeyError, IndexError):
            sound = False
        if not sound:
            _check_row(row, k, size, path)
        entries.append(Entry(name, mapping, off, length, codec, bbox=box))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        check_unique_names(names, path=path)
    return entries


def _parse_index(source: ByteSource, header: bytes) -> tuple[Codec, Space, list[Entry]]:
    """Read and validate a version-1 archive's header, space and index."""
    path = source.name
    size = source.size()
    h = MSKA_HEADER.unpack_named(header)
    codec = _v1_codec(h.codec_id, path)
    space = read_space(source.read(h.space_offset, h.space_length, field="space"), path=path)
    raw_index = source.read(h.index_offset, h.index_length, field="index").rstrip(b"\0")
    rows = loads_json(raw_index, path=path, field="index") if raw_index else []
    if not isinstance(rows, list):
        raise CorruptFileError("index must be a JSON array", path=path, field="index")
    check_count(h.mask_count, len(rows), path=path, what="header", field="mask_count")
    box = full_bbox(tuple(space.shape))
    return codec, space, _entries(rows, codec, box, size, path)


class V1Archive(ArchiveBackend):
    """A version-1 archive (see :class:`~medmask.format.backend.ArchiveBackend`).

    Read-only, blobs are read from the source on demand. Open for writing, all blobs are
    held in memory (version-1 archives are small) and every commit rewrites the whole file
    to a temporary sibling renamed over the original (a crash leaves the old or the new
    file), locking the new file before it is renamed into place.
    """

    version = 1
    default_codec = "zstd"
    minor = 0

    def __init__(
        self,
        path: object,
        space: Space | None,
        entries: list[Entry],
        *,
        source: ByteSource | None = None,
        blobs: dict[str, bytes] | None = None,
        exists: bool = False,
    ) -> None:
        self.path = path
        self.source = source
        self._space = space
        self._entries = entries
        self._blobs = blobs  # None: read-only, blobs come from the source
        self._exists = exists
        self._saved: tuple | None = None  # the committed state, while changes are staged
        self.codec = _CODEC

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, source: ByteSource, *, fd: int | None = None) -> V1Archive:
        header = source.read(0, MSKA_HEADER.size, field="header")
        _codec, space, entries = _parse_index(source, header)
        if fd is None:
            return cls(source.name, space, entries, source=source)
        for e in entries:
            e.mapping(source.name)  # validate before anything is rewritten
        blobs = source.read_many([(e.offset, e.length) for e in entries])
        by_name = {e.name: b for e, b in zip(entries, blobs, strict=True)}
        return cls(source.name, space, entries, source=source, blobs=by_name, exists=True)

    @classmethod
    def create(cls, path: Path, *, space: Space | None, minor: int | None = None) -> V1Archive:
        return cls(path, space, [], blobs={}, exists=Path(path).exists())

    @classmethod
    def create_missing(cls, path: Path, *, space: Space | None, minor: int | None = None):
        if space is None:  # a version-1 file cannot exist without a space: the first commit
            return cls(path, None, [], blobs={}, exists=False)
        with contextlib.suppress(FileExistsError):  # noqa: SIM117 - the link may raise it
            with atomic_temp(Path(path), replace=False) as (fh, _tmp):
                fh.write(build_mska(space, []))
        return None

    # -- state -----------------------------------------------------------------------------
    @property
    def space(self) -> Space | None:
        return self._space

    @property
    def entries(self) -> list[Entry]:
        return self._entries

    @property
    def names(self) -> list[str]:
        return [e.name for e in self._entries]

    # -- reading ---------------------------------------------------------------------------
    def _blob(self, entry: Entry) -> bytes:
        if self._blobs is not None:
            return self._blobs[entry.name]
        return self.source.read(entry.offset, entry.length, field="data", mask=entry.name)

    def _decode(self, entry: Entry, blob: bytes) -> np.ndarray:
        spec = BlobSpec(shape=tuple(self._space.shape))
        return decode_blob(self.codec, blob, spec, path=self.path, mask=entry.name)

    def read_box(self, entry: Entry, out: np.ndarray | None = None) -> np.ndarray:
        """Decode the stored region (the full volume for version 1)."""
        array = self._decode(entry, self._blob(entry))
        if out is None:
            return array
        out[...] = array
        return out

    def read_boxes(self, entries):
        if self._blobs is not None:
            return [self.read_box(e) for e in entries]
        blobs = self.source.read_many([(e.offset, e.length) for e in entries])
        return [self._decode(e, b) for e, b in zip(entries, blobs, strict=True)]

    def read_full(self, entry: Entry) -> np.ndarray:
        return self.read_box(entry)

    def read_many_full(self, entries):
        return self.read_boxes(entries)

    def read_cropped(self, entry: Entry):
        return crop_to_bbox(self.read_box(entry))

    # -- staging ---------------------------------------------------------------------------
    def _save(self) -> None:
        if self._blobs is None:
            raise io.UnsupportedOperation(f"{self.path}: opened read-only")
        if self._saved is None:
            self._saved = (list(self._entries), dict(self._blobs), self._space)

    def set_space(self, space: Space) -> None:
        self._save()
        self._space = space

    def _entry(self, name: str, array: np.ndarray, mapping: LabelMapping) -> Entry:
        blob = self.codec.encode(array)
        self._blobs[name] = blob
        entry = Entry(
            name, mapping.to_dict(), 0, len(blob), self.codec, bbox=full_bbox(array.shape)
        )
        entry._mapping = mapping.copy()
        return entry

    def stage(self, name, array, mapping, codec, attrs=None) -> Entry:
        if attrs:
            raise MaskValidationError("version-1 archives cannot hold attributes", path=self.path)
        self._save()
        entry = self._entry(name, array, mapping)
        self._entries.append(entry)
        return entry

    def stage_delete(self, index: int) -> None:
        self._save()
        entry = self._entries.pop(index)
        del self._blobs[entry.name]

    def stage_replace(self, index, array, mapping, codec, attrs) -> Entry:
        if attrs:
            raise MaskValidationError("version-1 archives cannot hold attributes", path=self.path)
        self._save()
        entry = self._entry(self._entries[index].name, array, mapping)
        self._entries[index] = entry
        return entry

    def stage_attrs(self, index: int, attrs: dict) -> None:
        if attrs:
            raise MaskValidationError("version-1 archives cannot hold attributes", path=self.path)

    def rollback(self) -> None:
        if self._saved is not None:
            self._entries, self._blobs, self._space = self._saved
            self._saved = None

    def _data(self) -> bytes:
        if self._space is None:
            raise MaskValidationError(
                "a version-1 archive needs a space; pass space= or add a mask", path=self.path
            )
        return build_mska(
            self._space,
            [(e.name, self._blobs[e.name], e.raw_mapping) for e in self._entries],
        )

    def commit(self) -> int:
        """Rewrite the file (temporary sibling, locked before it is renamed into place).

        Returns:
            The locked descriptor of the new file (the caller's lock from now on).

        Raises:
            ArchiveLockedError: The archive did not exist when opened and another writer
                created it meanwhile.
        """
        data = self._data()
        target = Path(self.path)
        lock_fd = None
        try:
            with atomic_temp(target, replace=self._exists) as (fh, tmp):
                fh.write(data)
                lock_fd = os.open(tmp, os.O_RDWR)
                lock_exclusive(lock_fd, target)  # nobody else can know this file yet
        except FileExistsError:
            if lock_fd is not None:
                os.close(lock_fd)
            raise ArchiveLockedError(
                "another writer created this archive meanwhile; reopen it to append", path=target
            ) from None
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        self._exists = True
        self._saved = None
        return lock_fd

    def publish(self) -> None:
        data = self._data()
        with atomic_temp(Path(self.path)) as (fh, _tmp):
            fh.write(data)
        self._saved = None
