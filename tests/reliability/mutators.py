"""Corrupted and hostile variants of the sample files, by family.

Each generator yields :class:`Case` objects. Two sorts of damage:

* **corrupt** (``forged=False``): what disks, networks and crashes do (truncation, bit
  and byte flips, a header field overwritten). Checksums are left stale, so a version-2
  reader must reject the file or return exactly the original data.
* **hostile** (``forged=True``): a crafted file whose checksums are recomputed, so only
  validation stands between it and the reader. It must be rejected when ``must_reject``
  (the content is invalid: bad shape, dtype, bbox, JSON...), and in every case must not
  crash, hang or allocate without bound.

A reader that rejects everything would pass those two rules, so a third one binds the
other way: a case with ``must_read`` must open and read every mask (``intact`` or, for a
forged file that stores something else, ``different``). That holds for the untouched
samples (family ``intact``, which must read back exactly) and for the forged variants the
spec calls valid (:func:`valid_by_spec`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import zstandard

from . import samples as S

__all__ = ["Case", "FAMILIES", "generate", "family_names", "valid_by_spec"]


@dataclass
class Case:
    sample: str  # key into build_samples()
    kind: str
    family: str
    label: str
    data: bytes
    forged: bool = False
    must_reject: bool = False
    must_read: bool = False


# --------------------------------------------------------------------------------------------
# corrupt (random) families
# --------------------------------------------------------------------------------------------
def intact(s: S.Sample, rng: random.Random, n: int) -> Iterator[Case]:
    """The sample itself, untouched: it must read back exactly."""
    yield Case(s.name, s.kind, "intact", "untouched", s.data, must_read=True)


def valid_by_spec(c: Case) -> bool:
    """Whether a reader must read ``c``: a forged variant not marked ``must_reject`` in a
    family whose other variants break a rule the spec states, so that this one keeps to
    the spec (version 2: a forged space, mapping, meta, row or extra that is well-formed; an
    honest zstd frame; version-1 blob payloads followed by bytes after the frame, which the
    frame's content size makes unambiguous). The header-field extremes of
    ``field-extreme-forged`` are left out: there a reader may refuse a field it cannot
    trust even when its checksum matches."""
    if not c.forged or c.must_reject:
        return False
    if c.family == "v1-blob-header":
        return True
    return c.kind.endswith("2") and c.family in ("hostile-json", "bomb")


def truncate_boundary(s: S.Sample, rng: random.Random, n: int) -> Iterator[Case]:
    """Cut the file at every section/field boundary, one byte before and one after."""
    cuts = set()
    for b in S.boundaries(s.kind, s.data):
        cuts.update((b - 1, b, b + 1))
    for c in sorted(x for x in cuts if 0 <= x < len(s.data)):
        yield Case(s.name, s.kind, "truncate-boundary", f"cut@{c}", s.data[:c])


def truncate_random(s: S.Sample, rng: random.Random, n: int) -> Iterator[Case]:
    for _ in range(n):
        c = rng.randrange(len(s.data))
        yield Case(s.name, s.kind, "truncate-random", f"cut@{c}", s.data[:c])


def _header_len(s: S.Sample) -> int:
    return {"msk1": 62, "mska1": 90, "msk2": 64, "mska2": 144}[s.kind]


def bitflip_header(s: S.Sample, rng: random.Random, n: int) -> Iterator[Case]:
    """Every single-bit flip in the fixed header (all 8 bits of every byte)."""
    for pos in range(_header_len(s)):
        for bit in range(8):
            b = bytearray(s.data)
            b[pos] ^= 1 << bit
            yield Case(s.name, s.kind, "bitflip-header", f"byte{pos}.bit{bit}", bytes(b))


def bitflip_random(s: S.Sample, rng: random.Random, n: int) -> Iterator[Case]:
    """Single-bit flips anywhere in the file."""
    for _ in range(n):
        pos, bit = rng.randrange(len(s.data)), rng.randrange(8)
        b = bytearray(s.data)
        b[pos] ^= 1 << bit
        yield Case(s.name, s.kind, "bitflip-random", f"byte{pos}.bit{bit}", bytes(b))


def byte_random(s: S.Sample, rng: random.Random, n: int) -> Iterator[Case]:
    """One byte overwritten (random value, 0x00 or 0xFF) anywhere in the file."""
    for _ in range(n):
        pos = rng.randrange(len(s.data))
        val = rng.choice([0x00, 0xFF, rng.randrange(256)])
        if s.data[pos] == val:
            val ^= 0x5A
        b = bytearray(s.data)
        b[pos] = val
        yield Case(s.name, s.kind, "byte-random", f"byte{pos}={val:#04x}", bytes(b))


def _extremes(f: S.Field, orig: int, size: int) -> list[int]:
    top = (1 << (8 * f.size)) - 1
    vals = {
        0,
        1,
        top,
        top - 1,
        1 << (8 * f.size - 1),
        (1 << (8 * f.size - 1)) - 1,
        orig + 1,
        orig - 1,
    }
    if f.size >= 4:
        vals.update((size - 1, size, size + 1, size + 1000, 1 << 31, 0xFFFFFFFF))
    if f.size == 8:
        vals.update((1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 2, (1 << 62)))
    if f.signed:
        vals.update((-1, -(1 << 63), -(1 << 31)))
    vals.discard(orig)
    return sorted(v for v in vals)


def _field_value(data: bytes, f: S.Field) -> int:
    return int.from_bytes(data[f.offset : f.offset + f.size], "little", signed=f.signed)


def field_extreme(
    s: S.Sample, rng: random.Random, n: int, *, forged: bool = False
) -> Iterator[Case]:
    """Every header field overwritten with extreme values (0, max, 2**63, 2**64-1, the file
    size +-1, ...). ``forged``: the header checksum is recomputed (version 2 only)."""
    for f in S.header_fields(s.kind, s.data):
        if forged and (
            f.crc_group is None or f.name in ("h_crc", "pcrc") or f.name.endswith(".crc")
        ):
            continue
        orig = _field_value(s.data, f)
        for v in _extremes(f, orig, len(s.data)):
            b = bytearray(s.data)
            S.put(b, f, v)
            if forged:
                S.forge_group(b, f.crc_group)
            fam = "field-extreme-forged" if forged else "field-extreme"
            yield Case(s.name, s.kind, fam, f"{f.name}={v}", bytes(b), forged=forged)


def field_extreme_forged(s: S.Sample, rng: random.Random, n: int) -> Iterator[Case]:
    if s.version == 2:
        yield from field_extreme(s, rng, n, forged=True)


# --------------------------------------------------------------------------------------------
# hostile (forged) families
# --------------------------------------------------------------------------------------------
BAD_DTYPES = [
    "float64", "float16", "int8", "int64", "uint64", "complex64", "object", "O", "<u2", ">u2",
    "V8", "U4", "S3", "b1", "", "bool\u0000", "uint8 ", "Bool", "ü", 5, None, ["uint8"], True,
]  # fmt: skip


def space_variants(space_b: bytes) -> Iterator[tuple[str, bytes, bool]]:
    """``(label, bytes, must_reject)`` for the space JSON."""
    obj = json.loads(space_b)
    shape = obj["shape"]

    def w(**kw: object) -> bytes:
        o = dict(obj)
        o.update(kw)
        return json.dumps(o).encode()

    for label, val in [
        ("overflow", [2**31 - 1] * 3),
        ("over-limit", [2**13, 2**13, 2**11]),
        ("2**64", [2**64, 1, 1]),
        ("2**63-neg", [-(2**63), 1, 1]),
        ("zero", [0, shape[1], shape[2]]),
        ("negative", [-1, shape[1], shape[2]]),
        ("2d", shape[:2]),
        ("4d", [*shape, 1]),
        ("0d", []),
        ("float", [float(shape[0]), shape[1], shape[2]]),
        ("bool", [True, shape[1], shape[2]]),
        ("string", [str(shape[0]), shape[1], shape[2]]),
        ("null", None),
        ("object", {"x": 1}),
    ]:
        yield f"space.shape={label}", w(shape=val), True
    yield "space.shape=bigger", w(shape=[shape[0] + 1, shape[1], shape[2]]), False
    yield "space.spacing=NaN", w(spacing=[float("nan"), 1, 1]), True
    yield "space.spacing=inf", w(spacing=[float("inf"), 1, 1]), True
    yield "space.origin=1e999", w(origin=[1e308, 1, 1]).replace(b"1e+308", b"1e999"), True
    yield "space.spacing=str", w(spacing=["a", 1, 1]), True
    yield "space.extra-key", w(colour=[1, 2, 3]), True
    o = dict(obj)
    o.pop("shape")
    yield "space.no-shape", json.dumps(o).encode(), True
    for label, raw in [
        ("list", b"[]"), ("null", b"null"), ("number", b"5"), ("string", b'"space"'),
        ("empty", b""), ("truncated", space_b[:-1]), ("trailing", space_b + b"}"),
        ("bad-utf8", b"\xff\xfe" + space_b), ("utf8-in-key", space_b.replace(b'"shape"', b'"sh\xc3\xa4pe"')),
        ("deep", b"[" * 100_000 + b"]" * 100_000), ("deep-open", b"{\"shape\":" + b"[" * 200_000),
        ("nul", space_b.replace(b"{", b"{\x00", 1)), ("bom", b"\xef\xbb\xbf" + space_b),
    ]:  # fmt: skip
        yield f"space.{label}", raw, True


def mapping_variants(mapping: dict, dtype_max: int) -> Iterator[tuple[str, object, bool]]:
    """``(label, mapping object, must_reject)``; the raw bytes variants are strings of JSON."""
    first = next(iter(mapping))
    for label, obj in [
        ("list", [first, 1]), ("null", None), ("number", 3), ("string", "liver"),
        ("negative", {first: -1}), ("float", {first: 1.5}), ("float-int", {first: 1.0}),
        ("bool", {first: True}), ("str-label", {first: "1"}), ("null-label", {first: None}),
        ("dup-label", {first: 1, first + "2": 1}), ("empty-name", {"": 1}),
        ("huge-label", {first: 2**70}), ("2**64", {first: 2**64}),
        ("too-big-for-dtype", {first: dtype_max + 1}),
        ("nested", {first: {"a": 1}}),
    ]:  # fmt: skip
        yield f"mapping.{label}", obj, True
    yield "mapping.empty", {}, False
    yield "mapping.long-name", {"n" * 100_000: 1}, False


def _dtype_max(dtype: str) -> int:
    return {"bool": 1, "uint8": 255, "uint16": 65535, "uint32": 2**32 - 1}[dtype]


def bbox_variants(shape: list[int], bbox: list[int] | None) -> Iterator[tuple[str, object]]:
    """``(z, y, x)`` shape; every variant must be rejected (or fail the size check)."""
    z, y, x = shape
    b = bbox or [0, 1, 0, 1, 0, 1]
    for label, val in [
        ("outside", [0, z + 1, 0, y, 0, x]), ("inverted", [2, 1, 0, y, 0, x]),
        ("empty-axis", [1, 1, 0, y, 0, x]), ("negative", [-1, z, 0, y, 0, x]),
        ("2**32", [0, 2**32, 0, y, 0, x]), ("2**64", [0, 2**64, 0, y, 0, x]),
        ("short", b[:4]), ("long", [*b, 0]), ("floats", [float(v) for v in b]),
        ("bools", [True] * 6), ("strings", [str(v) for v in b]), ("null-in", [None, *b[1:]]),
        ("object", {"z0": 0}), ("shifted", [b[0] + 1, b[1] + 1, *b[2:]] if b[1] < z else b),
    ]:  # fmt: skip
        yield f"bbox={label}", val


def label_rejected(label: object, dtype_max: int) -> bool:
    """Whether a reader must reject ``{name: label}`` for a mask whose dtype holds labels up
    to ``dtype_max`` (labels are non-negative JSON integers, not booleans, that fit; the set
    voxels of a boolean mask are label 1, so a boolean mask cannot name label 0)."""
    lowest = 1 if dtype_max == 1 else 0
    return type(label) is not int or not lowest <= label <= dtype_max


def bare_label_values(dtype_max: int) -> list[object]:
    """Values for a 2.2 row's bare-number ``mapping`` (short for ``{name: n}``)."""
    vals: list[object] = [0, 1, dtype_max, dtype_max + 1, -1, 2**31, 2**32, 2**64, 2**70]
    vals += [True, False, 1.5, 1.0, -0.0, "1", None]
    out: list[object] = []
    for v in vals:
        if not any(type(v) is type(o) and v == o for o in out):
            out.append(v)
    return out


def extra_variants(minor: int) -> Iterator[tuple[str, object, bool]]:
    """``(label, extra, must_reject)`` for an index row's ``extra`` object. The centroid
    lives in ``extra`` in 2.1; in 2.2 it has a column of its own and a ``"centroid"`` key
    of ``extra`` is an unknown key, ignored like any other."""
    yield from [
        ("extra=5", 5, True),
        ("extra=list", [1, 2], True),
        ("extra=str", "attrs", True),
        ("extra=true", True, True),
        ("extra.attrs=5", {"attrs": 5}, True),
        ("extra.attrs=list", {"attrs": []}, True),
        ("extra.attrs.color=bad", {"attrs": {"color": [1, 2, 300]}}, True),
        ("extra.attrs.type=str", {"attrs": {"type": "liver"}}, True),
        ("extra.attrs.huge", {"attrs": {"description": "x" * 100_000}}, True),
        ("extra.attrs.deep", {"attrs": {"a": json.loads("[" * 50 + "]" * 50)}}, True),
        ("extra.unknown-key", {"future": {"x": 1}}, False),
        ("extra=null", None, False),
        ("extra=empty", {}, False),
        ("extra.attrs=null", {"attrs": None}, False),
        ("extra.attrs.color", {"attrs": {"color": [1, 2, 3]}}, False),
    ]
    in_extra = minor == 1
    for label, val in [
        ("str", "abc"),
        ("short", [1.0, 2.0]),
        ("outside", [1e9, 0.0, 0.0]),
        ("bool", [True, 1, 1]),
        ("null-in", [None, 5.0, 5.0]),
    ]:
        yield f"extra.centroid={label}", {"centroid": val}, in_extra
    yield "extra.centroid=inside", {"centroid": [6.5, 9.5, 10.5]}, False
    yield (
        "extra.centroid=bad+attrs",
        {"centroid": "abc", "attrs": {"color": [1, 2, 3]}},
        in_extra,
    )


def centroid_rejected(val: object, bbox: list[int] | None) -> bool:
    """Whether a reader must reject a 2.2 ``centroid`` column: anything but null or three
    JSON integers (not booleans) within ``CENTROID_SLACK`` units of the bbox's voxels, and
    any centroid of an empty mask."""
    if val is None:
        return False
    if not (type(val) is list and len(val) == 3 and all(type(c) is int for c in val)):
        return True
    if bbox is None:
        return True
    scale, slack = S.CENTROID_SCALE, S.CENTROID_SLACK
    return not all(
        bbox[2 * a] * scale - slack <= c <= (bbox[2 * a + 1] - 1) * scale + slack
        for a, c in enumerate(val)
    )


def centroid_variants(rows: list, fields: list[str]) -> Iterator[tuple[int, str, object, bool]]:
    """``(row, label, centroid, must_reject)`` for the 2.2 ``centroid`` column of a
    multi-voxel row, the empty row and a one-voxel row (when the sample has one)."""
    ci = S.col(fields, "centroid")
    scale, slack = S.CENTROID_SCALE, S.CENTROID_SLACK
    k = 1
    b, orig = rows[k][6], rows[k][ci]
    assert b is not None and type(orig) is list, "row 1 holds a non-empty mask"
    lo = [b[0] * scale - slack, b[2] * scale - slack, b[4] * scale - slack]
    hi = [(b[1] - 1) * scale + slack, (b[3] - 1) * scale + slack, (b[5] - 1) * scale + slack]
    variants: list[tuple[str, object]] = [
        ("null", None), ("str", "abc"), ("number", orig[0]), ("object", {"z": orig[0]}),
        ("short", orig[:2]), ("long", [*orig, 0]), ("empty-list", []),
        ("floats", [float(v) for v in orig]), ("float-one", [orig[0] + 0.5, *orig[1:]]),
        ("decimal-as-2.1", [v / scale for v in orig]), ("bools", [True, True, True]),
        ("bool-one", [True, *orig[1:]]), ("null-in", [None, *orig[1:]]),
        ("str-in", [str(orig[0]), *orig[1:]]), ("nested", [[orig[0]], *orig[1:]]),
        ("inf", [float("inf"), *orig[1:]]), ("nan", [float("nan"), *orig[1:]]),
        ("2**63", [2**63] * 3), ("2**64", [2**64, *orig[1:]]), ("10**30", [10**30, *orig[1:]]),
        ("-2**63", [-(2**63), *orig[1:]]), ("negative", [-1, *orig[1:]]),
        ("unscaled", [round(v / scale) for v in orig]), ("scaled-twice", [v * scale for v in orig]),
        ("corner-lo", lo), ("corner-hi", hi), ("corner-lo-1", [v - 1 for v in lo]),
        ("corner-hi+1", [v + 1 for v in hi]), ("other-row's", rows[0][ci]),
    ]  # fmt: skip
    for a, axis in enumerate("zyx"):
        for label, v in [("lo", lo[a]), ("lo-1", lo[a] - 1), ("hi", hi[a]), ("hi+1", hi[a] + 1)]:
            val = list(orig)
            val[a] = v
            variants.append((f"{axis}={label}", val))
    for label, val in variants:
        yield k, f"centroid={label}", val, centroid_rejected(val, b)
    empty = next(i for i, r in enumerate(rows) if r[6] is None)
    for label, val in [("zeros", [0, 0, 0]), ("row1's", orig), ("str", "x"), ("null", None)]:
        yield empty, f"centroid={label}", val, val is not None
    for i, r in enumerate(rows):
        box = r[6]
        if box is not None and all(box[2 * a + 1] - box[2 * a] == 1 for a in range(3)):
            c = [box[0] * scale, box[2] * scale, box[4] * scale]
            for label, d in [
                ("-10", -slack),
                ("+10", slack),
                ("-11", -slack - 1),
                ("+11", slack + 1),
            ]:
                for a, axis in enumerate("zyx"):
                    val = list(c)
                    val[a] += d
                    yield i, f"centroid.{axis}{label}", val, centroid_rejected(val, box)
            break


def v1_blob(
    flag: int, dtype: bytes, ndim: int, shape: list[int], payload: bytes, dlen: int | None = None
) -> bytes:
    import struct

    head = bytes([flag, len(dtype) if dlen is None else dlen]) + dtype + bytes([ndim])
    head += b"".join(struct.pack("<q", v) for v in shape)
    return head + payload


def v1_blob_variants(blob: bytes, shape: tuple[int, ...]) -> Iterator[tuple[str, bytes, bool]]:
    """Hostile version-1 blob headers and payloads: ``(label, blob, must_reject)``."""
    dlen = blob[1]
    flag, dtype = blob[0], blob[2 : 2 + dlen]
    payload = blob[3 + dlen + 24 :]
    sh = list(shape)
    yield "blob.flag=2", v1_blob(2, dtype, 3, sh, payload), True
    yield "blob.flag=swapped", v1_blob(1 - flag, dtype, 3, sh, payload), True
    for d in BAD_DTYPES:
        if isinstance(d, str):
            yield f"blob.dtype={d!r}", v1_blob(flag, d.encode("utf-8"), 3, sh, payload), True
    yield "blob.dtype_len=255", v1_blob(flag, dtype, 3, sh, payload, dlen=255), True
    yield "blob.dtype_len=0", v1_blob(flag, dtype, 3, sh, payload, dlen=0), True
    for nd in (0, 1, 2, 4, 255):
        shp = (sh * 100)[:nd]
        yield f"blob.ndim={nd}", v1_blob(flag, dtype, nd, shp, payload), True
    yield "blob.ndim=255-short", v1_blob(flag, dtype, 255, sh, payload), True
    for label, val in [
        ("zero", [0, sh[1], sh[2]]), ("negative", [-1, sh[1], sh[2]]), ("-2**63", [-(2**63), 1, 1]),
        ("2**62", [2**62, 1, 1]), ("overflow", [2**21, 2**21, 2**21]), ("over-limit", [2**13, 2**13, 2**11]),
        ("bigger", [sh[0] + 1, sh[1], sh[2]]), ("transposed", sh[::-1]),
    ]:  # fmt: skip
        yield f"blob.shape={label}", v1_blob(flag, dtype, 3, val, payload), True
    yield "blob.payload=empty", v1_blob(flag, dtype, 3, sh, b""), True
    yield (
        "blob.payload=raw",
        v1_blob(flag, dtype, 3, sh, zstandard.ZstdDecompressor().decompress(payload)),
        True,
    )
    yield (
        "blob.payload=no-content-size",
        v1_blob(
            flag,
            dtype,
            3,
            sh,
            zstandard.ZstdCompressor(write_content_size=False).compress(b"\0" * 100),
        ),
        True,
    )
    yield "blob.payload=truncated", v1_blob(flag, dtype, 3, sh, payload[:-3]), True
    # bytes after the first zstd frame are ignored: the stored array still reads back exactly
    yield "blob.payload=two-frames", v1_blob(flag, dtype, 3, sh, payload + payload), False
    yield "blob.payload=garbage-after", v1_blob(flag, dtype, 3, sh, payload + b"\x00\x01"), False
    skippable = b"\x50\x2a\x4d\x18" + (4).to_bytes(4, "little") + b"abcd"
    yield "blob.payload=skippable-first", v1_blob(flag, dtype, 3, sh, skippable + payload), True


def _expected_nbytes(dtype: str, shape: list[int]) -> int:
    n = shape[0] * shape[1] * shape[2]
    return (n + 7) // 8 if dtype == "bool" else n * {"uint8": 1, "uint16": 2, "uint32": 4}[dtype]


def hostile_msk1(s: S.Sample, rng: random.Random, n: int) -> Iterator[Case]:
    p = S.parse_msk1(s.data)

    def case(label: str, data: bytes, must: bool) -> Case:
        return Case(s.name, s.kind, "hostile-json", label, data, forged=True, must_reject=must)

    for label, sb, must in space_variants(p["space"]):
        yield case(label, S.build_msk1(sb, p["mapping"], p["blob"]), must)
    dtype = p["blob"][2 : 2 + p["blob"][1]].decode()
    for label, obj, must in mapping_variants(json.loads(p["mapping"]), _dtype_max(dtype)):
        yield case(label, S.build_msk1(p["space"], json.dumps(obj).encode(), p["blob"]), must)
    for label, raw in [
        ("mapping.bad-utf8", b'{"\xff": 1}'),
        ("mapping.truncated", p["mapping"][:-1]),
        ("mapping.deep", b"[" * 100_000),
    ]:
        yield case(label, S.build_msk1(p["space"], raw, p["blob"]), True)
    for label, blob, must in v1_blob_variants(p["blob"], S.SHAPE):
        yield Case(
            s.name,
            s.kind,
            "v1-blob-header",
            label,
            S.build_msk1(p["space"], p["mapping"], blob),
            True,
            must,
        )


def hostile_mska1(s: S.Sample, rng: random.Random, n: int) -> Iterator[Case]:
    p = S.parse_mska1(s.data)
    index = p["index"]

    def case(label: str, data: bytes, must: bool = True, fam: str = "hostile-json") -> Case:
        return Case(s.name, s.kind, fam, label, data, forged=True, must_reject=must)

    for label, sb, must in space_variants(p["space"]):
        yield case(label, S.mska1_with_index(s.data, index, space=sb), must)
    for label, raw in [
        ("index.object", b"{}"), ("index.null", b"null"), ("index.number", b"5"),
        ("index.bad-utf8", b'[{"name": "\xff"}]'), ("index.truncated", json.dumps(index).encode()[:-2]),
        ("index.deep", b"[" * 100_000 + b"]" * 100_000), ("index.NaN", json.dumps(index).encode().replace(b'"offset": ', b'"offset": NaN, "x": ', 1)),
        ("index.not-json", b"\x00\x01garbage"), ("index.zeros-only", b"\0" * 64),
    ]:  # fmt: skip
        yield case(label, S.mska1_with_index(s.data, raw, count=len(index)))
    for label, count in [
        ("count=+1", len(index) + 1),
        ("count=0", 0),
        ("count=2**64-1", 2**64 - 1),
    ]:
        yield case(label, S.mska1_with_index(s.data, index, count=count))

    def with_entry(k: int, **kw: object) -> bytes:
        rows = [dict(e) for e in index]
        for key, val in kw.items():
            if val is _DROP:
                rows[k].pop(key)
            else:
                rows[k][key] = val
        return S.mska1_with_index(s.data, rows)

    size = len(s.data)
    for label, kw in [
        ("name=empty", {"name": ""}), ("name=5", {"name": 5}), ("name=null", {"name": None}),
        ("name=dup", {"name": index[0]["name"]}), ("no-offset", {"offset": _DROP}), ("no-mapping", {"mapping": _DROP}),
        ("offset=-1", {"offset": -1}), ("offset=2**64-1", {"offset": 2**64 - 1}), ("offset=2**63", {"offset": 2**63}),
        ("offset=size", {"offset": size}), ("offset=0", {"offset": 0}), ("offset=1.5", {"offset": 1.5}),
        ("offset=str", {"offset": "100"}), ("offset=true", {"offset": True}), ("length=-1", {"length": -1}),
        ("length=2**64", {"length": 2**64}), ("length=0", {"length": 0}),
        ("length=-1byte", {"length": index[1]["length"] - 1}),
    ]:  # fmt: skip
        yield case(f"entry1.{label}", with_entry(1, **kw))
    yield case(
        "entry1.length=+1 (trailing byte)", with_entry(1, length=index[1]["length"] + 1), False
    )
    rows = [dict(e) for e in index]
    rows[0]["offset"], rows[1]["offset"] = rows[1]["offset"], rows[0]["offset"]
    rows[0]["length"], rows[1]["length"] = rows[1]["length"], rows[0]["length"]
    yield case("entries-swapped", S.mska1_with_index(s.data, rows), False)
    yield case("entry-not-object", S.mska1_with_index(s.data, [*index[:1], [1, 2], *index[2:]]))
    for label, obj, must in mapping_variants(index[1]["mapping"], 255):
        yield case(f"entry1.{label}", with_entry(1, mapping=obj), must)
    for label, obj, must in mapping_variants(index[0]["mapping"], 1):
        if label.endswith("too-big-for-dtype"):
            yield case(f"entry0(bool).{label}", with_entry(0, mapping=obj), must)
    # hostile version-1 blobs: replace the blob of entry 1 (appended at the end)
    blob1 = s.data[index[1]["offset"] : index[1]["offset"] + index[1]["length"]]
    for label, blob, must in v1_blob_variants(blob1, S.SHAPE):
        rows = [dict(e) for e in index]
        rows[1]["offset"], rows[1]["length"] = len(s.data), len(blob)
        data = S.mska1_with_index(s.data + blob, rows)
        yield case(f"entry1.{label}", data, must, fam="v1-blob-header")


_DROP = object()


def _meta_variants(meta: dict) -> Iterator[tuple[str, dict | bytes, bool]]:
    keys = list(meta)
    shape_zyx = list(json.loads(json.dumps(meta["space"]))["shape"][::-1])
    for k in keys:
        m = dict(meta)
        m.pop(k)
        yield f"meta.no-{k}", m, True
    yield "meta.extra-key", {**meta, "x": 1}, True
    for label, raw in [
        ("meta.list", b"[]"), ("meta.null", b"null"), ("meta.bad-utf8", b'{"\xff":1}'),
        ("meta.truncated", json.dumps(meta).encode()[:-1]), ("meta.deep", b"[" * 100_000 + b"]" * 100_000),
        ("meta.trailing", json.dumps(meta).encode() + b" x"), ("meta.empty", b""),
    ]:  # fmt: skip
        yield label, raw, True
    for c in (0, 2, 255, 256, -1, "1", None, 1.0, True):
        # codec 0 is a registered codec: valid for an empty mask (nothing to decode)
        yield f"meta.codec={c!r}", {**meta, "codec": c}, c != 0 or meta["bbox"] is not None
    for d in BAD_DTYPES:
        yield f"meta.dtype={d!r}", {**meta, "dtype": d}, True
    for label, val in bbox_variants(shape_zyx, meta["bbox"]):
        yield (
            f"meta.{label}",
            {**meta, "bbox": val},
            not label.endswith("shifted") or meta["bbox"] is None,
        )
    if meta["bbox"] is not None:
        yield "meta.bbox=null-with-data", {**meta, "bbox": None}, True
    for v in (-1, 2**64, 1.5, None, "3", 10**9):
        yield f"meta.voxels={v!r}", {**meta, "voxels": v}, True
    mx = _dtype_max(meta["dtype"]) if meta["dtype"] in ("bool", "uint8", "uint16", "uint32") else 1
    for label, obj, must in mapping_variants(meta["mapping"], mx):
        yield f"meta.{label}", {**meta, "mapping": obj}, must
    for label, sb, must in space_variants(json.dumps(meta["space"]).encode()):
        try:
            sp = json.loads(sb)
        except (ValueError, UnicodeDecodeError, RecursionError):
            continue  # raw-byte variants cannot be embedded in the meta object
        if sp == meta["space"]:
            continue  # e.g. a UTF-8 BOM: json.loads(bytes) strips it, nothing is left to embed
        yield f"meta.{label}", {**meta, "space": sp}, must


def hostile_msk2(s: S.Sample, rng: random.Random, n: int) -> Iterator[Case]:
    p = S.parse_msk2(s.data)
    for label, meta, must in _meta_variants(p["meta"]):
        yield Case(s.name, s.kind, "hostile-json", label, S.build_msk2(meta, p["blob"]), True, must)
    # forged header oddities: meta overlapping the header, blob overlapping the meta
    yield Case(
        s.name,
        s.kind,
        "hostile-json",
        "hdr.meta@0",
        S.build_msk2(p["meta"], p["blob"], m_off=0),
        True,
        True,
    )
    if p["blob"]:
        yield Case(
            s.name, s.kind, "hostile-json", "hdr.blob-in-meta",
            S.build_msk2(p["meta"], p["blob"], b_off=64, b_crc=S.crc(s.data[64 : 64 + len(p["blob"])])), True, True,
        )  # fmt: skip


def hostile_mska2(s: S.Sample, rng: random.Random, n: int) -> Iterator[Case]:
    p = S.parse_mska2(s.data)
    rows = p["rows"]
    cur = p["slots"][p["active"]]

    def case(label: str, data: bytes, must: bool = True, fam: str = "hostile-json") -> Case:
        return Case(s.name, s.kind, fam, label, data, forged=True, must_reject=must)

    shape_zyx = list(S.SHAPE)
    k = 1  # the "organs" row (uint8, three labels, non-empty)
    fields = p["fields"]  # the sample's own layout (2.1 or 2.2)
    assert all(f == fields for f in p["row_fields"]), "a sample has one layout"
    minor = S.minor_of(fields)

    def row_with(idx: int, col: str, val: object) -> list:
        new = [list(r) for r in rows]
        new[idx][S.col(fields, col)] = val
        return new

    for label, sb, must in space_variants(p["space"]):
        yield case(label, S.mska2_commit(s.data, space=sb), must)
    end = cur["end"]
    for col, vals in [
        ("name", ["", 5, None, rows[0][0], ["x"]]),
        ("codec", [0, 2, 255, 256, -1, "1", None, 1.5]),
        ("offset", [0, 143, end, end - 1, 2**64 - 1, 2**64, -1, 1.5, "300"]),
        ("length", [0, 2**64 - 1, 2**64, -1, rows[k][3] + 1, rows[k][3] - 1, end]),
        ("crc32", [0, 2**32, -1, None, rows[k][4] ^ 1]),
        ("dtype", BAD_DTYPES + ["uint16", "bool"]),
        ("voxels", [-1, 2**64, 1.5, None, 10**9]),
    ]:
        for v in vals:
            yield case(f"row1.{col}={v!r}", S.mska2_commit(s.data, rows=row_with(k, col, v)))
    for label, val in bbox_variants(shape_zyx, rows[k][6]):
        yield case(
            f"row1.{label}",
            S.mska2_commit(s.data, rows=row_with(k, "bbox", val)),
            not label.endswith("shifted"),
        )
    yield case("row1.bbox=null-with-data", S.mska2_commit(s.data, rows=row_with(k, "bbox", None)))
    if "extra" in fields:
        for label, val, must in extra_variants(minor):
            yield case(
                f"row1.{label}", S.mska2_commit(s.data, rows=row_with(k, "extra", val)), must
            )
    if "centroid" in fields:
        for idx, label, val, must in centroid_variants(rows, fields):
            yield case(
                f"row{idx}({rows[idx][0]}).{label}",
                S.mska2_commit(s.data, rows=row_with(idx, "centroid", val)),
                must,
            )
    empty = next(i for i, r in enumerate(rows) if r[6] is None)
    yield case(
        "row-empty.bbox=whole",
        S.mska2_commit(s.data, rows=row_with(empty, "bbox", [0, 1, 0, 1, 0, 1])),
    )
    for label, obj, must in mapping_variants(S.row_mapping(rows[k], fields), 255):
        if label == "mapping.number" and minor >= 2:  # a bare label number: {name: 3}
            must = label_rejected(obj, 255)
        yield case(f"row1.{label}", S.mska2_commit(s.data, rows=row_with(k, "mapping", obj)), must)
    for label, obj, must in mapping_variants(S.row_mapping(rows[0], fields), 1):
        if label.endswith("too-big-for-dtype"):
            yield case(
                f"row0(bool).{label}",
                S.mska2_commit(s.data, rows=row_with(0, "mapping", obj)),
                must,
            )
    for idx, r in enumerate(rows):
        top = _dtype_max(r[5])
        for v in bare_label_values(top):
            # 2.2: a bare number n is short for {name: n}, rejected exactly when that is;
            # 2.1 has no short form: a mapping must be an object
            must = label_rejected(v, top) if minor >= 2 else True
            where = f"row{idx}({r[0]},{r[5]})"
            yield case(
                f"{where}.mapping=bare {v!r}",
                S.mska2_commit(s.data, rows=row_with(idx, "mapping", v)),
                must,
            )
            if idx < 2:  # the long form of the same mapping: the same verdict in any layout
                yield case(
                    f"{where}.mapping={{name: {v!r}}}",
                    S.mska2_commit(s.data, rows=row_with(idx, "mapping", {r[0]: v})),
                    label_rejected(v, top),
                )
    new = [list(r) for r in rows]
    new[0][2:5], new[1][2:5] = new[1][2:5], new[0][2:5]
    yield case("rows.blobs-swapped", S.mska2_commit(s.data, rows=new))
    yield case("rows.short-row", S.mska2_commit(s.data, rows=[*rows[:1], rows[1][:8], *rows[2:]]))
    yield case("rows.long-row", S.mska2_commit(s.data, rows=[*rows[:1], [*rows[1], 0], *rows[2:]]))
    yield case(
        "rows.row-object", S.mska2_commit(s.data, rows=[*rows[:1], {"name": "x"}, *rows[2:]])
    )
    yield case("rows.empty", S.mska2_commit(s.data, rows=[], count=0))
    yield case("rows.count+1", S.mska2_commit(s.data, rows=rows, count=len(rows) + 1))
    yield case("rows.count=2**64-1", S.mska2_commit(s.data, rows=rows, count=2**64 - 1))
    seg = {"prev": None, "fields": fields, "rows": rows}
    newest = p["segments"][0]
    other = S.INDEX_FIELDS_21 if minor >= 2 else S.INDEX_FIELDS
    for label, obj, must in [
        ("seg.fields-other", {**seg, "fields": fields[::-1]}, True),
        ("seg.fields-more", {**seg, "fields": [*fields, "extra"]}, True),
        ("seg.fields-fewer", {**seg, "fields": fields[:-1]}, True),
        # rows of this layout declared as the other one: every row has the wrong width
        (f"seg.fields-of-2.{S.minor_of(other)}", {**seg, "fields": other}, True),
        # the same masks in each other layout: valid, and read back the same
        *[
            (
                f"seg.rows-as-2.{m}",
                {**seg, "fields": lay, "rows": [S.convert_row(r, fields, lay) for r in rows]},
                False,
            )
            for m, lay in S.INDEX_LAYOUTS.items()
            if lay != fields
        ],
        ("seg.no-prev", {"fields": fields, "rows": rows}, True),
        ("seg.extra-key", {**seg, "x": 1}, True),
        ("seg.list", [seg], True),
        ("seg.prev=self", {**seg, "prev": [end, 1000, 0]}, True),
        ("seg.prev=garbage", {**seg, "prev": "abc"}, True),
        ("seg.prev=short", {**seg, "prev": [newest[0], newest[1]]}, True),
        ("seg.prev=neg", {**seg, "prev": [-1, 10, 0]}, True),
        ("seg.prev=2**64", {**seg, "prev": [2**64, 10, 0]}, True),
        ("seg.prev=bad-crc", {**seg, "rows": rows[-1:], "prev": [newest[0], newest[1], 0]}, True),
    ]:
        raw = json.dumps(obj).encode()
        yield case(label, S.mska2_commit(s.data, segment=raw, count=len(rows)), must)
    # a chain that loops: two forged segments each naming the other (offsets must decrease,
    # so a loop is impossible to express; instead: a chain of 100 tiny segments)
    data = s.data
    prev = None
    for i in range(100):
        body = bytearray(data)
        d = json.dumps(
            {
                "prev": prev,
                "fields": fields,
                "rows": [rows[0]] if i == 0 else [[f"m{i}", *rows[-1][1:]]],
            }
        ).encode()
        stored = zstandard.ZstdCompressor(write_content_size=True).compress(d)
        prev = [len(body), len(stored), S.crc(stored)]
        data = bytes(body + stored)
    yield case(
        "seg.chain-100",
        S.mska2_commit(
            data,
            slot={
                "i_off": prev[0],
                "i_len": prev[1],
                "i_crc": prev[2],
                "count": 100,
                "end": len(data),
            },
        ),
    )
    for label, raw, comp in [
        ("seg.bad-utf8", b'{"prev":null,"fields":[],"rows":["\xff"]}', True),
        ("seg.truncated", json.dumps(seg).encode()[:-1], True),
        ("seg.deep", b"[" * 100_000 + b"]" * 100_000, True),
        ("seg.not-zstd", json.dumps(seg).encode(), False),
        ("seg.empty", b"", True),
    ]:
        yield case(label, S.mska2_commit(s.data, segment=raw, count=len(rows), compress=comp))
    nocs = zstandard.ZstdCompressor(write_content_size=False).compress(json.dumps(seg).encode())
    yield case("seg.no-content-size", _with_raw_segment(s.data, nocs, len(rows)))
    for label, frame in [
        ("seg.bomb-claims-1GiB", S.rle_frame(0x20, 1 << 30, max_blocks=1)),
        ("seg.bomb-claims-2**63", S.zstd_frame(1 << 63, [S.rle_block(0x20, 1 << 17, True)])),
        ("seg.lies-small", S.rle_frame(0x20, 1 << 18, declared=10)),
        # honest: valid JSON padded with 1 GiB of spaces, 32 KiB stored
        ("seg.whitespace-1GiB", S.whitespace_bomb(json.dumps(seg).encode(), 1 << 30)),
    ]:
        yield case(label, _with_raw_segment(s.data, frame, len(rows)), fam="bomb")
    # commit slot oddities (valid slot CRC)
    for label, kw in [
        ("slot.end=size+1", {"end": end + 1}), ("slot.end=143", {"end": 143}), ("slot.end=2**64-1", {"end": 2**64 - 1}),
        ("slot.end=index-start", {"end": cur["i_off"]}), ("slot.space-len=0", {"s_len": 0, "s_off": 0, "s_crc": 0}),
        ("slot.space@0", {"s_off": 0}), ("slot.index@0", {"i_off": 0}), ("slot.index-len+1", {"i_len": cur["i_len"] + 1}),
        ("slot.gen=2**64-1", {"gen": 2**64 - 1, "count": cur["count"] + 0}), ("slot.count=0", {"count": 0}),
    ]:  # fmt: skip
        must = label not in ("slot.gen=2**64-1",)
        yield case(label, S.mska2_commit(s.data, slot=kw), must)


def _with_raw_segment(data: bytes, stored: bytes, count: int) -> bytes:
    p = S.parse_mska2(data)
    cur = p["slots"][p["active"]]
    body = data[: cur["end"]] + stored
    return S.mska2_commit(
        body,
        slot={
            "i_off": cur["end"],
            "i_len": len(stored),
            "i_crc": S.crc(stored),
            "count": count,
            "end": len(body),
        },
    )


def hostile(s: S.Sample, rng: random.Random, n: int) -> Iterator[Case]:
    yield from {
        "msk1": hostile_msk1,
        "mska1": hostile_mska1,
        "msk2": hostile_msk2,
        "mska2": hostile_mska2,
    }[s.kind](s, rng, n)


# --------------------------------------------------------------------------------------------
# decompression bombs
# --------------------------------------------------------------------------------------------
def bombs(s: S.Sample, rng: random.Random, n: int) -> Iterator[Case]:
    """Tiny blobs whose zstd frame claims gigabytes, frames that produce more than they
    declare, frames without a content size; headers made consistent with the claim."""

    def case(label: str, data: bytes) -> Case:
        return Case(s.name, s.kind, "bomb", label, data, forged=True, must_reject=True)

    claims = [("1GiB", 1 << 30), ("8GiB", 1 << 33), ("64GiB", 1 << 36)]
    if s.kind == "msk1":
        p = S.parse_msk1(s.data)
        sp = json.loads(p["space"])
        for label, total in claims:
            side = round(total ** (1 / 3))
            big = json.dumps({**sp, "shape": [side, side, side]}).encode()
            blob = v1_blob(0, b"uint8", 3, [side] * 3, S.rle_frame(1, total, max_blocks=2))
            yield case(f"blob-claims-{label}", S.build_msk1(big, p["mapping"], blob))
        exp = S.SHAPE[0] * S.SHAPE[1] * S.SHAPE[2]
        yield case(
            "frame-overruns",
            S.build_msk1(
                p["space"],
                p["mapping"],
                v1_blob(0, b"uint8", 3, list(S.SHAPE), S.rle_frame(1, exp * 64, declared=exp)),
            ),
        )
        yield case(
            "frame-no-size",
            S.build_msk1(
                p["space"],
                p["mapping"],
                v1_blob(
                    0, b"uint8", 3, list(S.SHAPE), S.zstd_frame(None, [S.rle_block(1, exp, True)])
                ),
            ),
        )
        yield case(
            "frame-2**64-1",
            S.build_msk1(
                p["space"],
                p["mapping"],
                v1_blob(
                    0,
                    b"uint8",
                    3,
                    list(S.SHAPE),
                    S.zstd_frame(2**64 - 1, [S.rle_block(1, 1 << 17, True)]),
                ),
            ),
        )
    elif s.kind == "mska1":
        p = S.parse_mska1(s.data)
        sp = json.loads(p["space"])
        for label, total in claims:
            side = round(total ** (1 / 3))
            big = json.dumps({**sp, "shape": [side, side, side]}).encode()
            blob = v1_blob(0, b"uint8", 3, [side] * 3, S.rle_frame(1, total, max_blocks=2))
            rows = [
                {"name": "bomb", "offset": len(s.data), "length": len(blob), "mapping": {"b": 1}}
            ]
            yield case(f"blob-claims-{label}", S.mska1_with_index(s.data + blob, rows, space=big))
    elif s.kind == "msk2":
        p = S.parse_msk2(s.data)
        meta = p["meta"]
        for label, total in claims:
            side = round(total ** (1 / 3))
            m = {
                **meta,
                "dtype": "uint8",
                "space": {**meta["space"], "shape": [side] * 3},
                "bbox": [0, side] * 3,
                "voxels": 1,
                "codec": 1,
                "mapping": {"b": 1},
            }
            yield case(f"blob-claims-{label}", S.build_msk2(m, S.rle_frame(1, total, max_blocks=2)))
        exp = S.SHAPE[0] * S.SHAPE[1] * S.SHAPE[2]
        m = {
            **meta,
            "dtype": "uint8",
            "bbox": [0, S.SHAPE[0], 0, S.SHAPE[1], 0, S.SHAPE[2]],
            "voxels": 1,
            "codec": 1,
            "mapping": {"b": 1},
        }
        yield case("frame-overruns", S.build_msk2(m, S.rle_frame(1, exp * 64, declared=exp)))
        yield case(
            "frame-no-size", S.build_msk2(m, S.zstd_frame(None, [S.rle_block(1, exp, True)]))
        )
        yield case(
            "frame-2**64-1",
            S.build_msk2(m, S.zstd_frame(2**64 - 1, [S.rle_block(1, 1 << 17, True)])),
        )
        # an honest frame: every voxel of the box set; a valid file (not an attack), read back
        honest = Case(
            s.name, s.kind, "bomb", "honest-rle", S.build_msk2(m, S.rle_frame(1, exp)), forged=True
        )
        yield honest
    elif s.kind == "mska2":
        p = S.parse_mska2(s.data)
        sp = json.loads(p["space"])
        fields = p["fields"]  # rows in the sample's own layout: only the size claim is wrong
        for label, total in claims:
            side = round(total ** (1 / 3))
            frame = S.rle_frame(1, total, max_blocks=2)
            body = s.data + frame
            row = [
                "bomb",
                1,
                len(s.data),
                len(frame),
                S.crc(frame),
                "uint8",
                [0, side] * 3,
                1,
                {"b": 1},
            ]
            row = S.pad_row(row, fields)
            big = json.dumps({**sp, "shape": [side] * 3}).encode()
            yield case(f"blob-claims-{label}", S.mska2_commit(body, rows=[row], space=big))
        exp = S.SHAPE[0] * S.SHAPE[1] * S.SHAPE[2]
        for label, frame in [
            ("frame-overruns", S.rle_frame(1, exp * 64, declared=exp)),
            ("frame-no-size", S.zstd_frame(None, [S.rle_block(1, exp, True)])),
            ("frame-2**64-1", S.zstd_frame(2**64 - 1, [S.rle_block(1, 1 << 17, True)])),
        ]:
            body = s.data + frame
            row = [
                "bomb",
                1,
                len(s.data),
                len(frame),
                S.crc(frame),
                "uint8",
                [0, S.SHAPE[0], 0, S.SHAPE[1], 0, S.SHAPE[2]],
                1,
                {"b": 1},
            ]
            row = S.pad_row(row, fields)
            yield case(label, S.mska2_commit(body, rows=[*p["rows"], row]))


# --------------------------------------------------------------------------------------------
# misc: not our file, the other kind, empty
# --------------------------------------------------------------------------------------------
def misc(s: S.Sample, rng: random.Random, n: int) -> Iterator[Case]:
    def case(label: str, data: bytes) -> Case:
        return Case(s.name, s.kind, "misc", label, data, must_reject=True)

    yield case("empty", b"")
    yield case("magic-only", s.data[:4])
    yield case("magic+version", s.data[:6])
    yield case("zeros", b"\0" * len(s.data))
    yield case("ones", b"\xff" * len(s.data))
    yield case("random", bytes(rng.randrange(256) for _ in range(len(s.data))))
    yield case("version=3", s.data[:4] + b"\x03" + s.data[5:])
    yield case("version=0", s.data[:4] + b"\x00" + s.data[5:])
    yield case("version=255", s.data[:4] + b"\xff" + s.data[5:])
    other = b"MSKA" if s.data[:4] == b"MSK1" else b"MSK1"
    yield case("other-kind-magic", other + s.data[4:])
    yield case("nifti-gz", b"\x1f\x8b\x08\x00" + s.data[4:])
    yield case("zstd-of-file", zstandard.ZstdCompressor().compress(s.data))


FAMILIES: dict[str, Callable[[S.Sample, random.Random, int], Iterator[Case]]] = {
    "intact": intact,
    "truncate-boundary": truncate_boundary,
    "truncate-random": truncate_random,
    "bitflip-header": bitflip_header,
    "bitflip-random": bitflip_random,
    "byte-random": byte_random,
    "field-extreme": field_extreme,
    "field-extreme-forged": field_extreme_forged,
    "hostile": hostile,
    "bomb": bombs,
    "misc": misc,
}


def family_names() -> list[str]:
    return list(FAMILIES)


def generate(
    samples: dict[str, S.Sample],
    *,
    n_random: int = 200,
    seed: int = 0,
    families: list[str] | None = None,
    sample_names: list[str] | None = None,
    subsample: float | None = None,
) -> Iterator[Case]:
    """Every case of the chosen families over the chosen samples.

    ``n_random`` is the count per sample of each random family; ``subsample`` keeps a
    random fraction of the systematic families (for the quick run in the test suite).
    """
    rng = random.Random(seed)
    for name in sample_names or list(samples):
        s = samples[name]
        for fam in families or list(FAMILIES):
            for c in FAMILIES[fam](s, rng, n_random):
                if (
                    subsample is not None
                    and fam not in ("intact", "hostile", "bomb", "misc")
                    and rng.random() > subsample
                ):
                    continue
                c.must_read = c.must_read or valid_by_spec(c)
                yield c
