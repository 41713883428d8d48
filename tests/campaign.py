"""The reliability campaign: corrupt files, crash-kill cycles, concurrent readers.

Shared by the tests (small scale) and ``benchmarks/reliability_report.py`` (the
figures in ``docs/reliability.md``). Not a test module itself.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import struct
import time
import tracemalloc
import zlib
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import zstandard

from medmask import MaskArchive, SegmentationMask, load_mask, save_mask
from medmask.errors import CorruptFileError
from medmask.format import v1, v2
from medmask.spaces import Space

SHAPE = (12, 16, 20)
SPACE = Space(
    shape=SHAPE[::-1], spacing=(0.8, 0.8, 2.0), origin=(1.0, -2.0, 3.0)
).reverse_axis_order()
#: Per-case limits: a hostile file must be rejected within these.
TIME_LIMIT_S = 5.0
MEMORY_LIMIT = 64 * 2**20


def sample_masks(n: int = 4, seed: int = 0) -> dict[str, SegmentationMask]:
    rng = np.random.default_rng(seed)
    out = {}
    for k in range(n):
        if k == n - 1:
            arr = np.zeros(SHAPE, bool)  # an empty mask
        elif k % 3 == 1:
            arr = rng.integers(0, 4, SHAPE).astype(np.uint8) * (rng.random(SHAPE) > 0.6)
        else:
            arr = np.zeros(SHAPE, bool)
            lo = rng.integers(0, 6, 3)
            arr[lo[0] : lo[0] + 5, lo[1] : lo[1] + 8, lo[2] : lo[2] + 9] = True
        mapping = {f"organ{k}": 1} if arr.dtype == bool else {"a": 1, "b": 2, "c": 3}
        out[f"organ{k}"] = SegmentationMask(arr, mapping, SPACE)
    return out


def write_samples(folder: Path) -> dict[str, Path]:
    """One file of each kind: .msk and .mska, versions 1 and 2."""
    folder.mkdir(parents=True, exist_ok=True)
    masks = sample_masks()
    first = next(iter(masks.values()))
    files = {}
    for version, codec in ((1, "zstd"), (2, None)):
        p = folder / f"v{version}.msk"
        save_mask(first, p, codec=codec)
        files[f"msk v{version}"] = p
        p = folder / f"v{version}.mska"
        with MaskArchive(p, "w", codec=codec) as ar:
            for name, m in masks.items():
                ar.add_segmask(m, name)
        files[f"mska v{version}"] = p
    return files


# -- reading a possibly hostile file -----------------------------------------------------------
class Timeout(Exception):
    pass


@contextmanager
def time_limit(seconds: float):
    def handler(signum, frame):
        raise Timeout(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def read_everything(path: Path) -> dict[str, SegmentationMask]:
    """Read every mask of a file the way users do (all public read paths)."""
    if path.suffix == ".msk":
        return {"mask": load_mask(path)}
    with MaskArchive(path) as ar:
        out = {}
        for i, name in enumerate(ar.all_names()):
            out[name] = ar[i]
            ar.read_cropped(name)
            ar.info(name)
        return out


def classify(path: Path, reference: dict[str, SegmentationMask]) -> tuple[str, float, int]:
    """Outcome of reading ``path``: ``"rejected"`` (CorruptFileError), ``"intact"``
    (every mask equal to the reference), ``"wrong"`` (different arrays returned) or
    ``"error:<Type>"`` (any other exception). Also the time and peak traced memory."""
    tracemalloc.start()
    t = time.perf_counter()
    try:
        with time_limit(TIME_LIMIT_S):
            got = read_everything(path)
        outcome = "intact" if _same(got, reference) else "wrong"
    except CorruptFileError:
        outcome = "rejected"
    except Timeout:
        outcome = "error:Timeout"
    except Exception as exc:  # noqa: BLE001 - that is what the campaign looks for
        outcome = f"error:{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return outcome, elapsed, peak


def _same(got: dict, ref: dict) -> bool:
    if list(got) != list(ref):
        return False
    return all(got[k] == ref[k] for k in ref)


# -- generating corrupt variants ---------------------------------------------------------------
def boundaries(path: Path) -> list[int]:
    """Section boundaries of a file (header end, every section start and end)."""
    raw = path.read_bytes()
    marks = {0, len(raw)}
    major = raw[4]
    if raw[:4] == b"MSK1" and major == 1:
        f = v1.MSK_HEADER.unpack_from(raw)
        marks |= {v1.MSK_HEADER.size, f[4], f[4] + f[5], f[6], f[6] + f[7], f[8], f[8] + f[9]}
    elif raw[:4] == b"MSKA" and major == 1:
        f = v1.MSKA_HEADER.unpack_from(raw)
        marks |= {v1.MSKA_HEADER.size, f[4], f[4] + f[5], f[6], f[6] + f[7], f[8], f[8] + f[9]}
        rows = json.loads(raw[f[6] : f[6] + f[7]].rstrip(b"\0"))
        for r in rows:
            marks |= {r["offset"], r["offset"] + r["length"]}
    elif raw[:4] == b"MSK1":
        f = v2.MSK_HEADER.unpack_from(raw)
        marks |= {64, f[5], f[5] + f[6], f[9], f[9] + f[10]}
    else:
        marks |= {16, 80, 144}
        with MaskArchive(path) as ar:
            for e in ar._entries:
                marks |= {e.offset, e.offset + e.length}
            b = ar._backend
            for off, length, _crc, _n in b._segments:
                marks |= {off, off + length}
            marks |= {b._space_ref[0], b._space_ref[0] + b._space_ref[1], b.end}
    return sorted(m for m in marks if 0 <= m <= len(raw))


def truncations(raw: bytes, marks: list[int], n_random: int, rng: random.Random):
    cuts = set()
    for m in marks:
        cuts |= {m - 1, m, m + 1}
    cuts |= {rng.randrange(len(raw)) for _ in range(n_random)}
    for c in sorted(c for c in cuts if 0 <= c < len(raw)):
        yield f"truncate at {c}", raw[:c]


def bit_flips(raw: bytes, n: int, rng: random.Random):
    for _ in range(n):
        pos, bit = rng.randrange(len(raw)), rng.randrange(8)
        b = bytearray(raw)
        b[pos] ^= 1 << bit
        yield f"flip bit {bit} of byte {pos}", bytes(b)


def byte_overwrites(raw: bytes, n: int, rng: random.Random):
    for _ in range(n):
        pos = rng.randrange(len(raw))
        b = bytearray(raw)
        b[pos] = rng.choice([0x00, 0xFF, 0x7F, 0x80, (b[pos] + 1) & 0xFF])
        yield f"set byte {pos}", bytes(b)


EXTREMES_U64 = [0, 1, 2**31, 2**32 - 1, 2**63 - 1, 2**63, 2**64 - 1]


def header_fields(raw: bytes):
    """Every integer header field overwritten with extreme values (and, for version 2,
    the header checksum recomputed so that validation, not the CRC, must catch it)."""
    size = len(raw)
    if raw[4] == 1:
        st = v1.MSK_HEADER if raw[:4] == b"MSK1" else v1.MSKA_HEADER
        fmt = st.format.lstrip("<")
        offsets = _field_offsets(fmt)
        for idx, (off, code) in enumerate(offsets):
            if idx == 0:
                continue
            values = [0, 1, 255] if code == "B" else [*EXTREMES_U64, size, size + 1, size - 1]
            for v in values:
                if code == "B" and v > 255:
                    continue
                b = bytearray(raw)
                struct.pack_into("<" + code, b, off, v)
                yield f"v1 header field {idx} = {v}", bytes(b)
        return
    if raw[:4] == b"MSK1":
        offsets = _field_offsets(v2.MSK_HEADER.format.lstrip("<"))
        for idx, (off, code) in enumerate(offsets[1:-1], start=1):
            for v in [0, 1, 255] if code == "B" else [*EXTREMES_U64, size, size + 1]:
                if (
                    (code == "B" and v > 255)
                    or (code == "H" and v > 0xFFFF)
                    or (code == "I" and v > 0xFFFFFFFF)
                ):
                    continue
                b = bytearray(raw)
                struct.pack_into("<" + code, b, off, v)
                struct.pack_into("<I", b, 60, zlib.crc32(bytes(b[:60])))
                yield f"v2 msk header field {idx} = {v}", bytes(b)
        return
    # .mska v2: every field of the active slot, slot CRC recomputed
    slots = [v2.SLOT.unpack_from(raw, o) for o in v2.SLOT_OFFSETS]
    k = max(range(2), key=lambda i: slots[i][0])
    base = v2.SLOT_OFFSETS[k]
    offsets = _field_offsets(v2.SLOT.format.lstrip("<"))
    for idx, (off, code) in enumerate(offsets[:-2]):
        for v in [*EXTREMES_U64, size, size + 1, size - 1]:
            if code == "I" and v > 0xFFFFFFFF:
                continue
            b = bytearray(raw)
            struct.pack_into("<" + code, b, base + off, v)
            struct.pack_into("<I", b, base + 60, zlib.crc32(bytes(b[base : base + 60])))
            yield f"v2 slot field {idx} = {v}", bytes(b)


def _field_offsets(fmt: str) -> list[tuple[int, str]]:
    out, pos, num = [], 0, ""
    for ch in fmt:
        if ch.isdigit():
            num += ch
            continue
        count = int(num or 1)
        num = ""
        if ch == "x":
            pos += count
        elif ch == "s":
            out.append((pos, f"{count}s"))
            pos += count
        else:
            for _ in range(count):
                out.append((pos, ch))
                pos += struct.calcsize("<" + ch)
    return out


# -- structurally valid but hostile contents (checksums recomputed) -------------------------------
def fake_frame(declared: int, payload: bytes = b"x" * 16) -> bytes:
    """A zstd frame header declaring ``declared`` content bytes, followed by one small raw block."""
    descriptor = 0b1110_0000  # 8-byte content size, single segment, no checksum, no dict
    block = ((len(payload) << 3) | 1).to_bytes(3, "little")  # last block, raw
    return b"\x28\xb5\x2f\xfd" + bytes([descriptor]) + struct.pack("<Q", declared) + block + payload


def _rewrite_v2_index(raw: bytes, mutate, compress: bool = True) -> bytes:
    """Replace the newest index segment of a v2 archive by ``mutate(segment_obj)``
    (appended at the end, with a new slot and correct CRCs)."""
    slots = [v2.SLOT.unpack_from(raw, o) for o in v2.SLOT_OFFSETS]
    k = max(range(2), key=lambda i: slots[i][0])
    gen, count, s_off, s_len, s_crc, i_off, i_len, i_crc, end, r, _c = slots[k]
    seg = json.loads(zstandard.ZstdDecompressor().decompress(raw[i_off : i_off + i_len]))
    new_obj = mutate(seg)
    payload = new_obj if isinstance(new_obj, bytes) else json.dumps(new_obj).encode()
    seg_b = zstandard.ZstdCompressor().compress(payload) if compress else payload
    out = bytearray(raw[:end]) + seg_b
    new_end = len(out)
    rows = new_obj.get("rows", []) if isinstance(new_obj, dict) else []
    slot = v2.SLOT.pack(
        gen + 1,
        len(rows) if isinstance(rows, list) else count,
        s_off,
        s_len,
        s_crc,
        end,
        len(seg_b),
        zlib.crc32(seg_b),
        new_end,
        0,
        0,
    )
    slot = slot[:-4] + struct.pack("<I", zlib.crc32(slot[:-4]))
    out[v2.SLOT_OFFSETS[1 - k] : v2.SLOT_OFFSETS[1 - k] + 64] = slot
    return bytes(out)


def _v1_blob(
    dtype: bytes, shape: tuple, payload: bytes, flag: int = 1, ndim: int | None = None
) -> bytes:
    ndim = len(shape) if ndim is None else ndim
    return (
        bytes([flag, len(dtype)])
        + dtype
        + bytes([ndim])
        + struct.pack(f"<{len(shape)}q", *shape)
        + payload
    )


def _v1_msk(blob: bytes, space: bytes, mapping: bytes = b'{"m": 1}') -> bytes:
    s_off = 62
    m_off = s_off + len(space)
    d_off = m_off + len(mapping)
    head = v1.MSK_HEADER.pack(
        b"MSK1", 1, 0, 0, s_off, len(space), m_off, len(mapping), d_off, len(blob)
    )
    return head + space + mapping + blob


def hostile_files(samples: dict[str, Path]):
    """Named hostile variants that pass the checksums (where there are any) and must be
    caught by validation: bombs, overflowing shapes, bad dtypes, bad JSON, duplicates..."""
    space = SPACE.reverse_axis_order().to_json().encode()
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 * 2**20))  # tiny frame, 64 MiB inside
    huge = zstandard.ZstdCompressor().compress(b"\0" * 1024)
    huge = bytearray(huge)
    yield (
        "v1 bomb: blob declares 2**40 voxels",
        "msk",
        _v1_msk(_v1_blob(b"bool", (2**14, 2**13, 2**13), bomb), space),
    )
    yield (
        "v1 bomb: 64 MiB frame in a 12x16x20 file",
        "msk",
        _v1_msk(_v1_blob(b"uint8", SHAPE, bomb, flag=0), space),
    )
    yield (
        "v1 shape product overflows int64",
        "msk",
        _v1_msk(_v1_blob(b"uint8", (2**62, 2**62, 4), bytes(huge), flag=0), space),
    )
    yield (
        "v1 negative dimension",
        "msk",
        _v1_msk(_v1_blob(b"uint8", (-12, 16, 20), bytes(huge), flag=0), space),
    )
    yield (
        "v1 zero dimension",
        "msk",
        _v1_msk(_v1_blob(b"uint8", (0, 16, 20), bytes(huge), flag=0), space),
    )
    yield "v1 ndim 0", "msk", _v1_msk(_v1_blob(b"uint8", (), bytes(huge), flag=0), space)
    yield (
        "v1 ndim 255 (short shape)",
        "msk",
        _v1_msk(_v1_blob(b"uint8", SHAPE, bytes(huge), flag=0, ndim=255), space),
    )
    for dt in (b"float64", b"object", b"int8", b"<U10", b"\xff\xfe", b"uint8" * 20):
        yield (
            f"v1 dtype {dt[:12]!r}",
            "msk",
            _v1_msk(_v1_blob(dt, SHAPE, bytes(huge), flag=0), space),
        )
    yield "v1 invalid UTF-8 space", "msk", _v1_msk(_v1_blob(b"bool", SHAPE, huge), b"\xff\xfe{")
    yield (
        "v1 malformed JSON space",
        "msk",
        _v1_msk(_v1_blob(b"bool", SHAPE, huge), b'{"shape": [1, 2'),
    )
    yield (
        "v1 space with NaN spacing",
        "msk",
        _v1_msk(
            _v1_blob(b"bool", SHAPE, huge), space.replace(b'"spacing": [', b'"spacing": [NaN, ')
        ),
    )
    yield (
        "v1 invalid UTF-8 mapping",
        "msk",
        _v1_msk(_v1_blob(b"bool", SHAPE, huge), space, b"\xc3\x28"),
    )
    yield (
        "v1 mapping not an object",
        "msk",
        _v1_msk(_v1_blob(b"bool", SHAPE, huge), space, b"[1, 2]"),
    )
    yield (
        "v1 mapping with negative label",
        "msk",
        _v1_msk(_v1_blob(b"bool", SHAPE, huge), space, b'{"a": -3}'),
    )
    yield (
        "v1 deeply nested JSON",
        "msk",
        _v1_msk(_v1_blob(b"bool", SHAPE, huge), space, b"[" * 100000),
    )

    raw1 = samples["mska v1"].read_bytes()
    f = v1.MSKA_HEADER.unpack_from(raw1)
    i_off, i_len = f[6], f[7]
    rows = json.loads(raw1[i_off : i_off + i_len].rstrip(b"\0"))

    def v1_index(new_rows) -> bytes:
        body = new_rows if isinstance(new_rows, bytes) else json.dumps(new_rows).encode()
        b = bytearray(raw1)
        b[i_off : i_off + i_len] = body[:i_len].ljust(i_len, b"\0")
        count = len(new_rows) if isinstance(new_rows, list) else f[10]
        struct.pack_into("<Q", b, 4 + 3 + 8 * 6, count)
        return bytes(b)

    yield "v1 index duplicate names", "mska", v1_index([rows[0], rows[0]])
    yield "v1 index offset past end", "mska", v1_index([{**rows[0], "offset": 2**63}])
    yield "v1 index negative length", "mska", v1_index([{**rows[0], "length": -5}])
    yield "v1 index invalid UTF-8", "mska", v1_index(b"[\xff\xfe]")
    yield "v1 index malformed JSON", "mska", v1_index(b'[{"name": "a", ')
    yield "v1 index entry not an object", "mska", v1_index([1, 2])
    yield "v1 index name not a string", "mska", v1_index([{**rows[0], "name": 7}])

    raw2 = samples["mska v2"].read_bytes()

    def rows_mut(fn):
        def mutate(seg):
            seg["rows"] = fn(seg["rows"])
            return seg

        return mutate

    def set_field(i, value):
        return rows_mut(lambda rows: [[*r[:i], value, *r[i + 1 :]] for r in rows])

    yield (
        "v2 duplicate names",
        "mska",
        _rewrite_v2_index(raw2, rows_mut(lambda rows: rows + [rows[0]])),
    )
    yield (
        "v2 bbox outside the volume",
        "mska",
        _rewrite_v2_index(raw2, set_field(6, [0, 999, 0, 1, 0, 1])),
    )
    yield "v2 bbox inverted", "mska", _rewrite_v2_index(raw2, set_field(6, [5, 2, 0, 1, 0, 1]))
    yield "v2 bbox negative", "mska", _rewrite_v2_index(raw2, set_field(6, [-1, 2, 0, 1, 0, 1]))
    yield "v2 dtype float64", "mska", _rewrite_v2_index(raw2, set_field(5, "float64"))
    yield "v2 dtype not a string", "mska", _rewrite_v2_index(raw2, set_field(5, [1]))
    yield "v2 unknown codec id", "mska", _rewrite_v2_index(raw2, set_field(1, 77))
    yield "v2 offset near 2**64", "mska", _rewrite_v2_index(raw2, set_field(2, 2**64 - 1))
    yield "v2 length past the end", "mska", _rewrite_v2_index(raw2, set_field(3, 2**40))
    yield "v2 voxels larger than the box", "mska", _rewrite_v2_index(raw2, set_field(7, 2**40))
    yield "v2 mapping invalid", "mska", _rewrite_v2_index(raw2, set_field(8, {"a": "x"}))
    yield "v2 mapping not an object", "mska", _rewrite_v2_index(raw2, set_field(8, [1]))
    yield "v2 index invalid UTF-8", "mska", _rewrite_v2_index(raw2, lambda seg: b"\xff\xfe\xfd")
    yield (
        "v2 index malformed JSON",
        "mska",
        _rewrite_v2_index(raw2, lambda seg: b'{"prev": null, "rows": ['),
    )
    yield (
        "v2 index prev pointing forward",
        "mska",
        _rewrite_v2_index(raw2, lambda seg: {**seg, "prev": [2**40, 10, 0]}),
    )
    yield (
        "v2 index fields changed",
        "mska",
        _rewrite_v2_index(raw2, lambda seg: {**seg, "fields": ["name"]}),
    )
    yield (
        "v2 index rows not a list",
        "mska",
        _rewrite_v2_index(raw2, lambda seg: {**seg, "rows": 5}),
    )
    yield (
        "v2 index row too short",
        "mska",
        _rewrite_v2_index(raw2, rows_mut(lambda rows: [r[:3] for r in rows])),
    )
    yield (
        "v2 index bomb (frame declares 2**40 bytes)",
        "mska",
        _rewrite_v2_index(raw2, lambda seg: fake_frame(2**40), compress=False),
    )
    yield (
        "v2 index frame without content size",
        "mska",
        _rewrite_v2_index(
            raw2, lambda seg: b"\x28\xb5\x2f\xfd\x00\x00" + b"\x01" * 20, compress=False
        ),
    )
    # a blob whose CRC is right but whose frame claims far more than the box
    with MaskArchive(samples["mska v2"]) as ar:
        e = next(e for e in ar._entries if e.bbox is not None)
    bomb_crc = zlib.crc32(bomb)

    def blob_bomb(seg):
        for r in seg["rows"]:
            if r[0] == e.name:
                r[2], r[3], r[4] = len(raw2) + 8, len(bomb), bomb_crc
        return seg

    bombed = _rewrite_v2_index(raw2 + b"\0" * 8 + bomb, blob_bomb)
    # _rewrite_v2_index cuts at the old end: re-append the bomb where the row points
    yield (
        "v2 blob bomb (valid CRC, frame declares 64 MiB)",
        "mska",
        _place(bombed, len(raw2) + 8, bomb),
    )


def _place(raw: bytes, offset: int, blob: bytes) -> bytes:
    b = bytearray(raw)
    if len(b) < offset + len(blob):
        b.extend(b"\0" * (offset + len(blob) - len(b)))
    b[offset : offset + len(blob)] = blob
    return bytes(b)


def run_corruption(workdir: Path, n_random: int = 40, seed: int = 0) -> dict:
    """Every kind of corruption on every sample file; returns counts per (file, kind, outcome)."""
    rng = random.Random(seed)
    samples = write_samples(workdir / "samples")
    refs = {k: read_everything(p) for k, p in samples.items()}
    results: Counter = Counter()
    failures: list[str] = []
    worst_time = 0.0
    worst_mem = 0
    target = workdir / "case"

    def check(label: str, kind: str, ext: str, data: bytes, ref: dict, version: int) -> None:
        nonlocal worst_time, worst_mem
        path = target.with_suffix(ext)
        path.write_bytes(data)
        outcome, elapsed, peak = classify(path, ref)
        worst_time, worst_mem = max(worst_time, elapsed), max(worst_mem, peak)
        results[(label, kind, outcome.split(":")[0])] += 1
        bad = outcome.startswith("error") or (outcome == "wrong" and version == 2)
        if bad or elapsed > TIME_LIMIT_S or peak > MEMORY_LIMIT:
            failures.append(
                f"{label} / {kind}: {outcome} ({elapsed:.2f} s, {peak / 2**20:.1f} MiB)"
            )

    for label, path in samples.items():
        raw = path.read_bytes()
        version = 1 if "v1" in label else 2
        ref = refs[label]
        ext = path.suffix
        for kind, gen in (
            ("truncation", truncations(raw, boundaries(path), n_random, rng)),
            ("bit flip", bit_flips(raw, n_random * 3, rng)),
            ("byte overwrite", byte_overwrites(raw, n_random, rng)),
            ("header field", header_fields(raw)),
        ):
            for _desc, data in gen:
                check(label, kind, ext, data, ref, version)
    for desc, kind, data in hostile_files(samples):
        check(f"hostile {kind}", desc, "." + kind, data, {}, 2)
    return {
        "counts": results,
        "failures": failures,
        "worst_time": worst_time,
        "worst_mem": worst_mem,
    }


# -- crash-kill cycles ---------------------------------------------------------------------------
def _appender(path: str, start: int, conn) -> None:
    """Child: append masks forever, reporting each completed name through ``conn``."""
    masks = list(sample_masks(6, seed=3).values())
    k = start
    with MaskArchive(path, "a") as ar:
        while True:
            ar.add_segmask(masks[k % len(masks)], f"m{k}")
            conn.send(k)
            k += 1


def expected_mask(k: int) -> SegmentationMask:
    masks = list(sample_masks(6, seed=3).values())
    return masks[k % len(masks)]


def run_crash_cycles(path: Path, cycles: int, seed: int = 0) -> dict:
    """SIGKILL a child appending in a loop at random moments, ``cycles`` times; after
    each kill the archive must open and every mask the child completed must read back
    equal. Returns figures."""
    rng = random.Random(seed)
    ctx = mp.get_context("fork")
    done: list[int] = []
    problems: list[str] = []
    torn_tails = 0
    for _ in range(cycles):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_appender, args=(str(path), len(done), child))
        p.start()
        child.close()
        time.sleep(rng.uniform(0.005, 0.08))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        while parent.poll():
            try:
                done.append(parent.recv())
            except EOFError:
                break
        parent.close()
        if path.exists() and path.stat().st_size:
            with MaskArchive(path) as ar:
                torn_tails += int(path.stat().st_size > ar._backend.end)
                names = ar.all_names()
                completed = [f"m{k}" for k in done]
                if names[: len(completed)] != completed:
                    problems.append(
                        f"after {len(done)} masks: listed {names[-3:]}, completed {completed[-3:]}"
                    )
                    break
                # a mask whose commit finished but whose report was lost is fine: keep it
                for extra in names[len(completed) :]:
                    done.append(int(extra[1:]))
                for k in done[-6:]:
                    if ar[f"m{k}"] != expected_mask(k):
                        problems.append(f"m{k} differs after a kill")
    with MaskArchive(path) as ar:
        for k in done:
            if ar[f"m{k}"] != expected_mask(k):
                problems.append(f"m{k} differs at the end")
    return {"cycles": cycles, "masks": len(done), "torn_tails": torn_tails, "problems": problems}


# -- concurrent readers ---------------------------------------------------------------------------
def _reader(path: str, seconds: float, q) -> None:
    reads = opens = 0
    bad = []
    deadline = time.time() + seconds
    while time.time() < deadline:
        with MaskArchive(path) as ar:
            opens += 1
            for name in ar.all_names():
                if ar[name] != expected_mask(int(name[1:])):
                    bad.append(name)
                reads += 1
    q.put((opens, reads, bad))


def run_concurrent_readers(
    path: Path, n_masks: int, readers: int = 2, seconds: float = 3.0
) -> dict:
    """Readers in other processes while this process appends ``n_masks`` masks."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    with MaskArchive(path, "w") as ar:
        ar.add_segmask(expected_mask(0), "m0")
    procs = [ctx.Process(target=_reader, args=(str(path), seconds, q)) for _ in range(readers)]
    for p in procs:
        p.start()
    t = time.time()
    k = 1
    with MaskArchive(path, "a") as ar:
        while k < n_masks or time.time() - t < seconds * 0.8:
            ar.add_segmask(expected_mask(k), f"m{k}")
            k += 1
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    return {
        "appended": k,
        "opens": sum(r[0] for r in results),
        "reads": sum(r[1] for r in results),
        "bad": [b for r in results for b in r[2]],
    }
