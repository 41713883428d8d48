"""An independent writer and blob reader of format version 1, written from
``docs/format.md`` (and ``../shared/spec/v1-format.md``) with ``struct``, not with medmask."""

from __future__ import annotations

import json
import struct

import numpy as np
import zstandard
from spacetransformer import Space

MSK = struct.Struct("<4s2BB6Q7x")
MSKA = struct.Struct("<4s2BB7Q27x")


def spec_blob(arr: np.ndarray) -> bytes:
    """A version-1 data blob, written from the spec's table."""
    dt = str(arr.dtype).encode("ascii")
    if arr.dtype == bool:
        flag, payload = 1, np.packbits(arr.reshape(-1)).tobytes()
    else:
        flag, payload = 0, np.ascontiguousarray(arr).tobytes()
    head = (
        bytes([flag, len(dt)]) + dt + bytes([arr.ndim]) + struct.pack(f"<{arr.ndim}q", *arr.shape)
    )
    return head + zstandard.ZstdCompressor().compress(payload)


def xyz_space_json(shape_zyx, spacing=(0.8, 0.9, 2.5), origin=(-10.0, 20.0, 5.0)) -> bytes:
    """The on-disk space JSON: (x, y, z) order, as Space.to_json writes it."""
    sp = Space(shape=tuple(shape_zyx[::-1]), spacing=spacing, origin=origin)
    return sp.to_json().encode()


def spec_msk(arr: np.ndarray, mapping: dict, space_json: bytes) -> bytes:
    """A ``.msk`` of version 1."""
    map_b = json.dumps(mapping).encode()
    blob = spec_blob(arr)
    s_off = 62
    m_off = s_off + len(space_json)
    d_off = m_off + len(map_b)
    head = MSK.pack(b"MSK1", 1, 0, 0, s_off, len(space_json), m_off, len(map_b), d_off, len(blob))
    assert len(head) == 62
    return head + space_json + map_b + blob


def spec_mska(items: list[tuple[str, np.ndarray, dict]], space_json: bytes, capacity=4000) -> bytes:
    """A ``.mska`` of version 1 (``items``: ``(name, full array, mapping)``)."""
    s_off = 90
    i_off = s_off + len(space_json)
    d_off = i_off + capacity
    entries, blobs, pos = [], [], d_off
    for name, arr, mapping in items:
        b = spec_blob(arr)
        entries.append({"name": name, "offset": pos, "length": len(b), "mapping": mapping})
        blobs.append(b)
        pos += len(b)
    index = json.dumps(entries).encode()
    assert len(index) <= capacity
    head = MSKA.pack(
        b"MSKA", 1, 0, 0, s_off, len(space_json), i_off, capacity, d_off, pos - d_off, len(items)
    )
    assert len(head) == 90
    return head + space_json + index + b"\0" * (capacity - len(index)) + b"".join(blobs)


def decode_blob(blob: bytes) -> np.ndarray:
    """The array of a version-1 blob, parsed from the spec's table (checks its header)."""
    flag, dlen = blob[0], blob[1]
    dtype = blob[2 : 2 + dlen].decode()
    ndim = blob[2 + dlen]
    shape = struct.unpack_from(f"<{ndim}q", blob, 3 + dlen)
    payload = blob[3 + dlen + 8 * ndim :]
    assert flag == (dtype == "bool"), (flag, dtype)
    frame = zstandard.get_frame_parameters(payload)
    raw = zstandard.ZstdDecompressor().decompress(payload)
    assert frame.content_size == len(raw)
    if flag:
        n = int(np.prod(shape))
        return np.unpackbits(np.frombuffer(raw, np.uint8))[:n].reshape(shape).astype(bool)
    return np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).reshape(shape).astype(dtype)


def read_msk(raw: bytes) -> dict:
    """Parse a version-1 ``.msk``: ``{"space" (on-disk dict), "mapping", "array"}``."""
    magic, major, minor, codec, s_off, s_len, m_off, m_len, d_off, d_len = MSK.unpack_from(raw)
    assert (magic, major, minor, codec) == (b"MSK1", 1, 0, 0)
    assert raw[55:62] == b"\0" * 7 and s_off == 62 and m_off == s_off + s_len
    assert d_off == m_off + m_len and d_off + d_len == len(raw)
    return {
        "space": json.loads(raw[s_off : s_off + s_len]),
        "mapping": json.loads(raw[m_off : m_off + m_len]),
        "array": decode_blob(raw[d_off : d_off + d_len]),
    }


def read_mska(raw: bytes) -> dict:
    """Parse a version-1 ``.mska``: ``{"space", "entries" (the index), "arrays" ({name: array})}``."""
    head = MSKA.unpack_from(raw)
    magic, major, minor, codec, s_off, s_len, i_off, i_len, d_off, d_len, count = head
    assert (magic, major, minor, codec) == (b"MSKA", 1, 0, 0)
    assert raw[63:90] == b"\0" * 27 and s_off == 90 and i_off == s_off + s_len
    assert d_off == i_off + i_len and d_off + d_len <= len(raw)
    entries = json.loads(raw[i_off : i_off + i_len].rstrip(b"\0"))
    assert len(entries) == count
    arrays = {}
    for e in entries:
        assert set(e) == {"name", "offset", "length", "mapping"}
        assert d_off <= e["offset"] and e["offset"] + e["length"] <= d_off + d_len
        arrays[e["name"]] = decode_blob(raw[e["offset"] : e["offset"] + e["length"]])
    return {"space": json.loads(raw[s_off : s_off + s_len]), "entries": entries, "arrays": arrays}
