"""Version 2: index rows of each layout (validated one named check at a time) and blob
records."""

from __future__ import annotations

import numpy as np

from ...attrs import centroid_of, make_extra, parse_extra
from ...bbox import BBox, bbox_slices, bounding_box
from ...codecs import DTYPE_NAMES, MASK_DTYPES, Codec, check_dtype, codec_by_id
from ...errors import CorruptFileError
from ...io.source import ByteSource
from .._io import read_verified
from ..base import Entry, decode_blob
from ..checks import (
    check_bbox,
    check_blob_holds,
    check_blob_range,
    check_name,
    check_uint,
    check_voxels,
    is_uint,
)
from .layout import (
    CENTROID_SCALE,
    DATA_START,
    INDEX_LAYOUTS,
    ROWS_MINOR,
)


def encode_record(
    array: np.ndarray, codec: Codec, origin: tuple[int, int, int] | None = None
) -> tuple[bytes, BBox | None, int, tuple[float, float, float] | None]:
    """Crop ``array`` to its bounding box and encode it.

    Args:
        array: The mask on the whole grid, or (``origin``) a box of the grid holding every
            voxel of it.
        codec: The codec.
        origin: ``(z0, y0, x0)``: where the box ``array`` lies on the grid.

    Returns:
        ``(blob, bbox, voxels, centroid)``; an empty mask gives ``(b"", None, 0, None)``.
    """
    bbox = bounding_box(array)
    if bbox is None:
        return b"", None, 0, None
    crop = array[bbox_slices(bbox)]
    if origin is not None:
        z, y, x = (int(v) for v in origin)
        bbox = (bbox[0] + z, bbox[1] + z, bbox[2] + y, bbox[3] + y, bbox[4] + x, bbox[5] + x)
    voxels, centroid = centroid_of(crop, (bbox[0], bbox[2], bbox[4]))
    return codec.encode(crop), bbox, voxels, centroid


def _bad(msg: str, path: object, field: str, mask: str | None = None) -> CorruptFileError:
    return CorruptFileError(msg, path=path, mask=mask, field=field)


#: Bounds of the unsigned integer fields of a row (the checks below inline ``is_uint``'s
#: common case: this runs once per index row).
_U64, _U32 = 1 << 64, 1 << 32
#: Columns of a row, by minor version.
_WIDTH = {minor: len(fields) for minor, fields in INDEX_LAYOUTS.items()}


def _entry_from_row(
    row: object,
    k: int,
    shape: tuple[int, ...] | None,
    end: int,
    path: object,
    minor: int = ROWS_MINOR,
) -> Entry:
    """Validate one index row of the layout of ``minor`` (:data:`INDEX_LAYOUTS`), one named
    check per field (:mod:`medmask.format.checks`; a check's function runs where the inline
    test of its common case fails, to say why)."""
    width = _WIDTH[minor]
    if type(row) is not list or len(row) != width:
        raise _bad(f"index row {k} is not a list of {width} fields", path, "index")
    name, codec_id, off, length, crc, dtype, bbox, voxels, mapping = row[:9]
    if type(name) is not str or not name:
        check_name(name, k, path=path, row="index row")
    if not (type(codec_id) is int and 0 <= codec_id < 256) and not is_uint(codec_id, 8):
        raise _bad(f"invalid codec id {codec_id!r}", path, "index.codec", name)
    try:  # error_context inlined
        codec = codec_by_id(codec_id)
    except CorruptFileError as err:
        raise err.add_context(path=path, mask=name)  # noqa: B904 - the same exception
    if not (
        type(off) is int
        and type(length) is int
        and type(crc) is int
        and 0 <= off < _U64
        and 0 <= length < _U64
        and 0 <= crc < _U32
    ) and not (is_uint(off) and is_uint(length) and is_uint(crc, 32)):
        raise _bad(f"invalid offset/length/crc {off!r}/{length!r}/{crc!r}", path, "index", name)
    if length and not DATA_START <= off <= end - length:
        check_blob_range(off, length, DATA_START, end, path=path, mask=name, field="index.offset")
    np_dtype = MASK_DTYPES.get(dtype) if type(dtype) is str else None
    if np_dtype is None:
        try:
            check_dtype(dtype, field="index.dtype")
        except CorruptFileError as err:
            raise err.add_context(path=path, mask=name)  # noqa: B904 - the same exception
    if not (type(voxels) is int and 0 <= voxels < _U64) and not is_uint(voxels):
        check_uint(voxels, "voxel count", path=path, mask=name, field="index.voxels")
    if bbox is None and not (length or voxels):
        box = None  # an empty mask
    else:
        box = _row_box(bbox, shape, length, voxels, path, name)
        check_voxels(voxels, box, path=path, mask=name)
        check_blob_holds(codec, np_dtype, box, length, path=path, mask=name)
    if minor >= 2:
        if type(mapping) is int:  # a bare label number: short for {name: label}
            mapping = {name: mapping}
        raw_c, extra = row[9], row[10]
        centroid = _fixed_centroid(raw_c, box, path, name)
        attrs = {}
        if extra is not None:
            attrs = parse_extra(extra, bbox=box, path=path, mask=name, centroid=False)[1]
    else:
        centroid, attrs = parse_extra(row[9] if minor else None, bbox=box, path=path, mask=name)
    return Entry(name, mapping, off, length, codec, np_dtype, box, crc, voxels, centroid, attrs)


def _fixed_centroid(
    raw: object, box: BBox | None, path: object, name: str
) -> tuple[float, float, float] | None:
    """A 2.2 centroid column: ``None``, or three integers (units of 1/:data:`CENTROID_SCALE`
    voxel) inside the mask's bounding box (within 1/1000 voxel)."""
    if raw is None:
        return None
    if not (type(raw) is list and len(raw) == 3 and all(type(c) is int for c in raw)):
        raise _bad(f"centroid {str(raw)[:80]} is not three integers", path, "index.centroid", name)
    if box is None:
        raise _bad("an empty mask cannot have a centroid", path, "index.centroid", name)
    slack = CENTROID_SCALE // 1000
    for axis, c in enumerate(raw):
        lo, hi = box[2 * axis] * CENTROID_SCALE, (box[2 * axis + 1] - 1) * CENTROID_SCALE
        if not lo - slack <= c <= hi + slack:
            raise _bad(
                f"centroid {[v / CENTROID_SCALE for v in raw]} lies outside the bounding box "
                f"{list(box)}",
                path,
                "index.centroid",
                name,
            )
    return raw[0] / CENTROID_SCALE, raw[1] / CENTROID_SCALE, raw[2] / CENTROID_SCALE


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
    """The index row of ``e`` in the layout of ``minor``."""
    row = [
        e.name,
        e.codec.codec_id,
        e.offset,
        e.length,
        e.crc,
        DTYPE_NAMES[e.dtype],
        list(e.bbox) if e.bbox is not None else None,
        e.voxels,
        e.raw_mapping,
    ]
    if minor >= 2:
        m = e.raw_mapping
        if type(m) is dict and len(m) == 1 and type(m.get(e.name)) is int:
            row[8] = m[e.name]
        c = e.centroid
        row.append(None if c is None else [round(v * CENTROID_SCALE) for v in c])
        row.append(make_extra(None, e.attrs) or None)
    elif minor == 1:
        row.append(make_extra(e.centroid, e.attrs) or None)
    return row


def _decode(entry: Entry, blob: bytes, path: object, out: np.ndarray | None) -> np.ndarray:
    return decode_blob(entry.codec, blob, entry.spec, path=path, mask=entry.name, out=out)


def read_blob(source: ByteSource, entry: Entry) -> bytes:
    """Read a non-empty entry's blob and verify its CRC.

    Raises:
        CorruptFileError: The blob's CRC fails (naming the file and mask).
    """
    return read_verified(
        source,
        entry.offset,
        entry.length,
        entry.crc,
        field="data",
        mask=entry.name,
        what="blob checksum mismatch (the data is damaged)",
        crc_field="data.crc32",
    )


def read_box(source: ByteSource, entry: Entry, out: np.ndarray | None = None) -> np.ndarray:
    """Read, verify and decode the stored (cropped) region of a non-empty entry.

    With ``out`` (a writable ``(z, y, x)`` view of the box's shape) the region is
    decoded into it, which bounds the temporary memory when the codec supports it.
    """
    return _decode(entry, read_blob(source, entry), source.name, out)
