"""Which zstd parameters the bitzstd codec should encode boolean masks with (issue 21).

The format fixes the payload (rows bit-packed, one zstd frame with its content size); the
compression parameters are the writer's choice (``docs/format.md``: "writers may choose any
level; readers do not care"). medmask 0.2-0.5 used level 19 (``btultra2``, zstd's own
parameters for the source size). Packing a DICOM SEG spends most of its time there, so this
study measures, on the payloads of the real TotalSegmentator case (the 21 non-empty masks, each
cropped to its box and bit-packed by rows, exactly as the codec hands them to zstd) and on
synthetic organ-like ellipsoids, for each candidate:

* encode CPU time of all payloads (one thread; median of ``--repeat`` interleaved passes),
* the total size of the frames,
* decode time of all frames (median), so that a cheaper encode does not buy a slower read.

Candidates: levels 15-19 with zstd's parameters, and level 19's parameters for the source size
with a shallower search (``search_log``) and a shorter ``target_length`` (the two knobs that
cost ``btultra2`` its time on long runs of identical rows), for every payload or only from a
payload size on (small payloads cost little at any setting, and lose most from a capped
search). The last row is what :func:`medmask.compression.bool_mask_params` does.

Usage::

    .venv/bin/python benchmarks/study_zstd_params.py            # ~1 min on 2 cores
    .venv/bin/python benchmarks/study_zstd_params.py --repeat 3

Writes the table to stdout and to ``--out``/study_zstd_params.md (default bench_output/).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import zstandard

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_format import REAL_CASE, load_real, synthetic  # noqa: E402

from medmask.compression import bool_mask_params  # noqa: E402


def payloads(arrays: list[np.ndarray]) -> list[bytes]:
    """The codec's bool payloads: each non-empty mask's box, rows bit-packed."""
    out = []
    for arr in arrays:
        nz = [np.flatnonzero(arr.any(axis=tuple(a for a in range(3) if a != k))) for k in range(3)]
        if nz[0].size == 0:
            continue
        box = arr[nz[0][0] : nz[0][-1] + 1, nz[1][0] : nz[1][-1] + 1, nz[2][0] : nz[2][-1] + 1]
        out.append(np.packbits(box, axis=2).tobytes())
    return out


def candidates() -> dict[str, object]:
    """``{label: function(source size) -> ZstdCompressor}``."""

    def level(n_level: int):
        c = zstandard.ZstdCompressor(level=n_level, write_content_size=True)
        return lambda _n: c

    def tuned(search_log: int, target_length: int, cap_from: int):
        def make(n: int):
            p = bool_mask_params(
                n, 19, search_log=search_log, target_length=target_length, cap_from=cap_from
            )
            return zstandard.ZstdCompressor(compression_params=p)

        return make

    out: dict[str, object] = {f"level {k}": level(k) for k in (15, 16, 17, 18, 19)}
    for s in (1, 2, 3):
        for t in (64, 128, 256):
            out[f"19, search_log<={s}, target_length<={t}"] = tuned(s, t, 0)
    for cap in (16384, 32768, 65536):
        out[f"19, search_log<=2, target_length<=128 from {cap // 1024} KiB"] = tuned(2, 128, cap)
    out["medmask's choice (compression.bool_mask_params)"] = lambda n: zstandard.ZstdCompressor(
        compression_params=bool_mask_params(n)
    )
    return out


def measure(data: list[bytes], repeat: int) -> list[tuple[str, float, int, float]]:
    """``[(label, encode s, bytes, decode s)]``, passes interleaved over the candidates."""
    cands = candidates()
    enc: dict[str, list[float]] = {k: [] for k in cands}
    dec: dict[str, list[float]] = {k: [] for k in cands}
    size: dict[str, int] = {}
    d = zstandard.ZstdDecompressor()
    for _ in range(repeat):
        for label, make in cands.items():
            t = time.process_time()
            frames = [make(len(p)).compress(p) for p in data]  # type: ignore[operator]
            enc[label].append(time.process_time() - t)
            t = time.perf_counter()
            back = [d.decompress(f) for f in frames]
            dec[label].append(time.perf_counter() - t)
            if back != data:
                raise SystemExit(f"{label}: the frames do not decode to the payloads")
            size[label] = sum(map(len, frames))
    return [(k, statistics.median(enc[k]), size[k], statistics.median(dec[k])) for k in cands]


def table(title: str, rows: list[tuple[str, float, int, float]], raw: int) -> str:
    ref = next(r for r in rows if r[0] == "level 19")
    lines = [
        f"### {title} ({raw:,} payload bytes)",
        "",
        "| parameters | encode (CPU) | vs level 19 | frames | vs level 19 | decode |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, e, s, dd in rows:
        lines.append(
            f"| {label} | {e * 1e3:.0f} ms | {e / ref[1]:.2f}x | {s:,} B | "
            f"{(s / ref[2] - 1) * 100:+.1f}% | {dd * 1e3:.1f} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", type=Path, default=REAL_CASE, help="folder of the real case")
    ap.add_argument("--repeat", type=int, default=5, help="passes per candidate (median)")
    ap.add_argument("--out", type=Path, default=HERE.parent / "bench_output")
    args = ap.parse_args(argv)
    parts = [
        f"# zstd parameters for boolean masks\n\n{platform.platform()}, Python "
        f"{platform.python_version()}, zstd {zstandard.ZSTD_VERSION}, median of "
        f"{args.repeat} passes\n"
    ]
    sets = []
    if args.real.is_dir():
        sets.append(("the real TotalSegmentator case", load_real(args.real)[1]))
    else:
        print(f"(no real case at {args.real}: synthetic masks only)", file=sys.stderr)
    sets.append(("60 synthetic ellipsoids on 96x128x128", synthetic(60)[1]))
    for title, arrays in sets:
        data = payloads(arrays)
        del arrays
        parts.append(table(title, measure(data, args.repeat), sum(map(len, data))))
        print(parts[-1] + "\n", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "study_zstd_params.md").write_text("\n\n".join(parts) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
