"""An independent writer and reader of format version 2, written from ``docs/format.md`` alone.

Nothing here imports medmask: the layout is rebuilt from the page with ``struct``,
``zlib.crc32``, ``zstandard`` and ``numpy.packbits``, so that tests can check medmask's files
against the spec and medmask's reader against files the spec describes (the golden files of
``tests/fixtures/golden/``, written by ``tests/format/make_golden.py``). Where the page leaves
a choice to the writer (zstd level, JSON spacing, which slot is free), this writer takes a
different one than medmask does on purpose, so a reader that depends on medmask's choices
fails.

The reader is strict: every field the page defines is checked (``assert``: this is test
code), and it returns what it read as plain Python data (dicts, lists, numpy arrays).
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import zstandard

MSK_HEADER = struct.Struct("<4sBBHIQQIIQQ8xI")  # 64 bytes, CRC over bytes 0-59
PREAMBLE = struct.Struct("<4sBBHHHI")  # 16 bytes, CRC over bytes 0-11
SLOT = struct.Struct("<QQQIIQIIQII")  # 64 bytes, CRC over bytes 0-59
SLOT_OFFSETS = (16, 80)
DATA_START = 144
FIELDS_20 = ["name", "codec", "offset", "length", "crc32", "dtype", "bbox", "voxels", "mapping"]
#: ``fields`` of an index segment, by minor version (the page's table; 2.3 rows are 2.2's).
FIELDS = {
    0: FIELDS_20,
    1: [*FIELDS_20, "extra"],
    2: [*FIELDS_20, "centroid", "extra"],
    3: [*FIELDS_20, "centroid", "extra"],
}
#: ``fields`` of the archive-attributes segment (format 2.3): one row ``[attrs]``.
ARCHIVE_FIELDS = ["archive_attrs"]
META_KEYS = {"space", "mapping", "codec", "dtype", "bbox", "voxels"}
SPACE_KEYS = ["shape", "origin", "spacing", "x_orientation", "y_orientation", "z_orientation"]
DTYPES = ("bool", "uint8", "uint16", "uint32")
SCALE = 10_000  # a 2.2 centroid column holds round(index * 10000)


def crc(data: bytes) -> int:
    """CRC-32 of the zlib polynomial, unsigned."""
    return zlib.crc32(data) & 0xFFFFFFFF


# -- what a mask is (the numbers the index records) -------------------------------------------
def bbox_of(array: np.ndarray) -> list[int] | None:
    """``[z0, z1, y0, y1, x0, x1]`` (half-open) of the non-zero voxels, or None."""
    nz = np.argwhere(array != 0)
    if nz.size == 0:
        return None
    lo, hi = nz.min(axis=0), nz.max(axis=0) + 1
    return [int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1]), int(lo[2]), int(hi[2])]


def centroid_of(array: np.ndarray) -> list[float] | None:
    """The mean of ``numpy.argwhere(array != 0)`` (the page's definition), or None."""
    nz = np.argwhere(array != 0)
    return None if nz.size == 0 else [float(v) for v in nz.mean(axis=0)]


def crop(array: np.ndarray, box: list[int]) -> np.ndarray:
    return array[box[0] : box[1], box[2] : box[3], box[4] : box[5]]


# -- blobs (codec 1, "bitzstd") ----------------------------------------------------------------
def payload(box: np.ndarray) -> bytes:
    """The decompressed blob: rows of ``x`` bit-packed (big-endian bits) for bool, raw
    little-endian bytes for integer dtypes."""
    if box.dtype == np.bool_:
        return np.packbits(box, axis=2).tobytes()  # numpy's default bit order is big-endian
    return np.ascontiguousarray(box, dtype=box.dtype.newbyteorder("<")).tobytes()


def blob(box: np.ndarray, level: int = 3) -> bytes:
    """One zstd frame (content size in its header) of :func:`payload`."""
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(payload(box))


def decode_blob(data: bytes, dtype: str, shape: tuple[int, int, int]) -> np.ndarray:
    """The box a blob holds (its frame's declared size checked against the page's formula)."""
    z, y, x = shape
    expect = z * y * ((x + 7) // 8) if dtype == "bool" else z * y * x * np.dtype(dtype).itemsize
    assert zstandard.frame_content_size(data) == expect, "frame content size"
    raw = zstandard.ZstdDecompressor().decompress(data)
    assert len(raw) == expect
    if dtype == "bool":
        rows = np.frombuffer(raw, np.uint8).reshape(z, y, (x + 7) // 8)
        bits = np.unpackbits(rows, axis=2)  # big-endian bit order
        assert not bits[:, :, x:].any(), "row padding bits must be zero"
        return bits[:, :, :x].astype(bool)
    return np.frombuffer(raw, np.dtype(dtype).newbyteorder("<")).reshape(shape).astype(dtype)


# -- the space ---------------------------------------------------------------------------------
def space_json(space_xyz: dict) -> bytes:
    """The on-disk space (``(x, y, z)`` order), keys in another order than medmask writes."""
    return json.dumps({k: space_xyz[k] for k in reversed(SPACE_KEYS)}).encode()


def check_space(raw: bytes) -> dict:
    obj = json.loads(raw.decode("utf-8"))
    assert isinstance(obj, dict) and set(obj) == set(SPACE_KEYS), f"space keys {sorted(obj)}"
    for k in SPACE_KEYS:
        assert isinstance(obj[k], list) and len(obj[k]) == 3, k
    assert all(type(s) is int and s > 0 for s in obj["shape"])
    return obj


def shape_zyx(space_xyz: dict) -> tuple[int, int, int]:
    return tuple(space_xyz["shape"][::-1])


# -- rows --------------------------------------------------------------------------------------
def extra_record(minor: int, centroid: list[float] | None, attrs: dict | None) -> dict | None:
    """The ``extra`` of a row (2.1: centroid rounded to 4 decimals and attrs; 2.2: attrs)."""
    extra: dict = {}
    if minor == 1 and centroid is not None:
        extra["centroid"] = [round(c, 4) for c in centroid]
    if attrs:
        extra["attrs"] = attrs
    return extra or None


def make_row(minor: int, name: str, stored: dict) -> list:
    """An index row in the layout of ``minor`` (``stored``: what :class:`SpecArchive` keeps)."""
    row = [
        name,
        1,
        stored["offset"],
        stored["length"],
        stored["crc32"],
        stored["dtype"],
        stored["bbox"],
        stored["voxels"],
        stored["mapping"],
    ]
    if minor >= 2:
        if list(stored["mapping"].items()) == [(name, stored["mapping"].get(name))]:
            row[8] = stored["mapping"][name]  # the one pair {name: n} is written as n
        c = stored["centroid"]
        row.append(None if c is None else [round(v * SCALE) for v in c])
    if minor >= 1:
        row.append(extra_record(minor, stored["centroid"], stored["attrs"]))
    return row


# -- writers -----------------------------------------------------------------------------------
def write_msk(
    array: np.ndarray, mapping: dict, space_xyz: dict, attrs: dict | None = None
) -> bytes:
    """A ``.msk`` of version 2 (minor 1 with ``extra`` when ``attrs`` are given)."""
    assert shape_zyx(space_xyz) == array.shape
    box = bbox_of(array)
    data = b"" if box is None else blob(crop(array, box))
    meta = {
        "voxels": int(np.count_nonzero(array)),
        "bbox": box,
        "dtype": array.dtype.name,
        "codec": 1,
        "mapping": mapping,
        "space": {k: space_xyz[k] for k in SPACE_KEYS},
    }
    if attrs:
        meta["extra"] = extra_record(1, centroid_of(array), attrs)
    meta_b = json.dumps(meta).encode()
    b_off = 64 + len(meta_b)
    fields = (b"MSK1", 2, 1 if attrs else 0, 0, 64, 64, len(meta_b), crc(meta_b), crc(data))
    head = MSK_HEADER.pack(*fields, b_off, len(data), 0)
    head = head[:60] + struct.pack("<I", crc(head[:60]))
    return head + meta_b + data


class SpecArchive:
    """A ``.mska`` of version 2 built commit by commit, as the page describes.

    Every commit writes its blobs, the space (first time), an index segment and then the
    older slot. Appends merge segments like a binary counter; a commit that removed rows
    writes one segment of every row with ``prev: null``. In format 2.3 a commit of an
    archive with attributes (:meth:`set_attrs`) ends its chain with the archive-attributes
    segment.
    """

    def __init__(self, minor: int, space_xyz: dict) -> None:
        self.minor = minor
        self.space_xyz = space_xyz
        pre = PREAMBLE.pack(b"MSKA", 2, minor, 0, 64, 2, 0)
        self.buf = bytearray(pre[:12] + struct.pack("<I", crc(pre[:12])) + b"\0" * 128)
        self.rows: dict[str, dict] = {}  # name -> what the row says, insertion order
        self.committed: list[str] = []
        self.segments: list[tuple[int, int, int, int]] = []  # offset, length, crc, rows
        self.generation = 0
        self.active = 1  # the first commit writes slot 0
        self.space_ref = (0, 0, 0)
        self.end = DATA_START
        self.fresh = False  # rows were removed since the last commit
        self.archive_attrs: dict = {}

    def _put(self, data: bytes) -> int:
        off = len(self.buf)
        self.buf += data
        return off

    def add(self, name: str, array: np.ndarray, mapping: dict, attrs: dict | None = None) -> None:
        assert name not in self.rows and shape_zyx(self.space_xyz) == array.shape
        box = bbox_of(array)
        data = b"" if box is None else blob(crop(array, box), level=1 + len(self.rows) % 5)
        self.rows[name] = {
            "offset": self._put(data) if data else 0,
            "length": len(data),
            "crc32": crc(data),
            "dtype": array.dtype.name,
            "bbox": box,
            "voxels": int(np.count_nonzero(array)),
            "mapping": mapping,
            "centroid": None if self.minor == 0 else centroid_of(array),
            "attrs": (attrs or {}) if self.minor else {},
        }

    def set_attrs(self, attrs: dict) -> None:
        """The archive's attributes from the next commit on (format 2.3)."""
        assert self.minor == 3
        self.archive_attrs = attrs

    def delete(self, name: str) -> None:
        del self.rows[name]
        self.fresh = True

    def commit(self) -> None:
        names = list(self.rows)
        if self.space_ref[1] == 0 and names:
            sb = space_json(self.space_xyz)
            self.space_ref = (self._put(sb), len(sb), crc(sb))
        if self.fresh:
            segments, start = [], 0
        else:
            segments, start = list(self.segments), len(self.committed)
            while segments and segments[-1][3] <= len(names) - start:
                start -= segments.pop()[3]
        if start < len(names):
            body = {
                "prev": list(segments[-1][:3]) if segments else None,
                "fields": FIELDS[self.minor],
                "rows": [make_row(self.minor, n, self.rows[n]) for n in names[start:]],
            }
            seg = zstandard.ZstdCompressor(level=5, write_content_size=True).compress(
                json.dumps(body).encode()
            )
            segments.append((self._put(seg), len(seg), crc(seg), len(names) - start))
        head = segments[-1] if segments else (0, 0, 0, 0)
        if self.archive_attrs:  # the archive-attributes segment is the newest
            body = {
                "prev": list(head[:3]) if segments else None,
                "fields": ARCHIVE_FIELDS,
                "rows": [[self.archive_attrs]],
            }
            seg = zstandard.ZstdCompressor(level=4, write_content_size=True).compress(
                json.dumps(body, indent=1).encode()
            )
            head = (self._put(seg), len(seg), crc(seg), 0)
        self.generation += 1
        self.active = 1 - self.active
        self.end = len(self.buf)
        self._slot(self.active, self.generation, len(names), head)
        self.segments, self.committed, self.fresh = segments, names, False

    def _slot(self, k: int, generation: int, count: int, head: tuple, torn: bool = False) -> None:
        raw = SLOT.pack(generation, count, *self.space_ref, *head[:3], self.end, 0, 0)
        raw = raw[:60] + struct.pack("<I", crc(raw[:60]) ^ (0xDEAD if torn else 0))
        self.buf[SLOT_OFFSETS[k] : SLOT_OFFSETS[k] + 64] = raw

    def torn_commit(self) -> None:
        """A commit whose slot write was torn: the other slot's older commit stands."""
        self._slot(1 - self.active, self.generation + 1, 0, (0, 0, 0), torn=True)

    def garbage(self, data: bytes) -> None:
        """Bytes after ``end_offset`` (an interrupted append left them)."""
        self.buf += data

    def bytes(self) -> bytes:
        return bytes(self.buf)


# -- readers -----------------------------------------------------------------------------------
def read_msk(raw: bytes) -> dict:
    """Parse and check a version-2 ``.msk``; returns its header, meta and full array."""
    assert len(raw) >= 64, "shorter than the header"
    f = MSK_HEADER.unpack_from(raw)
    magic, major, minor, flags, hlen, m_off, m_len, m_crc, b_crc, b_off, b_len, h_crc = f
    assert (magic, major, flags, hlen, m_off) == (b"MSK1", 2, 0, 64, 64), f[:5]
    assert minor in (0, 1), minor
    assert raw[52:60] == b"\0" * 8, "reserved bytes"
    assert h_crc == crc(raw[:60]), "header CRC"
    meta_b = raw[m_off : m_off + m_len]
    assert len(meta_b) == m_len and crc(meta_b) == m_crc, "meta CRC"
    data = raw[b_off : b_off + b_len]
    assert len(data) == b_len and b_off + b_len <= len(raw)
    assert crc(data) == b_crc, "blob CRC"
    meta = json.loads(meta_b.decode("utf-8"))
    assert isinstance(meta, dict) and set(meta) - {"extra"} == META_KEYS, sorted(meta)
    assert ("extra" in meta) == (minor == 1), "minor 1 exactly when the meta has extra"
    space = check_space(json.dumps(meta["space"]).encode())
    assert meta["codec"] == 1 and meta["dtype"] in DTYPES
    row = {
        "offset": b_off,
        "length": b_len,
        "dtype": meta["dtype"],
        "bbox": meta["bbox"],
        "voxels": meta["voxels"],
        "mapping": meta["mapping"],
    }
    row.update(_check_extra(1, meta.get("extra"), meta["bbox"]))
    array = _full(row, data, shape_zyx(space))
    return {"header": dict(zip(MSK_HEADER_NAMES, f, strict=True)), "meta": meta, "array": array}


MSK_HEADER_NAMES = (
    "magic",
    "major",
    "minor",
    "flags",
    "header_length",
    "meta_offset",
    "meta_length",
    "meta_crc",
    "blob_crc",
    "blob_offset",
    "blob_length",
    "header_crc",
)
SLOT_NAMES = (
    "generation",
    "mask_count",
    "space_offset",
    "space_length",
    "space_crc",
    "index_offset",
    "index_length",
    "index_crc",
    "end_offset",
    "reserved",
    "slot_crc",
)


def _check_extra(minor: int, extra: object, bbox: list | None) -> dict:
    """``{"centroid", "attrs"}`` of an ``extra`` record (2.1 / ``.msk`` may hold the centroid)."""
    if extra is None:
        return {"centroid": None, "attrs": {}}
    assert isinstance(extra, dict), extra
    c = extra.get("centroid") if minor == 1 else None
    if c is not None:
        assert bbox is not None and len(c) == 3
        for axis, v in enumerate(c):
            assert bbox[2 * axis] - 1e-3 <= v <= bbox[2 * axis + 1] - 1 + 1e-3, (c, bbox)
    return {"centroid": c, "attrs": extra.get("attrs") or {}}


def _full(row: dict, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
    """The full ``(z, y, x)`` array of a row: zeros with the decoded box at ``bbox``."""
    array = np.zeros(shape, row["dtype"])
    box = row["bbox"]
    if box is None:
        assert row["length"] == 0 and row["voxels"] == 0, "an empty mask has no data"
        return array
    assert 0 <= box[0] < box[1] <= shape[0] and 0 <= box[2] < box[3] <= shape[1]
    assert 0 <= box[4] < box[5] <= shape[2], (box, shape)
    sub = decode_blob(data, row["dtype"], (box[1] - box[0], box[3] - box[2], box[5] - box[4]))
    array[box[0] : box[1], box[2] : box[3], box[4] : box[5]] = sub
    assert int(np.count_nonzero(array)) == row["voxels"], "voxels"
    assert bbox_of(array) == box, "bbox is the tight box of the non-zero voxels"
    return array


def read_mska(raw: bytes) -> dict:
    """Parse and check a version-2 ``.mska`` as the page's "Reading" says.

    Returns:
        ``{"preamble", "slots" (both, as dicts), "slot" (the one read), "space" (on-disk
        dict or None), "segments" (row segments, newest first: offset, length, crc, prev,
        fields, rows), "archive_attrs" (``{}`` without an archive-attributes segment), "rows"
        (dicts, oldest first, mapping expanded, centroid as index floats), "arrays" ({name:
        full array})}``.
    """
    magic, major, minor, flags, slot_size, slot_count, p_crc = PREAMBLE.unpack_from(raw)
    assert (magic, major, flags, slot_size, slot_count) == (b"MSKA", 2, 0, 64, 2)
    assert minor in FIELDS and p_crc == crc(raw[:12]), "preamble"
    slots = []
    for off in SLOT_OFFSETS:
        s = dict(zip(SLOT_NAMES, SLOT.unpack_from(raw, off), strict=True))
        s["valid"] = s["generation"] > 0 and s["slot_crc"] == crc(raw[off : off + 60])
        slots.append(s)
    valid = [s for s in slots if s["valid"]]
    assert valid, "no valid commit slot"
    slot = max(valid, key=lambda s: s["generation"])
    assert slot["reserved"] == 0
    end = slot["end_offset"]
    assert DATA_START <= end <= len(raw)

    def section(off: int, length: int, want: int) -> bytes:
        assert off >= DATA_START and off + length <= end, (off, length, end)
        data = raw[off : off + length]
        assert crc(data) == want, "section CRC"
        return data

    space = None
    if slot["space_length"]:
        space = check_space(section(slot["space_offset"], slot["space_length"], slot["space_crc"]))
    segments = []
    archive_attrs: dict = {}
    newest, last = True, end
    ref = (
        [slot["index_offset"], slot["index_length"], slot["index_crc"]]
        if slot["index_length"]
        else None
    )
    while ref is not None:
        if not newest:
            assert ref[0] < last, "prev points backwards"
        last = ref[0]
        frame = section(*ref)
        assert zstandard.frame_content_size(frame) >= 0, "segment declares its size"
        body = json.loads(zstandard.ZstdDecompressor().decompress(frame).decode("utf-8"))
        assert set(body) == {"prev", "fields", "rows"}, sorted(body)
        if body["fields"] == ARCHIVE_FIELDS:
            assert newest, "the archive-attributes segment is the newest"
            assert len(body["rows"]) == 1 and len(body["rows"][0]) == 1, body["rows"]
            archive_attrs = body["rows"][0][0]
            assert isinstance(archive_attrs, dict) and archive_attrs, archive_attrs
            newest, ref = False, body["prev"]
            continue
        newest = False
        layout = next(m for m, f in FIELDS.items() if f == body["fields"])
        segments.append(
            {"offset": ref[0], "length": ref[1], "crc": ref[2], "minor": layout, **body}
        )
        ref = body["prev"]
    rows = []
    for seg in reversed(segments):  # oldest first
        for r in seg["rows"]:
            assert isinstance(r, list) and len(r) == len(seg["fields"]), r
            rows.append(_row_dict(seg["minor"], dict(zip(seg["fields"], r, strict=True))))
    assert len(rows) == slot["mask_count"], "mask_count"
    names = [r["name"] for r in rows]
    assert len(set(names)) == len(names) and all(isinstance(n, str) and n for n in names)
    shape = None if space is None else shape_zyx(space)
    arrays = {}
    for r in rows:
        data = section(r["offset"], r["length"], r["crc32"]) if r["length"] else b""
        assert crc(data) == r["crc32"], "blob CRC"
        arrays[r["name"]] = _full(r, data, shape)
    pre = dict(
        zip(
            ("magic", "major", "minor", "flags", "slot_size", "slot_count", "crc"),
            (magic, major, minor, flags, slot_size, slot_count, p_crc),
            strict=True,
        )
    )
    return {
        "preamble": pre,
        "slots": slots,
        "slot": slot,
        "space": space,
        "segments": segments,
        "archive_attrs": archive_attrs,
        "rows": rows,
        "arrays": arrays,
    }


def _row_dict(minor: int, row: dict) -> dict:
    """One row as a dict: mapping expanded, centroid in voxel units (or None), attrs."""
    assert row["codec"] == 1 and row["dtype"] in DTYPES, row
    mapping = row["mapping"]
    if minor >= 2 and type(mapping) is int:
        mapping = {row["name"]: mapping}
    assert isinstance(mapping, dict) and mapping, mapping
    out = {k: row[k] for k in FIELDS_20}
    out["mapping"] = mapping
    out.update(_check_extra(minor, row.get("extra"), row["bbox"]))
    if minor >= 2:
        c = row["centroid"]
        assert c is None or (len(c) == 3 and all(type(v) is int for v in c)), c
        assert (c is None) == (row["bbox"] is None), "centroid exactly for a non-empty mask"
        out["centroid"] = None if c is None else [v / SCALE for v in c]
    return out
