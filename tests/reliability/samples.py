"""Sample files of every kind, their expected contents, and byte-level knowledge of the
layouts (header fields, section boundaries, checksums) used to corrupt them on purpose.

Kinds: ``msk1``/``msk2`` (one mask, version 1/2) and ``mska1``/``mska2`` (archives). The
``mska2`` samples come in the index layouts of format 2.2 (what writers produce now) and
2.1 (``compat="0.3"``); :func:`parse_mska2` tells them apart by their ``fields`` lists.
Everything here is independent of medmask's reader: layouts are parsed with ``struct``
following ``docs/format.md``, so a reader bug cannot hide a corruption bug.
"""

from __future__ import annotations

import json
import re
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zstandard
from spacetransformer import Space

from medmask import MaskArchive, SegmentationMask, save_mask

SHAPE = (14, 18, 22)  # (z, y, x)

KINDS = ("msk1", "msk2", "mska1", "mska2")


def crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def sample_space() -> Space:
    xyz = Space(shape=SHAPE[::-1], spacing=(0.8, 0.9, 2.5), origin=(-10.0, 20.0, 5.0))
    return xyz.reverse_axis_order()


def sample_masks() -> list[tuple[str, SegmentationMask]]:
    """A few masks covering every dtype, an empty mask and a one-voxel mask."""
    rng = np.random.default_rng(20240601)
    space = sample_space()
    liver = np.zeros(SHAPE, bool)
    liver[3:9, 4:13, 5:17] = rng.random((6, 9, 12)) > 0.3
    organs = np.zeros(SHAPE, np.uint8)
    organs[1:6, 2:9, 3:11] = 1
    organs[6:12, 8:16, 9:20] = 2
    organs[2:4, 12:17, 1:5] = 3
    lesions = np.zeros(SHAPE, np.uint16)
    lesions[4:7, 5:8, 6:9] = 1000
    lesions[10:13, 1:3, 15:21] = 40000
    big = np.zeros(SHAPE, np.uint32)
    big[0:14, 9:10, 0:22] = 70000
    tiny = np.zeros(SHAPE, bool)
    tiny[13, 17, 21] = True
    return [
        ("liver", SegmentationMask(liver, {"liver": 1}, space)),
        ("organs", SegmentationMask(organs, {"kidney": 1, "spleen": 2, "héart": 3}, space)),
        ("lesions", SegmentationMask(lesions, {"small": 1000, "large": 40000}, space)),
        ("empty", SegmentationMask(np.zeros(SHAPE, bool), {"empty": 1}, space)),
        ("big", SegmentationMask(big, {"band": 70000}, space)),
        ("tiny", SegmentationMask(tiny, {"dot": 1}, space)),
    ]


@dataclass
class Sample:
    """One sample file and what a reader must return for it."""

    name: str
    kind: str
    data: bytes
    #: ``[(mask name, array, mapping dict)]`` (one entry named ``"mask"`` for ``.msk``)
    expected: list[tuple[str, np.ndarray, dict]] = field(repr=False)
    space: Space = field(repr=False)

    @property
    def suffix(self) -> str:
        return ".mska" if self.is_archive else ".msk"

    @property
    def version(self) -> int:
        return int(self.kind[-1])

    @property
    def is_archive(self) -> bool:
        return self.kind.startswith("mska")


def build_samples() -> dict[str, Sample]:
    """Write the sample files with medmask's writers and return them as bytes."""
    masks = sample_masks()
    space = sample_space()
    out: dict[str, Sample] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)

        def single(name: str, kind: str, mask: SegmentationMask) -> None:
            p = d / f"{name}.msk"
            save_mask(mask, p, codec="zstd" if kind == "msk1" else None)
            exp = [("mask", np.asarray(mask.data).copy(), mask.mapping.to_dict())]
            out[name] = Sample(name, kind, p.read_bytes(), exp, space)

        by_name = dict(masks)
        single("msk1", "msk1", by_name["organs"])
        single("msk1_bool", "msk1", by_name["liver"])
        single("msk2", "msk2", by_name["organs"])
        single("msk2_bool", "msk2", by_name["liver"])
        single("msk2_u32", "msk2", by_name["big"])
        single("msk2_empty", "msk2", by_name["empty"])
        exp = [(n, np.asarray(m.data).copy(), m.mapping.to_dict()) for n, m in masks]
        p = d / "a1.mska"
        with MaskArchive(p, "w", codec="zstd") as ar:
            for n, m in masks:
                ar.add(n, m)
        out["mska1"] = Sample("mska1", "mska1", p.read_bytes(), exp, space)
        # version 2 appended one mask at a time: several commits and index segments, so the
        # older commit slot is valid too (a damaged newest slot falls back to it)
        p = d / "a2.mska"
        for n, m in masks:
            with MaskArchive(p, "a") as ar:
                ar.add(n, m)
        out["mska2"] = Sample("mska2", "mska2", p.read_bytes(), exp, space)
        p = d / "a2w.mska"  # version 2 written at once (mode "w": one segment, generation 1)
        with MaskArchive(p, "w") as ar:
            for n, m in masks[:4]:
                ar.add(n, m)
        out["mska2_w"] = Sample("mska2_w", "mska2", p.read_bytes(), exp[:4], space)
        # format 2.1 (the layout of medmask 0.3.0): created with compat="0.3", then appended
        # to (appends keep a file's minor version), so it has several 2.1 segments too
        p = d / "a21.mska"
        with MaskArchive(p, "w", compat="0.3") as ar:
            for n, m in masks[:2]:
                ar.add(n, m)
        for n, m in masks[2:]:
            with MaskArchive(p, "a") as ar:
                ar.add(n, m)
        out["mska2_21"] = Sample("mska2_21", "mska2", p.read_bytes(), exp, space)
    return out


# --------------------------------------------------------------------------------------------
# Layout knowledge
# --------------------------------------------------------------------------------------------
MSK1_HDR = struct.Struct("<4s2BB6Q7x")
MSKA1_HDR = struct.Struct("<4s2BB7Q27x")
MSK2_HDR = struct.Struct("<4sBBHIQQIIQQ8xI")
PREAMBLE = struct.Struct("<4sBBHHHI")
SLOT = struct.Struct("<QQQIIQIIQII")
SLOT_OFFSETS = (16, 80)
DATA_START = 144
#: Index columns of format 2.0 (medmask 0.2.0), written with ``compat="0.2"``.
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
#: Index columns of format 2.1 (medmask 0.3.0, ``compat="0.3"``): 2.0's and ``extra``, an
#: object that holds the centroid (three decimal numbers) and the attributes.
INDEX_FIELDS_21 = [*INDEX_FIELDS_20, "extra"]
#: Index columns of format 2.2 (what writers produce now): ``mapping`` may be a bare label
#: number ``n`` (short for ``{name: n}``), ``centroid`` is null or three integers
#: ``round(index * CENTROID_SCALE)`` (z, y, x) inside the row's bbox, ``extra`` is null or
#: an object of which only ``"attrs"`` is read.
INDEX_FIELDS = [*INDEX_FIELDS_20, "centroid", "extra"]
#: Layout of each minor version of format 2.
INDEX_LAYOUTS = {0: INDEX_FIELDS_20, 1: INDEX_FIELDS_21, 2: INDEX_FIELDS}
#: A 2.2 centroid column stores ``round(index * CENTROID_SCALE)`` per axis; it may lie
#: ``CENTROID_SLACK`` units outside the bbox's first/last voxel index, no further.
CENTROID_SCALE = 10_000
CENTROID_SLACK = 10


def minor_of(fields: object) -> int:
    """The minor version whose layout ``fields`` is (``ValueError`` for none)."""
    for minor, layout in INDEX_LAYOUTS.items():
        if fields == layout:
            return minor
    raise ValueError(f"not a known index layout: {fields!r}")


def col(fields: list[str], name: str) -> int:
    """Position of column ``name`` in a row of layout ``fields``."""
    return fields.index(name)


def pad_row(row9: list, fields: list[str]) -> list:
    """A row of 2.0's nine columns completed with nulls to layout ``fields``."""
    return [*row9, *[None] * (len(fields) - len(INDEX_FIELDS_20))]


def row_mapping(row: list, fields: list[str]) -> object:
    """A stored row's mapping as the object it stands for (a 2.2 bare label number ``n``
    is ``{name: n}``); anything else as it is stored."""
    m = row[col(fields, "mapping")]
    if minor_of(fields) >= 2 and type(m) is int:
        return {row[0]: m}
    return m


def convert_row(row: list, src: list[str], dst: list[str]) -> list:
    """A row of layout ``src`` rewritten in layout ``dst`` with the same meaning, the way
    each layout's writer puts it (2.0 drops the centroid and the attributes)."""
    base = [*row[:8], row_mapping(row, src)]
    if minor_of(src) >= 2:
        c, extra = row[col(src, "centroid")], row[col(src, "extra")] or {}
        centroid = None if c is None else [v / CENTROID_SCALE for v in c]
    elif minor_of(src) == 1:
        extra = row[col(src, "extra")] or {}
        centroid = extra.get("centroid")
    else:
        extra, centroid = {}, None
    attrs = extra.get("attrs")
    if minor_of(dst) >= 2:
        m = base[8]
        if type(m) is dict and list(m) == [row[0]] and type(m[row[0]]) is int:
            base[8] = m[row[0]]
        fixed = None if centroid is None else [round(v * CENTROID_SCALE) for v in centroid]
        return [*base, fixed, {"attrs": attrs} if attrs else None]
    if minor_of(dst) == 1:
        new = {"centroid": centroid} if centroid is not None else {}
        if attrs:
            new["attrs"] = attrs
        return [*base, new or None]
    return base


@dataclass(frozen=True)
class Field:
    """An integer header field: where it lies and which checksum covers it."""

    name: str
    offset: int
    size: int  # bytes: 1, 2, 4 or 8
    signed: bool = False
    #: what to re-checksum after changing it: "msk2" header, "pre"(amble), "slot0"/"slot1", None
    crc_group: str | None = None


def _fields_from(struct_fmt: str, names: list[str], base: int, group: str | None) -> list[Field]:
    out, pos = [], base
    fmt = struct_fmt.lstrip("<")

    for count, code in re.findall(r"(\d*)([a-zA-Z])", fmt):
        n = int(count) if count else 1
        if code == "x":
            pos += n
            continue
        if code == "s":  # the magic: named "" (not an integer field)
            names.pop(0)
            pos += n
            continue
        size = struct.calcsize("<" + code)
        for _ in range(n):
            name = names.pop(0)
            if name:
                out.append(Field(name, pos, size, code.islower() and code != "s", group))
            pos += size
    return out


def v1_blob_fields(data: bytes, off: int, tag: str) -> list[Field]:
    """Fields inside a version-1 (codec 0) blob header at ``off``."""
    dlen = data[off + 1]
    ndim = data[off + 2 + dlen]
    fields = [Field(f"{tag}.flag", off, 1), Field(f"{tag}.dtype_len", off + 1, 1)]
    fields.append(Field(f"{tag}.ndim", off + 2 + dlen, 1))
    for k in range(ndim):
        fields.append(Field(f"{tag}.shape{k}", off + 3 + dlen + 8 * k, 8, signed=True))
    return fields


def parse_msk1(data: bytes) -> dict:
    h = MSK1_HDR.unpack_from(data)
    keys = [
        "magic",
        "major",
        "minor",
        "codec",
        "s_off",
        "s_len",
        "m_off",
        "m_len",
        "d_off",
        "d_len",
    ]
    d = dict(zip(keys, h))
    d["space"] = data[d["s_off"] : d["s_off"] + d["s_len"]]
    d["mapping"] = data[d["m_off"] : d["m_off"] + d["m_len"]]
    d["blob"] = data[d["d_off"] : d["d_off"] + d["d_len"]]
    return d


def parse_mska1(data: bytes) -> dict:
    h = MSKA1_HDR.unpack_from(data)
    keys = [
        "magic",
        "major",
        "minor",
        "codec",
        "s_off",
        "s_len",
        "i_off",
        "i_len",
        "d_off",
        "d_len",
        "count",
    ]
    d = dict(zip(keys, h))
    d["space"] = data[d["s_off"] : d["s_off"] + d["s_len"]]
    d["index"] = json.loads(data[d["i_off"] : d["i_off"] + d["i_len"]].rstrip(b"\0"))
    return d


def parse_msk2(data: bytes) -> dict:
    h = MSK2_HDR.unpack_from(data)
    keys = [
        "magic",
        "major",
        "minor",
        "flags",
        "hlen",
        "m_off",
        "m_len",
        "m_crc",
        "b_crc",
        "b_off",
        "b_len",
        "h_crc",
    ]
    d = dict(zip(keys, h))
    d["meta"] = json.loads(data[d["m_off"] : d["m_off"] + d["m_len"]])
    d["blob"] = data[d["b_off"] : d["b_off"] + d["b_len"]]
    return d


SLOT_KEYS = [
    "gen",
    "count",
    "s_off",
    "s_len",
    "s_crc",
    "i_off",
    "i_len",
    "i_crc",
    "end",
    "res",
    "crc",
]


def parse_mska2(data: bytes) -> dict:
    """Slots, the active commit, its space and its index segments (newest first).

    ``minor`` is the preamble's minor version; ``fields`` the layout of the newest segment
    (of the preamble's minor version when there is none), ``row_fields`` each row's.
    """
    slots = [dict(zip(SLOT_KEYS, SLOT.unpack_from(data, o))) for o in SLOT_OFFSETS]
    valid = [
        (s["gen"], k)
        for k, s in enumerate(slots)
        if s["gen"] and crc(data[SLOT_OFFSETS[k] : SLOT_OFFSETS[k] + 60]) == s["crc"]
    ]
    active = max(valid)[1]
    s = slots[active]
    segments = []  # (offset, length, decoded object), newest first
    ref = (s["i_off"], s["i_len"]) if s["i_len"] else None
    while ref:
        raw = data[ref[0] : ref[0] + ref[1]]
        seg = json.loads(zstandard.ZstdDecompressor().decompress(raw))
        segments.append((ref[0], ref[1], seg))
        ref = tuple(seg["prev"][:2]) if seg["prev"] else None
    rows = [r for _, _, seg in reversed(segments) for r in seg["rows"]]
    row_fields = [seg["fields"] for _, _, seg in reversed(segments) for _ in seg["rows"]]
    minor = data[5]
    return {
        "slots": slots,
        "active": active,
        "space": data[s["s_off"] : s["s_off"] + s["s_len"]],
        "segments": segments,
        "rows": rows,
        "minor": minor,
        "fields": segments[0][2]["fields"] if segments else INDEX_LAYOUTS[minor],
        "row_fields": row_fields,
    }


def header_fields(kind: str, data: bytes) -> list[Field]:
    """Every integer header field of the file (and of v1 blob headers)."""
    if kind == "msk1":
        names = [
            "",
            "major",
            "minor",
            "codec",
            "s_off",
            "s_len",
            "m_off",
            "m_len",
            "d_off",
            "d_len",
        ]
        fields = _fields_from(MSK1_HDR.format, names, 0, None)
        return fields + v1_blob_fields(data, parse_msk1(data)["d_off"], "blob")
    if kind == "mska1":
        names = [
            "",
            "major",
            "minor",
            "codec",
            "s_off",
            "s_len",
            "i_off",
            "i_len",
            "d_off",
            "d_len",
            "count",
        ]
        fields = _fields_from(MSKA1_HDR.format, names, 0, None)
        for k, e in enumerate(parse_mska1(data)["index"]):
            fields += v1_blob_fields(data, e["offset"], f"blob{k}")
        return fields
    if kind == "msk2":
        names = [
            "",
            "major",
            "minor",
            "flags",
            "hlen",
            "m_off",
            "m_len",
            "m_crc",
            "b_crc",
            "b_off",
            "b_len",
            "h_crc",
        ]
        return _fields_from(MSK2_HDR.format, names, 0, "msk2")
    if kind == "mska2":
        names = ["", "major", "minor", "flags", "slot_size", "nslots", "pcrc"]
        fields = _fields_from(PREAMBLE.format, names, 0, "pre")
        for k, off in enumerate(SLOT_OFFSETS):
            fields += _fields_from(
                SLOT.format, [f"slot{k}.{n}" for n in SLOT_KEYS], off, f"slot{k}"
            )
        return fields
    raise ValueError(kind)


def boundaries(kind: str, data: bytes) -> list[int]:
    """Offsets where a section or a header field starts or ends."""
    b = {0, len(data), 4, 5, 6}
    for f in header_fields(kind, data):
        b.update((f.offset, f.offset + f.size))
    if kind == "msk1":
        p = parse_msk1(data)
        for k in ("s", "m", "d"):
            b.update((p[f"{k}_off"], p[f"{k}_off"] + p[f"{k}_len"]))
    elif kind == "mska1":
        p = parse_mska1(data)
        for k in ("s", "i", "d"):
            b.update((p[f"{k}_off"], p[f"{k}_off"] + p[f"{k}_len"]))
        for e in p["index"]:
            b.update((e["offset"], e["offset"] + e["length"]))
        raw = data[p["i_off"] : p["i_off"] + p["i_len"]]
        b.add(p["i_off"] + len(raw.rstrip(b"\0")))
    elif kind == "msk2":
        p = parse_msk2(data)
        b.update((p["m_off"], p["m_off"] + p["m_len"], p["b_off"], p["b_off"] + p["b_len"]))
    elif kind == "mska2":
        p = parse_mska2(data)
        b.add(DATA_START)
        for s in p["slots"]:
            if s["gen"]:
                b.update((s["s_off"], s["s_off"] + s["s_len"], s["i_off"], s["i_off"] + s["i_len"]))
                b.add(s["end"])
        for off, length, _ in p["segments"]:
            b.update((off, off + length))
        for r in p["rows"]:
            b.update((r[2], r[2] + r[3]))
    return sorted(x for x in b if 0 <= x <= len(data))


# --------------------------------------------------------------------------------------------
# Checksum forging (a hostile file has valid checksums: only validation can stop it)
# --------------------------------------------------------------------------------------------
def put(data: bytearray, f: Field, value: int) -> None:
    """Store ``value`` (wrapped to the field's width) little-endian into ``f``."""
    mask = (1 << (8 * f.size)) - 1
    data[f.offset : f.offset + f.size] = (value & mask).to_bytes(f.size, "little")


def forge_group(data: bytearray, group: str | None) -> None:
    """Recompute the checksum that covers a header field group."""
    if group == "msk2":
        data[60:64] = struct.pack("<I", crc(bytes(data[:60])))
    elif group == "pre":
        data[12:16] = struct.pack("<I", crc(bytes(data[:12])))
    elif group in ("slot0", "slot1"):
        o = SLOT_OFFSETS[int(group[-1])]
        data[o + 60 : o + 64] = struct.pack("<I", crc(bytes(data[o : o + 60])))


def forge_all(kind: str, data: bytes) -> bytes:
    """Make every header/section checksum the file can be checked against valid again
    (as far as the declared ranges lie in the file). Used by the fuzzer's forging mode."""
    b = bytearray(data)
    if kind == "msk2" and len(b) >= 64:
        h = list(MSK2_HDR.unpack_from(b))
        m_off, m_len, b_off, b_len = h[5], h[6], h[9], h[10]
        if m_off + m_len <= len(b):
            b[28:32] = struct.pack("<I", crc(bytes(b[m_off : m_off + m_len])))
        if b_off + b_len <= len(b):
            b[32:36] = struct.pack("<I", crc(bytes(b[b_off : b_off + b_len])))
        forge_group(b, "msk2")
    elif kind == "mska2" and len(b) >= DATA_START:
        forge_group(b, "pre")
        for k, o in enumerate(SLOT_OFFSETS):
            s = dict(zip(SLOT_KEYS, SLOT.unpack_from(b, o)))
            if s["s_off"] + s["s_len"] <= len(b):
                b[o + 28 : o + 32] = struct.pack(
                    "<I", crc(bytes(b[s["s_off"] : s["s_off"] + s["s_len"]]))
                )
            if s["i_off"] + s["i_len"] <= len(b):
                b[o + 44 : o + 48] = struct.pack(
                    "<I", crc(bytes(b[s["i_off"] : s["i_off"] + s["i_len"]]))
                )
            forge_group(b, f"slot{k}")
    return bytes(b)


# --------------------------------------------------------------------------------------------
# Rebuilders: put hostile content into an otherwise well-formed file
# --------------------------------------------------------------------------------------------
def build_msk1(space_b: bytes, map_b: bytes, blob: bytes, **override: int) -> bytes:
    s_off = MSK1_HDR.size
    vals = {
        "magic": b"MSK1", "major": 1, "minor": 0, "codec": 0,
        "s_off": s_off, "s_len": len(space_b),
        "m_off": s_off + len(space_b), "m_len": len(map_b),
        "d_off": s_off + len(space_b) + len(map_b), "d_len": len(blob),
    }  # fmt: skip
    vals.update(override)
    head = MSK1_HDR.pack(*vals.values())
    return head + space_b + map_b + blob


def mska1_with_index(
    data: bytes, index: bytes | list, *, count: int | None = None, space: bytes | None = None
) -> bytes:
    """Append a new index (and optionally a new space) at the end and point the header at them."""
    p = parse_mska1(data)
    raw = index if isinstance(index, bytes) else json.dumps(index).encode("utf-8")
    if count is None:
        count = len(index) if isinstance(index, list) else p["count"]
    body = bytearray(data)
    s_off, s_len = p["s_off"], p["s_len"]
    if space is not None:
        s_off, s_len = len(body), len(space)
        body += space
    i_off = len(body)
    body += raw
    head = MSKA1_HDR.pack(
        b"MSKA", 1, 0, 0, s_off, s_len, i_off, len(raw), p["d_off"], p["d_len"], count
    )
    body[: MSKA1_HDR.size] = head
    return bytes(body)


def build_msk2(meta: bytes | dict, blob: bytes, *, forge: bool = True, **override: int) -> bytes:
    meta_b = (
        meta if isinstance(meta, bytes) else json.dumps(meta, ensure_ascii=False).encode("utf-8")
    )
    vals = {
        "magic": b"MSK1", "major": 2, "minor": 0, "flags": 0, "hlen": 64,
        "m_off": 64, "m_len": len(meta_b), "m_crc": crc(meta_b), "b_crc": crc(blob),
        "b_off": 64 + len(meta_b), "b_len": len(blob), "h_crc": 0,
    }  # fmt: skip
    vals.update(override)
    head = bytearray(MSK2_HDR.pack(*vals.values()))
    if forge:
        forge_group(head, "msk2")
    return bytes(head) + meta_b + blob


def mska2_commit(
    data: bytes,
    *,
    rows: list | None = None,
    segment: bytes | None = None,
    space: bytes | None = None,
    prev: object = None,
    count: int | None = None,
    slot: dict | None = None,
    compress: bool = True,
    fields: list[str] | None = None,
) -> bytes:
    """Append a hostile commit: a new space section and/or index segment at the end and a
    slot with a higher generation and a valid CRC, written over the older slot.

    ``rows`` replaces the whole index (one segment, ``prev`` null unless given) in the
    layout ``fields`` (default: the layout of the file's newest segment, see
    :func:`parse_mska2`);
    ``segment`` gives the raw decoded segment bytes instead (invalid JSON, bad UTF-8...);
    ``slot`` overrides slot fields after everything else is computed.
    """
    p = parse_mska2(data)
    cur = p["slots"][p["active"]]
    body = bytearray(data)  # anything after the commit's end stays (forged sections may live there)
    s_off, s_len, s_crc = cur["s_off"], cur["s_len"], cur["s_crc"]
    if space is not None:
        s_off, s_len, s_crc = len(body), len(space), crc(space)
        body += space
    i_off, i_len, i_crc = cur["i_off"], cur["i_len"], cur["i_crc"]
    if rows is not None or segment is not None:
        if segment is None:
            segment = json.dumps(
                {"prev": prev, "fields": fields or p["fields"], "rows": rows}, ensure_ascii=False
            ).encode("utf-8")
        stored = (
            zstandard.ZstdCompressor(write_content_size=True).compress(segment)
            if compress
            else segment
        )
        i_off, i_len, i_crc = len(body), len(stored), crc(stored)
        body += stored
    if count is None:
        count = len(rows) if rows is not None else cur["count"]
    vals = dict(
        gen=cur["gen"] + 1, count=count, s_off=s_off, s_len=s_len, s_crc=s_crc,
        i_off=i_off, i_len=i_len, i_crc=i_crc, end=len(body), res=0, crc=0,
    )  # fmt: skip
    if slot:
        vals.update(slot)
    raw = bytearray(SLOT.pack(*vals.values()))
    if not (slot and "crc" in slot):
        raw[60:64] = struct.pack("<I", crc(bytes(raw[:60])))
    o = SLOT_OFFSETS[1 - p["active"]]
    body[o : o + 64] = raw
    return bytes(body)


# --------------------------------------------------------------------------------------------
# zstd frames built by hand (for decompression bombs and lying frames)
# --------------------------------------------------------------------------------------------
ZSTD_MAGIC = struct.pack("<I", 0xFD2FB528)


def zstd_frame(content_size: int | None, blocks: list[bytes]) -> bytes:
    """A zstd frame: single-segment with an 8-byte content size, or (``None``) a frame
    with a 1 KiB window and no content size."""
    if content_size is None:
        head = ZSTD_MAGIC + bytes([0x00, 0x00])  # FHD: no FCS, not single segment; window 1 KiB
    else:
        head = ZSTD_MAGIC + bytes([0xE0]) + struct.pack("<Q", content_size)
    return head + b"".join(blocks)


def rle_block(value: int, size: int, last: bool) -> bytes:
    hdr = int(last) | (1 << 1) | (size << 3)
    return hdr.to_bytes(3, "little") + bytes([value])


def raw_block(payload: bytes, last: bool) -> bytes:
    hdr = int(last) | (0 << 1) | (len(payload) << 3)
    return hdr.to_bytes(3, "little") + payload


def rle_frame(
    value: int, total: int, *, declared: int | None | str = "same", max_blocks: int | None = None
) -> bytes:
    """A frame of RLE blocks producing ``total`` bytes of ``value`` (~32,768x expansion).

    ``declared`` is the content size written in the frame header (default: the truth);
    ``max_blocks`` cuts the frame short (a lying, truncated bomb).
    """
    blocks, left = [], total
    while left > 0:
        n = min(left, 1 << 17)
        left -= n
        blocks.append(rle_block(value, n, last=left == 0))
        if max_blocks is not None and len(blocks) >= max_blocks:
            break
    return zstd_frame(total if declared == "same" else declared, blocks)  # type: ignore[arg-type]


def whitespace_bomb(payload: bytes, total: int) -> bytes:
    """An honest zstd frame of ``payload`` followed by spaces up to ``total`` bytes: valid
    JSON when ``payload`` is, ~32,768x smaller than what it decodes to."""
    blocks, left = [raw_block(payload, False)], total - len(payload)
    while left > 0:
        n = min(left, 1 << 17)
        left -= n
        blocks.append(rle_block(0x20, n, left == 0))
    return zstd_frame(total, blocks)
