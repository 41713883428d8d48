"""``medmask.stats`` over a dataset of archives against decoding every mask, in one run.

The dataset: the real TotalSegmentator case (``../shared/data/totalseg_s0000``, 117 masks)
packed once, then copied under ``--archives`` different names (150 by default) into a
temporary folder; every copy is a full archive, opened and read on its own. Measured
(medians over ``--repeat`` runs, the same run for every row):

* ``medmask.stats(folder)``: the per-mask table from the archives' index (format 2.2);
* the same over copies in format 2.1 (medmask 0.3.0: also from the index), 2.0 (medmask
  0.2.0: centroids decoded) and version 1 (medmask 0.1.x: every mask decoded), to show
  what older files cost;
* decoding every mask of every archive (``MaskArchive.read_all_masks()``), the baseline.

The target (issue 13): ``stats`` at least 20x faster than decoding. Usage::

    .venv/bin/python benchmarks/bench_stats.py                 # 150 archives, 3 runs
    .venv/bin/python benchmarks/bench_stats.py --archives 30 --repeat 1 --out bench_output

Writes ``bench_stats.md`` and ``bench_stats.png`` into ``--out`` (default ``bench_output/``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
#: The real case (env ``MEDMASK_REAL_CASE`` points elsewhere).
REAL_CASE = Path(
    os.environ.get("MEDMASK_REAL_CASE", HERE.parent.parent / "shared" / "data" / "totalseg_s0000")
)

import numpy as np  # noqa: E402
from _check import require  # noqa: E402
from _regions import region  # noqa: E402

import medmask  # noqa: E402
from medmask import MaskArchive  # noqa: E402


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def copies(src: Path, folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        dst = folder / f"case_{i:04d}.mska"
        shutil.copyfile(src, dst)
        out.append(dst)
    return out


def rewrite(src: Path, dst: Path, **kw) -> None:
    with MaskArchive(src) as ar, MaskArchive(dst, "w", space=ar.space, **kw) as out:
        for name in ar.all_names():
            out.add(name, ar[name])


def decoded_truth(archive: Path) -> dict[str, tuple[int, tuple | None]]:
    """``{name: (voxels, bounding box)}`` of every mask, from decoding it."""
    out = {}
    with MaskArchive(archive) as ar:
        for name, m in ar.read_all_masks().items():
            nz = np.argwhere(m.data)
            box = None
            if nz.size:
                lo, hi = nz.min(axis=0), nz.max(axis=0) + 1
                box = tuple(int(v) for pair in zip(lo, hi) for v in pair)
            out[name] = (int(nz.shape[0]), box)
    return out


def check_stats(df, truth: dict, n: int, what: str) -> None:
    """Every archive's rows say what decoding its masks says (voxels, box, emptiness).

    Raises:
        OutputsDiffer: A row differs, or rows are missing.
    """
    require(len(df) == len(truth) * n, f"{what}: {len(df)} rows for {n} archives")
    for row in df.itertuples():
        voxels, box = truth[row.name]
        require(row.voxels == voxels, f"{what}: {row.case}/{row.name} voxels {row.voxels}")
        require(bool(row.empty) == (voxels == 0), f"{what}: {row.case}/{row.name} empty")
        got = None if row.bbox is None else tuple(int(v) for v in row.bbox)
        require(voxels == 0 or got == box, f"{what}: {row.case}/{row.name} bbox {got}")


def decode_all(files: list[Path]) -> int:
    n = 0
    for f in files:
        with MaskArchive(f) as ar:
            n += len(ar.read_all_masks())
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--archives", type=int, default=150, help="copies of the real case")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    ap.add_argument("--real", type=Path, default=REAL_CASE, help="folder of the real case")
    ap.add_argument("--out", type=Path, default=Path("bench_output"), help="folder for .md/.png")
    ap.add_argument("--no-old", action="store_true", help="skip the format 2.0 / version 1 rows")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if not args.real.is_dir():
        print(f"real case not found at {args.real}: nothing to measure")
        return 1
    from medmask.nifti import folder_to_archive

    work = Path(tempfile.mkdtemp(prefix="medmask-bench-stats-"))
    try:
        src = work / "s0000.mska"
        folder_to_archive(args.real, src)
        n = args.archives
        files = copies(src, work / "v22", n)
        truth = decoded_truth(src)
        rows = []
        # before timing (and warming up): each way gives what decoding gives
        df = medmask.stats(work / "v22")
        check_stats(df, truth, n, "stats 2.2")
        require(set(df["source"]) == {"index"}, "stats 2.2 decoded masks")
        t_stats, _ = timed(lambda: medmask.stats(work / "v22"), args.repeat)
        rows.append(("medmask.stats, format 2.2 (index only)", t_stats, "index"))
        if not args.no_old:
            old21, old20, old1 = (work / f"s0000_{v}.mska" for v in ("21", "20", "v1"))
            rewrite(src, old21, compat="0.3")
            copies(old21, work / "v21", n)
            df21 = medmask.stats(work / "v21")
            check_stats(df21, truth, n, "stats 2.1")
            require(set(df21["source"]) == {"index"}, "stats 2.1 decoded masks")
            t21, _ = timed(lambda: medmask.stats(work / "v21"), args.repeat)
            rows.append(("medmask.stats, format 2.1 (index only, medmask 0.3.0)", t21, "index"))
            rewrite(src, old20, compat="0.2")
            rewrite(src, old1, codec="zstd")
            copies(old20, work / "v20", n)
            copies(old1, work / "v1", n)
            check_stats(medmask.stats(work / "v20"), truth, n, "stats 2.0")
            check_stats(medmask.stats(work / "v1"), truth, n, "stats v1")
            t20, _ = timed(lambda: medmask.stats(work / "v20"), args.repeat)
            t1, _ = timed(lambda: medmask.stats(work / "v1"), args.repeat)
            rows.append(("medmask.stats, format 2.0 (centroids decoded)", t20, "decoded"))
            rows.append(("medmask.stats, version 1 (all decoded)", t1, "decoded"))
        require(decode_all(files) == len(truth) * n, "decoding: masks missing")
        t_dec, _ = timed(lambda: decode_all(files), args.repeat)
        rows.append(("decode every mask (read_all_masks), format 2.2", t_dec, "baseline"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ratio = t_dec / t_stats
    machine = (
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {n} archives (copies of the real case, 117 masks each, "
        f"{n * 117:,} masks), medians of {args.repeat} runs, one run for every row"
    )
    table = [
        "| what | total | per archive | vs decoding |",
        "|---|---:|---:|---:|",
    ]
    for label, t, _ in rows:
        table.append(f"| {label} | {t:.3f} s | {t / n * 1e3:.2f} ms | {t_dec / t:.1f}x |")
    table += [
        "",
        f"- medmask.stats from the index is **{ratio:.0f}x** faster than decoding "
        f"(target >= 20x): {t_stats / n * 1e3:.2f} ms per archive against {t_dec / n * 1e3:.1f} ms.",
    ]
    body = region("stats", "\n".join([machine, "", *table]))
    checked = "Every row's answer was checked against decoding every mask before it was timed."
    text = "\n".join(["# medmask.stats benchmark", "", body, "", checked])
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_stats.md").write_text(text + "\n")
    try:
        from _plot import Panel, save_panels
    except ImportError:  # pragma: no cover
        pass
    else:
        png = save_panels(
            f"describing {n} archives of the real case (117 masks each)",
            [
                Panel(
                    "time per archive (log scale)",
                    [r[0].replace("medmask.stats, ", "stats ") for r in rows],
                    [r[1] / n for r in rows],
                    unit="s",
                    log=True,
                )
            ],
            args.out / "bench_stats.png",
        )
        if png:
            print(f"\n(wrote {args.out / 'bench_stats.md'} and {png})")
    if args.json:
        args.json.write_text(
            json.dumps({"archives": n, "rows": rows, "ratio": ratio}, indent=1, default=str)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
