"""Version 1: the ``.msk`` / ``.mska`` layouts of medmask 0.1.x.

See ``docs/format.md`` (section "Version 1") and ``../shared/spec/v1-format.md``.
Reading is exact and defensive; writing produces files 0.1.x opens.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from ..codecs import ZstdCodec, codec_by_id
from ..errors import CorruptFileError, UnsupportedFormatError
from ..mapping import LabelMapping
from ..spaces import Space, space_to_disk_json
from ._io import pread_exact
from .base import Entry, full_bbox, parse_mapping, read_space

__all__ = [
    "MSK_HEADER",
    "MSKA_HEADER",
    "encode_msk",
    "decode_msk",
    "build_mska",
    "MskaV1Reader",
    "INDEX_CAPACITY",
]

#: ``.msk`` header: magic, major, minor, codec id, space/mapping/data offset+length, 7 pad bytes.
MSK_HEADER = struct.Struct("<4s2BB6Q7x")
#: ``.mska`` header: magic, major, minor, codec id, space/index/data offset+length, mask count, 27 pad.
MSKA_HEADER = struct.Struct("<4s2BB7Q27x")
#: Initial capacity of the zero-padded index region.
INDEX_CAPACITY = 4000

_CODEC = ZstdCodec()


def encode_msk(array: np.ndarray, mapping: LabelMapping, space: Space) -> bytes:
    """Serialise one mask as a version-1 ``.msk`` file (bytes)."""
    space_b = space_to_disk_json(space)
    map_b = json.dumps(mapping.to_dict()).encode("utf-8")
    blob = _CODEC.encode(array)
    s_off = MSK_HEADER.size
    m_off = s_off + len(space_b)
    d_off = m_off + len(map_b)
    head = MSK_HEADER.pack(
        b"MSK1", 1, 0, _CODEC.codec_id, s_off, len(space_b), m_off, len(map_b), d_off, len(blob)
    )
    return head + space_b + map_b + blob


def decode_msk(fd: int, path: object, header: bytes) -> tuple[np.ndarray, LabelMapping, Space]:
    """Read a version-1 ``.msk`` whose first :data:`MSK_HEADER` bytes are ``header``."""
    _magic, _major, _minor, codec_id, s_off, s_len, m_off, m_len, d_off, d_len = MSK_HEADER.unpack(
        header
    )
    codec = _v1_codec(codec_id, path)
    space = read_space(pread_exact(fd, s_off, s_len, path=path, field="space"), path=path)
    raw_map = pread_exact(fd, m_off, m_len, path=path, field="mapping")
    mapping = parse_mapping(_loads(raw_map, path=path, field="mapping"), path=path, mask=None)
    blob = pread_exact(fd, d_off, d_len, path=path, field="data")
    array = codec.decode(blob, shape=tuple(space.shape), path=path)
    return array, mapping, space


def _loads(raw: bytes, *, path: object, field: str, mask: str | None = None) -> object:
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptFileError(f"invalid JSON ({exc})", path=path, mask=mask, field=field) from None


def _v1_codec(codec_id: int, path: object):
    """The codec of a version-1 file: only version-1 codecs are valid there."""
    codec = codec_by_id(codec_id, path=path)
    if codec.format_version != 1:
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
    head = MSKA_HEADER.pack(
        b"MSKA",
        1,
        0,
        _CODEC.codec_id,
        s_off,
        len(space_b),
        i_off,
        capacity,
        d_off,
        data_len,
        len(items),
    )
    return b"".join(
        [head, space_b, index_b, b"\0" * (capacity - len(index_b))] + [blob for _, blob, _ in items]
    )


class MskaV1Reader:
    """Random access to a version-1 archive open on ``fd``.

    The header, space and index are read and validated once, here.
    """

    version = 1

    def __init__(self, fd: int, path: object, header: bytes, size: int) -> None:
        self.fd = fd
        self.path = path
        (_m, _maj, _min, codec_id, s_off, s_len, i_off, i_len, _d_off, _d_len, count) = (
            MSKA_HEADER.unpack(header)
        )
        self.codec = _v1_codec(codec_id, path)
        self.space: Space | None = read_space(
            pread_exact(fd, s_off, s_len, path=path, field="space"), path=path
        )
        raw_index = pread_exact(fd, i_off, i_len, path=path, field="index").rstrip(b"\0")
        rows = _loads(raw_index, path=path, field="index") if raw_index else []
        if not isinstance(rows, list):
            raise CorruptFileError("index must be a JSON array", path=path, field="index")
        if len(rows) != count:
            raise CorruptFileError(
                f"header says {count} masks but the index lists {len(rows)}",
                path=path,
                field="mask_count",
            )
        self.entries: list[Entry] = []
        box = full_bbox(tuple(self.space.shape))
        seen: set[str] = set()
        for k, row in enumerate(rows):
            if not isinstance(row, dict) or not {"name", "offset", "length", "mapping"} <= set(row):
                raise CorruptFileError(
                    f"index entry {k} is not an object with name, offset, length, mapping",
                    path=path,
                    field="index",
                )
            name, off, length = row["name"], row["offset"], row["length"]
            if not isinstance(name, str) or not name:
                raise CorruptFileError(
                    f"index entry {k} has an invalid name {name!r}", path=path, field="index"
                )
            if name in seen:
                raise CorruptFileError(
                    f"duplicate name {name!r} in the index", path=path, mask=name, field="index"
                )
            seen.add(name)
            for val, what in ((off, "offset"), (length, "length")):
                if isinstance(val, bool) or not isinstance(val, int) or val < 0:
                    raise CorruptFileError(
                        f"invalid {what} {val!r}", path=path, mask=name, field="index"
                    )
            if off + length > size:
                raise CorruptFileError(
                    f"blob [{off}, {off + length}) lies past the end of the file ({size} bytes)",
                    path=path,
                    mask=name,
                    field="index",
                )
            self.entries.append(Entry(name, row["mapping"], off, length, self.codec, bbox=box))

    def read_box(self, entry: Entry) -> np.ndarray:
        """Decode the stored region (the full volume for version 1)."""
        blob = pread_exact(
            self.fd, entry.offset, entry.length, path=self.path, field="data", mask=entry.name
        )
        return self.codec.decode(
            blob, shape=tuple(self.space.shape), path=self.path, mask=entry.name
        )
