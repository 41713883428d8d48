"""Version 2: the ``.msk`` layout (header, meta JSON, blob), written once, atomically."""

from __future__ import annotations

import json

import numpy as np

from ...attrs import make_extra
from ...bbox import bbox_slices
from ...codecs import Codec
from ...io.source import ByteSource
from ...mapping import LabelMapping
from ...spaces import Space, space_to_disk_json
from .._io import crc32, read_verified
from ..base import (
    Entry,
    MskRecord,
    loads_json,
    read_space,
)
from .layout import (
    MAX_INDEX_BYTES,
    MSK_HEADER,
)
from .rows import (
    _bad,
    _entry_from_row,
    encode_record,
    read_box,
)


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
        minor=1,  # a .msk meta's fields and extra record are those of a 2.1 index row
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
        array,
        mapping,
        space,
        entry.bbox,
        2,
        header[5],
        entry.voxels,
        entry.centroid,
        entry.attrs,
        entry.codec.name,
    )
