"""Which on-disk layout lets medmask read a 96³ window as fast as nnU-Net's blosc2 files (issue 18).

On the real TotalSegmentator case (117 masks, 21 of them non-empty, grid 294x192x179), in one
run, every figure the median over ``--windows`` random windows x ``--repeat`` passes, every
reader timed on the same windows (interleaved):

* the references: nnU-Net v2's own preprocessed case (``nnUNetDatasetBlosc2.save_case`` with
  the chunks and blocks ``comp_blosc2_params`` gives for a 96³ patch, as ``run_case_save``
  does: ``int16`` label map, ``float32`` CT normalised by nnU-Net's ``CTNormalization``),
  opened by ``nnUNetDatasetBlosc2.load_case`` (memory map, one blosc2 thread): the label
  window and the image window; also the CT window from an uncompressed ``.nii`` memory map;
* medmask-side prototypes built here from the real masks with medmask's blob encoding (codec 1
  "bitzstd": each mask cropped to its bbox, x rows bit-packed, one zstd frame at level 19):
  (a) whole crops: the blob of every mask whose bbox meets the window is read (``os.pread``),
  CRC-checked, decompressed whole; (b) large masks split into independently compressed z slabs
  (or z/y chunks), a size threshold under which a mask stays one frame; (c) decoding tricks:
  unpacking only the window's rows and bytes, painting by ``np.copyto(where=)``, boolean
  indexing, ``putmask``, ``np.where``, ``np.maximum`` (exact when labels grow in paint order,
  as medmask's default 1..N numbering does) or an xor blend (exact for any labels), skipping
  empty slabs by a per-slab voxel count;
* medmask 0.4's public API as a user would use it today (``read_cropped`` of every mask the
  window meets, painted with ``copyto``), and the real ``MaskArchive.read_window`` (which
  implements (a)+(c) on today's codec 1; the table of record is ``benchmarks/bench_window.py``).

Windows "anywhere": uniform over the grid (inside it), a label map of all 117 masks (labels 1..117
in archive order, a later mask wins an overlap: ``LoadMask``'s semantics). Windows "organ":
centred on a random voxel of the case's largest mask, only that mask. Every reader's window is
checked equal to blosc2's label window (anywhere) or to the organ's mask (organ) first.

Then the same on a taller case (the real masks stretched ``--stretch`` times along z by
repeating slices, as a whole-body case's long organs would be), where a whole crop is much
larger than a window; then the crop-centre draw for the sampler (exact foreground voxels by
decoding one mask vs nnU-Net-style precomputed coordinates) and per-worker cache sizes.

Usage::

    .venv/bin/python benchmarks/study_window_layouts.py                  # ~3 min on 2 cores
    .venv/bin/python benchmarks/study_window_layouts.py --windows 100 --repeat 1 --stretch 0

Writes the tables to stdout and to ``--out``/study_window_layouts.md (default bench_output/).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zstandard as zstd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _patchcase import (  # noqa: E402
    REAL_CASE,
    Case,
    largest,
    load_real_case,
    nifti_write,
    nnunet_normalise,
    nnunet_save,
    publish,
    synthetic_ct,
)

PATCH = 96
LEVEL = 19  # medmask's zstd level for boolean blobs (docs/format.md, codec 1)
_D = zstd.ZstdDecompressor()


# --------------------------------------------------------------------------------------------
# layouts: one file of frames per layout, and where each mask's pieces lie in it


@dataclass
class Piece:
    """One independently compressed part of a mask's packed crop: rows ``z0:z1`` x ``y0:y1``."""

    z0: int
    z1: int
    y0: int
    y1: int
    start: int  # offset of the frame inside the mask's blob
    length: int
    voxels: int


@dataclass
class MaskBlob:
    label: int
    box: tuple[int, int, int, int, int, int]
    offset: int  # the blob in the layout file
    length: int
    crc: int
    pieces: list[Piece]


@dataclass
class Layout:
    name: str
    path: Path
    masks: dict[str, MaskBlob] = field(default_factory=dict)
    frames: int = 0
    table_bytes: int = 0  # per-slab table stored in the blob (lengths + voxel counts)
    index_slab_bytes: int = 0  # the same records if kept in the (zstd JSON) index instead

    @property
    def blob_bytes(self) -> int:
        return sum(m.length for m in self.masks.values())


def split_rows(z: int, y: int, slab: int | None, rows: int | None):
    """Piece boundaries of a ``(z, y, ...)`` crop: slabs of ``slab`` z, chunks of ``rows`` y."""
    if slab is None:
        return [(0, z, 0, y)]
    ty = rows or y
    return [
        (a, min(a + slab, z), b, min(b + ty, y)) for a in range(0, z, slab) for b in range(0, y, ty)
    ]


def build_layout(
    case: Case,
    folder: Path,
    name: str,
    slab: int | None = None,
    min_payload: int = 0,
    rows: int | None = None,
) -> Layout:
    """Encode every non-empty mask: one codec-1 frame, or pieces when its payload >= min_payload.

    A split mask's blob is a table (u16 slab, u16 rows, u32 count, then u32 length and u32 voxel
    count per piece) followed by the frames; it keeps one CRC for the whole blob in the index.
    """
    comp = zstd.ZstdCompressor(level=LEVEL, write_content_size=True)
    lay = Layout(name, folder / f"{name.replace(' ', '_')}.bin")
    parts: list[bytes] = []
    offset = 0
    for label, mname in enumerate(case.names, start=1):
        item = case.crops[mname]
        if item is None:
            continue
        crop, box = item
        packed = np.packbits(crop, axis=2)
        split = slab is not None and packed.nbytes >= min_payload
        bounds = split_rows(*packed.shape[:2], slab if split else None, rows)
        frames = [comp.compress(packed[a:b, c:d].tobytes()) for a, b, c, d in bounds]
        head = 8 + 8 * len(frames) if split else 0
        pieces, pos = [], head
        for (a, b, c, d), f in zip(bounds, frames):
            pieces.append(Piece(a, b, c, d, pos, len(f), int(crop[a:b, c:d].sum())))
            pos += len(f)
        blob = bytes(head) + b"".join(frames)
        lay.masks[mname] = MaskBlob(label, box, offset, len(blob), zlib.crc32(blob), pieces)
        lay.frames += len(frames)
        lay.table_bytes += head
        if split:
            recs = [[p.start, p.length, p.voxels] for p in pieces]
            lay.index_slab_bytes += len(
                zstd.ZstdCompressor(level=19).compress(json.dumps(recs).encode())
            )
        parts.append(blob)
        offset += len(blob)
    lay.path.write_bytes(b"".join(parts))
    return lay


# --------------------------------------------------------------------------------------------
# painting: label ``k`` where ``bits`` (uint8 0/1) into ``dst`` (uint8), a later call wins


def paint_copyto(dst, bits, k):
    np.copyto(dst, np.uint8(k), where=bits.view(bool))


def paint_boolidx(dst, bits, k):
    dst[bits.view(bool)] = k


def paint_putmask(dst, bits, k):
    np.putmask(dst, bits.view(bool), np.uint8(k))


def paint_where(dst, bits, k):
    dst[...] = np.where(bits.view(bool), np.uint8(k), dst)


def paint_max(dst, bits, k):
    """Exact when labels grow in paint order (the later mask has the larger label)."""
    np.maximum(dst, np.multiply(bits, np.uint8(k), out=bits), out=dst)


def paint_xor(dst, bits, k):
    """Exact for any labels: ``dst ^= (dst ^ k) & -bits`` (``-1`` is 0xFF in uint8)."""
    m = np.negative(bits, out=bits)
    np.bitwise_and(np.bitwise_xor(dst, np.uint8(k)), m, out=m)
    np.bitwise_xor(dst, m, out=dst)


PAINTERS = {
    "copyto": paint_copyto,
    "boolidx": paint_boolidx,
    "putmask": paint_putmask,
    "where": paint_where,
    "max": paint_max,
    "xor": paint_xor,
}


# --------------------------------------------------------------------------------------------
# readers: window (z0, z1, y0, y1, x0, x1) -> uint8 label map of the window's shape


def overlap(box, w):
    lo = [max(box[2 * a], w[2 * a]) for a in range(3)]
    hi = [min(box[2 * a + 1], w[2 * a + 1]) for a in range(3)]
    if lo[0] >= hi[0] or lo[1] >= hi[1] or lo[2] >= hi[2]:
        return None
    return lo, hi


def make_reader(
    lay: Layout, *, unpack: str = "rows", paint: str = "max", skip_empty: bool = False
) -> Callable:
    """A window reader over ``lay``'s file: for each mask met, one pread of its blob, one CRC,
    then only the pieces the window meets are decompressed, unpacked and painted."""
    fd = os.open(lay.path, os.O_RDONLY)
    painter = PAINTERS[paint]

    def read(w, names: list[str] | None = None) -> np.ndarray:
        out = np.zeros((w[1] - w[0], w[3] - w[2], w[5] - w[4]), np.uint8)
        for mname in names or lay.masks:
            mb = lay.masks.get(mname)
            if mb is None:
                continue
            ov = overlap(mb.box, w)
            if ov is None:
                continue
            lo, hi = ov
            box = mb.box
            blob = os.pread(fd, mb.length, mb.offset)
            if zlib.crc32(blob) != mb.crc:
                raise ValueError(f"{lay.path}: {mname}: CRC mismatch")
            za, zb, ya, yb = lo[0] - box[0], hi[0] - box[0], lo[1] - box[2], hi[1] - box[2]
            xa, xb = lo[2] - box[4], hi[2] - box[4]
            nbytes = (box[5] - box[4] + 7) >> 3
            b0, b1 = (xa >> 3, (xb + 7) >> 3) if unpack == "rows" else (0, nbytes)
            for p in mb.pieces:
                if p.z1 <= za or p.z0 >= zb or p.y1 <= ya or p.y0 >= yb:
                    continue
                if skip_empty and not p.voxels:
                    continue
                raw = _D.decompress(blob[p.start : p.start + p.length])
                packed = np.frombuffer(raw, np.uint8).reshape(p.z1 - p.z0, p.y1 - p.y0, nbytes)
                qa, qb, ra, rb = max(za, p.z0), min(zb, p.z1), max(ya, p.y0), min(yb, p.y1)
                if unpack == "rows":
                    rows = packed[qa - p.z0 : qb - p.z0, ra - p.y0 : rb - p.y0, b0:b1]
                    bits = np.unpackbits(rows, axis=2)[:, :, xa - 8 * b0 : xb - 8 * b0]
                else:
                    full = np.unpackbits(packed, axis=2)
                    bits = full[qa - p.z0 : qb - p.z0, ra - p.y0 : rb - p.y0, xa:xb]
                oz, oy, ox = qa + box[0] - w[0], ra + box[2] - w[2], lo[2] - w[4]
                dst = out[oz : oz + qb - qa, oy : oy + rb - ra, ox : ox + xb - xa]
                painter(dst, np.ascontiguousarray(bits), mb.label if names is None else 1)
        return out

    read.close = lambda: os.close(fd)  # type: ignore[attr-defined]
    return read


def today_reader(archive: Path) -> Callable:
    """medmask 0.4's public API: read_cropped of every mask the window meets, copyto paint."""
    from medmask import MaskArchive

    ar = MaskArchive(archive)
    infos = [(k, i) for k, i in enumerate(ar.infos(), start=1) if i.bbox is not None]

    def read(w, names: list[str] | None = None) -> np.ndarray:
        out = np.zeros((w[1] - w[0], w[3] - w[2], w[5] - w[4]), np.uint8)
        for k, info in infos:
            if names is not None and info.name not in names:
                continue
            ov = overlap(info.bbox, w)
            if ov is None:
                continue
            lo, hi = ov
            crop, box = ar.read_cropped(info.name)
            sub = crop[tuple(slice(lo[a] - box[2 * a], hi[a] - box[2 * a]) for a in range(3))]
            dst = out[tuple(slice(lo[a] - w[2 * a], hi[a] - w[2 * a]) for a in range(3))]
            np.copyto(dst, np.uint8(k if names is None else 1), where=sub != 0)
        return out

    read.close = ar.close  # type: ignore[attr-defined]
    return read


def window_reader(archive: Path) -> Callable:
    """medmask's real ``MaskArchive.read_window`` (a label map of every mask, or of the named
    ones labelled 1..N), on a ``.mska`` written by medmask."""
    from medmask import MaskArchive

    ar = MaskArchive(archive)

    def read(w, names: list[str] | None = None) -> np.ndarray:
        return ar.read_window(((w[0], w[1]), (w[2], w[3]), (w[4], w[5])), names)

    read.close = ar.close  # type: ignore[attr-defined]
    return read


def case_archive(case: Case, path: Path) -> Path:
    """``case`` as a ``.mska`` written by medmask (its masks in the case's order)."""
    from medmask import MaskArchive
    from medmask.spaces import default_space

    with MaskArchive(path, "w", space=default_space(case.shape)) as ar:
        for n in case.names:
            ar.add(n, case.full(n))
    return path


# --------------------------------------------------------------------------------------------
# nnU-Net's preprocessed case (the reference)


def nnunet_case(folder: Path, ct: np.ndarray, seg: np.ndarray) -> tuple[object, object]:
    """Save with nnU-Net's own classes as ``run_case_save`` does; open as its loader does."""
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    data = nnunet_normalise(ct, seg)
    nnunet_save(folder, "case", data, seg, int(seg.max()), PATCH, locations=False)
    d, s, _, _ = nnUNetDatasetBlosc2(str(folder)).load_case("case")
    return d, s


# --------------------------------------------------------------------------------------------
# timing


def windows_anywhere(shape, n: int, rng) -> list[tuple]:
    out = []
    for _ in range(n):
        st = [int(rng.integers(0, s - PATCH + 1)) for s in shape]
        out.append((st[0], st[0] + PATCH, st[1], st[1] + PATCH, st[2], st[2] + PATCH))
    return out


def windows_on(case: Case, name: str, n: int, rng) -> list[tuple]:
    crop, box = case.crops[name]
    vox = np.argwhere(crop) + np.array(box[::2])
    out = []
    for _ in range(n):
        c = vox[rng.integers(len(vox))]
        st = [int(min(max(c[a] - PATCH // 2, 0), case.shape[a] - PATCH)) for a in range(3)]
        out.append((st[0], st[0] + PATCH, st[1], st[1] + PATCH, st[2], st[2] + PATCH))
    return out


def time_readers(readers: dict[str, Callable], wins: list, names, repeat: int, desc: str) -> dict:
    """Median seconds per window of every reader, interleaved window by window."""
    from tqdm import tqdm

    times: dict[str, list[float]] = {k: [] for k in readers}
    for _ in range(repeat):
        for w in tqdm(wins, desc=desc, file=sys.stderr, leave=False):
            for key, fn in readers.items():
                t = time.perf_counter()
                fn(w, names)
                times[key].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def check_readers(readers: dict[str, Callable], wins, names, expect: Callable) -> None:
    for w in wins:
        ref = expect(w)
        for key, fn in readers.items():
            got = fn(w, names)
            if not np.array_equal(got, ref):
                raise AssertionError(f"reader {key!r} differs from the reference on window {w}")


def fmt_ms(s: float) -> str:
    return f"{s * 1e3:.3f} ms"


def median_us(fn: Callable, n: int = 200) -> float:
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e6


# --------------------------------------------------------------------------------------------
# the window study on one case


@dataclass
class Spec:
    """A layout to build: z slab thickness (None: whole crops), payload threshold, y chunk."""

    slab: int | None = None
    min_payload: int = 0
    rows: int | None = None

    @property
    def name(self) -> str:
        if self.slab is None:
            return "whole crops (codec 1 today)"
        what = (
            f"z slabs of {self.slab}"
            if self.rows is None
            else f"chunks {self.slab}z x {self.rows}y"
        )
        return what + (
            f", masks >= {self.min_payload // 1024} KiB" if self.min_payload else ", all masks"
        )


REAL_SPECS = [
    Spec(),
    Spec(8),
    Spec(16),
    Spec(32),
    Spec(16, 32 << 10),
    Spec(32, 32 << 10),
    Spec(16, 64 << 10),
    Spec(32, 64 << 10),
    Spec(64, 64 << 10),
    Spec(32, 0, 32),
    Spec(32, 64 << 10, 48),
]
TALL_SPECS = [
    Spec(),
    Spec(16, 64 << 10),
    Spec(32, 64 << 10),
    Spec(64, 64 << 10),
    Spec(32),
    Spec(64),
]


def window_study(case, work, args, rng, specs, *, archive: Path | None, decoders: bool) -> dict:
    """Build the layouts and the nnU-Net reference for ``case``; check, then time every reader."""
    tag = f"{case.shape[0]}z"
    seg = case.label_map(dtype=np.int16)
    ct = synthetic_ct(case, seed=0)
    data_b2, seg_b2 = nnunet_case(work / f"nnunet_{tag}", ct, seg)
    layouts = [
        build_layout(case, work, f"{tag}_{i}", s.slab, s.min_payload, s.rows)
        for i, s in enumerate(specs)
    ]
    whole = layouts[0]
    readers: dict[str, Callable] = {
        "blosc2": lambda w, names=None: seg_b2[0, w[0] : w[1], w[2] : w[3], w[4] : w[5]]
    }
    label: dict[str, str] = {
        "blosc2": "nnU-Net `_seg.b2nd` (int16, LZ4HC, its chunks), label window"
    }
    if archive is not None:
        readers["today"] = today_reader(archive)
        label["today"] = "medmask 0.4 API: `read_cropped` of each mask met + `copyto` paint"
    mska = archive if archive is not None else case_archive(case, work / f"case_{tag}.mska")
    readers["read_window"] = window_reader(mska)
    label["read_window"] = "**medmask `MaskArchive.read_window`** (the real API, codec 1 as stored)"
    readers["naive"] = make_reader(whole, unpack="full", paint="copyto")
    label["naive"] = "(a) whole crops, whole crop unpacked, `copyto` paint (the plain version)"
    if decoders:
        for p in PAINTERS:
            readers[f"rows-{p}"] = make_reader(whole, paint=p)
            label[f"rows-{p}"] = (
                f"(a)+(c) whole crops, only the window's rows/bytes unpacked, paint `{p}`"
            )
    else:
        readers["rows-max"] = make_reader(whole, paint="max")
        label["rows-max"] = "(a)+(c) whole crops, window rows/bytes unpacked, paint `max`"
    for spec, lay in zip(specs[1:], layouts[1:]):
        key = f"L-{lay.name}"
        readers[key] = make_reader(lay, paint="max", skip_empty=True)
        label[key] = f"(b)+(c) {spec.name}, paint `max`, empty slabs skipped"
    big = largest(case)
    any_w = windows_anywhere(case.shape, args.windows, rng)
    org_w = windows_on(case, big, args.windows, rng)
    organ = case.full(big)
    n_check = min(len(any_w), args.check)
    check_readers(
        {k: f for k, f in readers.items() if k != "blosc2"},
        any_w[:n_check],
        None,
        lambda w: np.asarray(readers["blosc2"](w), np.uint8),
    )
    org_readers = {k: f for k, f in readers.items() if k != "blosc2"}
    check_readers(
        org_readers,
        org_w[:n_check],
        [big],
        lambda w: organ[w[0] : w[1], w[2] : w[3], w[4] : w[5]].astype(np.uint8),
    )
    t_any = time_readers(readers, any_w, None, args.repeat, f"{tag} windows anywhere")
    t_org = time_readers(readers, org_w, [big], args.repeat, f"{tag} windows on {big}")
    t_img = time_readers(
        {"b2 image": lambda w, names=None: data_b2[0, w[0] : w[1], w[2] : w[3], w[4] : w[5]]},
        any_w,
        None,
        args.repeat,
        f"{tag} image windows",
    )
    nii = work / f"ct_{tag}.nii"
    nifti_write(nii, ct, case.affine)
    import nibabel as nib

    mm = np.asanyarray(nib.load(str(nii), mmap=True).dataobj)  # a np.memmap (no scaling stored)
    assert isinstance(mm, np.memmap)
    t_nii = time_readers(
        {
            "nii": lambda w, names=None: np.asarray(
                mm[w[4] : w[5], w[2] : w[3], w[0] : w[1]], np.float32
            )
        },
        any_w,
        None,
        args.repeat,
        f"{tag} .nii windows",
    )
    for fn in readers.values():
        getattr(fn, "close", lambda: None)()
    files = {
        "b2nd": (work / f"nnunet_{tag}" / "case.b2nd").stat().st_size,
        "seg": (work / f"nnunet_{tag}" / "case_seg.b2nd").stat().st_size,
        "nii": nii.stat().st_size,
    }
    return dict(
        readers=label,
        layouts=layouts,
        specs=specs,
        any=t_any,
        organ=t_org,
        big=big,
        image={**t_img, **t_nii},
        files=files,
        whole=whole,
    )


def stretch(case: Case, s: int) -> Case:
    """The case's masks with every z slice repeated ``s`` times (a grid ``s`` times taller)."""
    crops = {}
    for n, item in case.crops.items():
        if item is None:
            crops[n] = None
            continue
        crop, b = item
        crops[n] = (np.repeat(crop, s, axis=0), (b[0] * s, b[1] * s, b[2], b[3], b[4], b[5]))
    shape = (case.shape[0] * s, case.shape[1], case.shape[2])
    aff = case.affine.copy()
    aff[:3, 2] /= s
    return Case(shape, aff, case.names, crops)


def window_tables(res: dict, mska_bytes: int | None, mask_bytes: int | None) -> list[str]:
    """Markdown: size and window cost of every layout and reader, ratios to blosc2."""
    b_any, b_org = res["any"]["blosc2"], res["organ"]["blosc2"]
    lines = [
        f"| reader | file bytes | window anywhere (all masks) | vs blosc2 | window on {res['big']} | vs blosc2 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    sizes: dict[str, str] = {"blosc2": f"{res['files']['seg']:,} (`_seg.b2nd`)"}
    base = None if mska_bytes is None else mska_bytes - mask_bytes
    for lay in res["layouts"]:
        key = "naive" if lay is res["whole"] else f"L-{lay.name}"
        total = lay.blob_bytes if base is None else base + lay.blob_bytes
        sizes[key] = f"{total:,}" + (" (blobs)" if base is None else "")
        if key == "naive":
            for k in res["readers"]:
                if k.startswith("rows-") or k == "today":
                    sizes[k] = sizes[key]
    for key, text in res["readers"].items():
        ta, to = res["any"][key], res["organ"][key]
        lines.append(
            f"| {text} | {sizes.get(key, '')} | {fmt_ms(ta)} | {ta / b_any:.2f}x | {fmt_ms(to)} | {to / b_org:.2f}x |"
        )
    img = res["image"]
    lines += [
        "",
        f"Image windows (96³, same windows): nnU-Net `.b2nd` float32 ({res['files']['b2nd']:,} B) "
        f"{fmt_ms(img['b2 image'])}; uncompressed `.nii` int16 memory map, as float32 "
        f"({res['files']['nii']:,} B) {fmt_ms(img['nii'])}.",
    ]
    return lines


def layout_table(res: dict, mska_bytes: int, mask_bytes: int) -> list[str]:
    lines = [
        "| layout | frames | slab table in blobs | blobs | `.mska` | if the slab records were in the index instead |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for spec, lay in zip(res["specs"], res["layouts"]):
        total = mska_bytes - mask_bytes + lay.blob_bytes
        alt = total - lay.table_bytes + lay.index_slab_bytes
        flag = " **over 40,000**" if total > 40_000 else ""
        lines.append(
            f"| {spec.name} | {lay.frames} | {lay.table_bytes:,} | {lay.blob_bytes:,} | {total:,}{flag} | ~{alt:,} |"
        )
    return lines


# --------------------------------------------------------------------------------------------
# (c) decoding micro-measurements


def decode_table(case: Case, lay: Layout) -> list[str]:
    """Per mask: CRC, zstd decompress (allocating / into a preallocated buffer), unpack all rows."""
    fd = os.open(lay.path, os.O_RDONLY)
    lines = [
        "| mask | crop (z, y, x) | packed payload | blob | pread + CRC | decompress | decompress into a preallocated buffer | unpackbits, whole crop |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    picks = sorted(case.nonempty(), key=lambda n: -case.crops[n][0].size)[:4]
    picks.append(min(case.nonempty(), key=lambda n: case.crops[n][0].size))
    frames = []
    for n in case.nonempty():
        mb = lay.masks[n]
        frames.append(os.pread(fd, mb.length, mb.offset))
    for n in picks:
        mb = lay.masks[n]
        crop = case.crops[n][0]
        blob = os.pread(fd, mb.length, mb.offset)
        packed = np.packbits(crop, axis=2)
        buf = bytearray(packed.nbytes)

        def into(blob=blob, buf=buf):
            _D.stream_reader(blob).readinto(buf)

        t_io = median_us(lambda mb=mb: zlib.crc32(os.pread(fd, mb.length, mb.offset)))
        lines.append(
            f"| {n} | {crop.shape} | {packed.nbytes:,} | {mb.length:,} | {t_io:.1f} µs | "
            f"{median_us(lambda blob=blob: _D.decompress(blob)):.1f} µs | {median_us(into):.1f} µs | "
            f"{median_us(lambda p=packed: np.unpackbits(p, axis=2)):.1f} µs |"
        )
    os.close(fd)
    t_sep = median_us(lambda: [_D.decompress(f) for f in frames], 100)
    t_multi = median_us(lambda: _D.multi_decompress_to_buffer(frames, threads=0), 100)
    lines += [
        "",
        f"All {len(frames)} non-empty masks' frames: one `decompress` call each {t_sep:.0f} µs; "
        f"one `multi_decompress_to_buffer` call {t_multi:.0f} µs.",
    ]
    return lines


# --------------------------------------------------------------------------------------------
# 3. the sampler: exact foreground voxels from one mask vs nnU-Net's precomputed coordinates


class RowCounts:
    """A mask's packed rows with the running voxel count per row: one exact draw is a search,
    then one row unpacked. What a per-worker cache would keep per mask."""

    def __init__(self, packed: np.ndarray, box) -> None:
        self.packed = packed
        self.box = box
        self.cum = np.cumsum(np.bitwise_count(packed).sum(axis=2, dtype=np.int32).ravel())

    @property
    def nbytes(self) -> int:
        return self.packed.nbytes + self.cum.nbytes

    def draw(self, rng) -> tuple[int, int, int]:
        r = int(rng.integers(int(self.cum[-1])))
        row = int(np.searchsorted(self.cum, r, side="right"))
        before = int(self.cum[row - 1]) if row else 0
        zy = divmod(row, self.packed.shape[1])
        bits = np.flatnonzero(np.unpackbits(self.packed[zy[0], zy[1]]))
        x = int(bits[r - before])
        return (self.box[0] + zy[0], self.box[2] + zy[1], self.box[4] + x)


def read_packed(fd, mb: MaskBlob, piece: Piece | None = None) -> np.ndarray:
    blob = os.pread(fd, mb.length, mb.offset)
    if zlib.crc32(blob) != mb.crc:
        raise ValueError("CRC mismatch")
    p = piece or mb.pieces[0]
    nbytes = (mb.box[5] - mb.box[4] + 7) >> 3
    raw = _D.decompress(blob[p.start : p.start + p.length])
    return np.frombuffer(raw, np.uint8).reshape(p.z1 - p.z0, p.y1 - p.y0, nbytes)


def sampler_study(case: Case, whole: Layout, slabs: Layout, rng) -> tuple[list[str], list[str]]:
    """Time exact foreground draws per mask; sizes of nnU-Net-style coordinates for the case."""
    fd_w, fd_s = os.open(whole.path, os.O_RDONLY), os.open(slabs.path, os.O_RDONLY)
    ne = sorted(case.nonempty(), key=case.voxels)
    picks = [ne[len(ne) // 5], ne[len(ne) // 2], ne[-1]]
    lines = [
        "| mask | voxels | decode crop + `flatnonzero` + draw | then per draw (cached indices, bytes) | decode + row counts (`bitwise_count`) | then per draw (cached rows, bytes) | one 32-slab decoded (chosen by its voxel count) + draw | precomputed coordinates, per draw |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in picks:
        mb_w, mb_s = whole.masks[n], slabs.masks[n]
        box = mb_w.box
        shape = tuple(box[2 * a + 1] - box[2 * a] for a in range(3))

        def cold_flat(mb=mb_w, shape=shape):
            bits = np.unpackbits(read_packed(fd_w, mb), axis=2, count=shape[2])
            idx = np.flatnonzero(bits)
            return np.unravel_index(idx[rng.integers(len(idx))], shape)

        bits = np.unpackbits(read_packed(fd_w, mb_w), axis=2, count=shape[2])
        flat = np.flatnonzero(bits).astype(np.int32)
        rc = RowCounts(read_packed(fd_w, mb_w), box)
        for _ in range(200):  # every draw lies on the mask
            z, y, x = rc.draw(rng)
            assert case.crops[n][0][z - box[0], y - box[2], x - box[4]]

        def cold_slab(mb=mb_s):
            counts = np.array([p.voxels for p in mb.pieces], np.int64)
            p = mb.pieces[
                int(np.searchsorted(np.cumsum(counts), rng.integers(counts.sum()), "right"))
            ]
            return RowCounts(read_packed(fd_s, mb, p), mb.box).draw(rng)

        coords = np.argwhere(case.crops[n][0]).astype(np.int16)
        t = [
            median_us(cold_flat),
            median_us(
                lambda flat=flat, shape=shape: np.unravel_index(
                    flat[rng.integers(len(flat))], shape
                )
            ),
            median_us(lambda mb=mb_w, box=box: RowCounts(read_packed(fd_w, mb), box)),
            median_us(lambda rc=rc: rc.draw(rng)),
            median_us(cold_slab),
            median_us(lambda c=coords: c[rng.integers(len(c))]),
        ]
        lines.append(
            f"| {n} | {case.voxels(n):,} | {t[0]:.0f} µs | {t[1]:.1f} µs ({flat.nbytes:,} B) | "
            f"{t[2]:.0f} µs | {t[3]:.1f} µs ({rc.nbytes:,} B) | {t[4]:.0f} µs | {t[5]:.1f} µs |"
        )
    os.close(fd_w)
    os.close(fd_s)
    return lines, coords_table(case, whole)


def coords_table(case: Case, whole: Layout) -> list[str]:
    """nnU-Net's rule max(min(10,000, n), ceil(1% n)) coordinates per class: bytes per case."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    seg = case.label_map(dtype=np.int16)
    labels = list(range(1, len(case.names) + 1))
    t = time.perf_counter()
    locs = DefaultPreprocessor._sample_foreground_locations(seg, labels)
    t_pre = time.perf_counter() - t
    pkl = pickle.dumps({"class_locations": locs}, protocol=pickle.HIGHEST_PROTOCOL)
    k = sum(len(v) for v in locs.values())
    stacked = np.concatenate([np.asarray(v)[:, 1:] for v in locs.values() if len(v)])
    i16 = stacked.astype(np.int16).tobytes()
    z16 = zstd.ZstdCompressor(level=19).compress(i16)
    cache_all = sum(
        RowCounts(np.packbits(case.crops[n][0], axis=2), case.crops[n][1]).nbytes
        for n in case.nonempty()
    )
    t_load = median_us(lambda: pickle.loads(pkl), 50)
    return [
        f"nnU-Net's `class_locations` for the {len(labels)} classes "
        f"({sum(1 for v in locs.values() if len(v))} present), computed by "
        f"`DefaultPreprocessor._sample_foreground_locations` in {t_pre:.2f} s: {k:,} coordinates.",
        "",
        "| stored as | bytes per case | vs the whole `.mska` blobs |",
        "| --- | ---: | ---: |",
        f"| nnU-Net's pickle (int64, 4 columns, as in its `.pkl`) | {len(pkl):,} | {len(pkl) / whole.blob_bytes:.0f}x |",
        f"| int32 x 3 | {k * 12:,} | {k * 12 / whole.blob_bytes:.0f}x |",
        f"| int16 x 3 | {len(i16):,} | {len(i16) / whole.blob_bytes:.0f}x |",
        f"| int16 x 3, zstd 19 | {len(z16):,} | {len(z16) / whole.blob_bytes:.1f}x |",
        "",
        f"Unpickling nnU-Net's `.pkl` (which its loader does for every sample): {t_load / 1e3:.2f} ms. "
        f"A per-worker cache holding the packed rows and row counts of all "
        f"{len(case.nonempty())} non-empty masks of this case: {cache_all:,} B.",
    ]


# --------------------------------------------------------------------------------------------


def verdicts(res: dict, mska_bytes: int | None, mask_bytes: int | None) -> list[str]:
    """Which readers reach the issue's targets (anywhere <= 2x blosc2, organ <= 1x)."""
    b_any, b_org = res["any"]["blosc2"], res["organ"]["blosc2"]
    out = []
    for key, text in res["readers"].items():
        if key == "blosc2":
            continue
        r_any, r_org = res["any"][key] / b_any, res["organ"][key] / b_org
        ok = r_any <= 2 and r_org <= 1
        verdict = "meets both targets" if ok else "misses a target"
        out.append(
            f"- {verdict} (anywhere {r_any:.2f}x, target <= 2x; organ {r_org:.2f}x, "
            f"target <= 1x): {text}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--real", type=Path, default=REAL_CASE, help="folder of the real case")
    ap.add_argument(
        "--windows", type=int, default=300, help="random windows per kind (default 300)"
    )
    ap.add_argument(
        "--repeat", type=int, default=2, help="timed passes over the windows (default 2)"
    )
    ap.add_argument(
        "--check", type=int, default=40, help="windows checked equal first (default 40)"
    )
    ap.add_argument(
        "--stretch",
        type=int,
        nargs="*",
        default=[3, 6],
        help="z factors of taller cases (none: skip)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench_output"), help="folder for the .md")
    args = ap.parse_args(argv)
    if not args.real.is_dir():
        print(f"real case not found at {args.real}: nothing to measure")
        return 1
    from medmask import MaskArchive
    from medmask.nifti import folder_to_archive

    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="medmask-study-windows-"))
    text: list[str] = []
    try:
        case = load_real_case(args.real)
        mska = work / "case.mska"
        folder_to_archive(args.real, mska)
        with MaskArchive(mska) as ar:
            mska_bytes, mask_bytes = mska.stat().st_size, ar.mask_bytes
        res = window_study(case, work, args, rng, REAL_SPECS, archive=mska, decoders=True)
        text += [
            "# Window reads: nnU-Net's blosc2 files vs medmask-side layouts (issue 18)",
            "",
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"numpy {np.__version__}, zstandard {zstd.__version__}; real case {args.real.name} "
            f"(grid (z, y, x) {case.shape}, {len(case.names)} masks, {len(case.nonempty())} non-empty, "
            f"`.mska` {mska_bytes:,} B of which blobs {mask_bytes:,} B); medians over "
            f"{args.windows} windows x {args.repeat} passes; every reader checked equal to the "
            f"reference on {args.check} windows of each kind first.",
            "",
            "## Window cost on the real case (ratio to nnU-Net's label window)",
            "",
            *window_tables(res, mska_bytes, mask_bytes),
            "",
            *verdicts(res, mska_bytes, mask_bytes),
            "",
            "## Size of each layout on the real case (limit 40,000 B)",
            "",
            *layout_table(res, mska_bytes, mask_bytes),
            "",
            "## Decoding steps, per mask (whole-crop blobs)",
            "",
            *decode_table(case, res["whole"]),
        ]
        slabs = build_layout(case, work, "sampler_slab32", 32)
        draws, coords = sampler_study(case, res["whole"], slabs, rng)
        text += ["", "## Sampler: exact foreground voxels", "", *draws, "", *coords]
        for factor in args.stretch:
            tall = stretch(case, factor)
            res_t = window_study(tall, work, args, rng, TALL_SPECS, archive=None, decoders=False)
            text += [
                "",
                f"## A taller case: the same masks stretched {factor}x along z "
                f"(grid {tall.shape}), a window now covers a fraction of each long mask",
                "",
                *window_tables(res_t, None, None),
                "",
                *verdicts(res_t, None, None),
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    publish("\n".join(text) + "\n", args.out, "study_window_layouts.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
