"""Packing speed, measured in one run (medians of whole processes, interleaved).

1. ``medmask pack`` of the real TotalSegmentator case (117 ``.nii.gz``), as a whole process,
   against a whole process that merely loads the same 117 files with nibabel
   (``np.asanyarray(nib.load(f).dataobj)``). Target: pack <= 0.6x load.
2. Inflating the 117 files: CPython's ``gzip`` against zlib-ng (what medmask reads through).
3. ``medmask pack-tree`` of 20 cases (links to the real case's files under a temporary
   dataset root), as whole processes: a local process pool against a Dask ``LocalCluster``
   (``--dask``), both with ``--workers`` workers (default: the CPU count), ``--force`` so that
   every run packs every case.

Usage::

    python benchmarks/bench_pack.py [--case DIR] [--repeat 5] [--cases 20] [--workers N]

Writes the table to stdout and to ``bench_output/pack.md``.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _check import require, require_equal  # noqa: E402
from _regions import begin, end  # noqa: E402

DEFAULT_CASE = Path(
    os.environ.get("MEDMASK_REAL_CASE", REPO.parent / "shared" / "data" / "totalseg_s0000")
)
LOAD_SCRIPT = (
    "import sys, numpy as np, nibabel as nib\n"
    "from pathlib import Path\n"
    "for f in sorted(Path(sys.argv[1]).glob('*.nii.gz')):\n"
    "    np.asanyarray(nib.load(f).dataobj)\n"
)


def _medmask(*args: str) -> list[str]:
    return [sys.executable, "-m", "medmask", *args]


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return dt


def check_archive(archive: Path, files: list[Path], what: str) -> None:
    """The archive holds the ``.nii.gz`` files' masks (by name, voxel for voxel, on their
    grid), as nibabel reads them.

    Raises:
        OutputsDiffer: A name, a mask or the grid differs.
    """
    import nibabel as nib
    import numpy as np

    from medmask import MaskArchive
    from medmask.geometry import space_to_affine

    with MaskArchive(archive) as ar:
        names = [f.name[: -len(".nii.gz")] for f in files]
        require(ar.all_names() == names, f"{what}: names {ar.all_names()[:3]}...")
        for name, f in zip(names, files):
            img = nib.load(f)
            src = np.asanyarray(img.dataobj).transpose(2, 1, 0) != 0
            require_equal(f"{what}: {name}", ar.read_array(name), src)
        require(np.allclose(space_to_affine(ar.space), img.affine, atol=1e-4), f"{what}: the grid")


def _inflate(files: list[Path], repeat: int) -> dict[str, float]:
    raws = [f.read_bytes() for f in files]
    out: dict[str, list[float]] = {"CPython gzip": []}
    try:
        from zlib_ng import gzip_ng

        out["zlib-ng"] = []
    except ImportError:
        gzip_ng = None
    for raw in raws:  # the same bytes out, before timing
        if gzip_ng is not None:
            require(gzip.decompress(raw) == gzip_ng.decompress(raw), "zlib-ng inflates otherwise")
    for _ in range(repeat):
        for name in out:
            fn = gzip.decompress if name == "CPython gzip" else gzip_ng.decompress
            t = time.perf_counter()
            for b in raws:
                fn(b)
            out[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--case", type=Path, default=DEFAULT_CASE, help="folder of .nii.gz masks")
    p.add_argument("--repeat", type=int, default=5, help="runs of each process (median)")
    p.add_argument("--cases", type=int, default=20, help="cases of the pack-tree dataset")
    p.add_argument("--tree-repeat", type=int, default=3, help="runs of each pack-tree engine")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pack-tree workers")
    p.add_argument("--out", type=Path, default=REPO / "bench_output" / "pack.md")
    args = p.parse_args(argv)
    files = sorted(args.case.glob("*.nii.gz"))
    if not files:
        raise SystemExit(f"{args.case}: no .nii.gz files (set --case or MEDMASK_REAL_CASE)")
    from medmask.conversions._inflate import INFLATER

    lines: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    emit("# Packing speed (benchmarks/bench_pack.py)")
    emit()
    emit(begin("pack"))
    emit(
        f"{platform.node() or 'machine'}: {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, inflater: {INFLATER}; case: {args.case.name} "
        f"({len(files)} files, {sum(f.stat().st_size for f in files):,} bytes); medians of "
        f"{args.repeat} interleaved whole-process runs"
    )
    emit()
    with tempfile.TemporaryDirectory(prefix="medmask-bench-pack-") as tmp:
        tmp = Path(tmp)
        load_py = tmp / "load.py"
        load_py.write_text(LOAD_SCRIPT)
        out = tmp / "case.mska"
        pack_cmd = _medmask("pack", "-q", str(args.case), "-o", str(out))
        load_cmd = [sys.executable, str(load_py), str(args.case)]
        imp_cmd = [sys.executable, "-c", "import medmask.cli, nibabel"]
        times: dict[str, list[float]] = {"pack": [], "load": [], "imports": []}
        _timed(pack_cmd)  # warm the page cache and the bytecode caches
        _timed(load_cmd)
        check_archive(out, files, "medmask pack")  # before timing: what pack writes
        for _ in range(args.repeat):
            times["pack"].append(_timed(pack_cmd))
            times["load"].append(_timed(load_cmd))
            times["imports"].append(_timed(imp_cmd))
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = med["pack"] / med["load"]
        # each pack ran right before its load: the ratio of a pair is immune to slow drifts
        # in the machine's load (other jobs), so its median is quoted too
        pair = statistics.median(a / b for a, b in zip(times["pack"], times["load"]))
        emit("| whole process | median s | runs (s) |")
        emit("| --- | ---: | --- |")
        emit(
            f"| `medmask pack` of the {len(files)} files -> .mska | {med['pack']:.2f} | "
            f"{', '.join(f'{t:.2f}' for t in times['pack'])} |"
        )
        emit(
            f"| load the {len(files)} files with nibabel | {med['load']:.2f} | "
            f"{', '.join(f'{t:.2f}' for t in times['load'])} |"
        )
        emit(
            f"| (start-up only: `import medmask.cli, nibabel`) | {med['imports']:.2f} | "
            f"{', '.join(f'{t:.2f}' for t in times['imports'])} |"
        )
        emit()
        emit(
            f"**pack / load = {ratio:.2f}x** (ratio of the medians; median of the per-pair "
            f"ratios {pair:.2f}x; target <= 0.6x); archive {out.stat().st_size:,} bytes"
        )
        emit()
        inflate = _inflate(files, args.repeat)
        emit(f"| inflate the {len(files)} files in memory | median s |")
        emit("| --- | ---: |")
        for k, v in inflate.items():
            emit(f"| {k} | {v:.3f} |")
        emit()

        # pack-tree: N cases, each a folder of links to the real case's files
        root = tmp / "dataset"
        for c in range(args.cases):
            seg = root / f"s{c:04d}" / "segmentations"
            seg.mkdir(parents=True)
            for f in files:
                (seg / f.name).symlink_to(f.resolve())
        dest = tmp / "packed"
        base = _medmask("pack-tree", "-q", str(root), "-o", str(dest), "--force")
        engines = {
            f"local process pool (`-w {args.workers}`)": [*base, "-w", str(args.workers)],
            f"Dask LocalCluster (`--dask -w {args.workers}`)": [
                *base,
                "--dask",
                "-w",
                str(args.workers),
            ],
        }
        for name, cmd in engines.items():  # before timing: every case packed, by each engine
            _timed(cmd)
            for c in range(args.cases):
                check_archive(dest / f"s{c:04d}.mska", files, f"{name}, case {c}")
            for f in dest.iterdir():
                f.unlink()
        tree: dict[str, list[float]] = {k: [] for k in engines}
        for _ in range(args.tree_repeat):
            for name, cmd in engines.items():
                tree[name].append(_timed(cmd))
        n_masks = args.cases * len(files)
        emit(
            f"| `medmask pack-tree` of {args.cases} cases ({n_masks:,} files), whole process | "
            "median s | cases/s | runs (s) |"
        )
        emit("| --- | ---: | ---: | --- |")
        for name, ts in tree.items():
            m = statistics.median(ts)
            emit(
                f"| {name} | {m:.2f} | {args.cases / m:.1f} | {', '.join(f'{t:.2f}' for t in ts)} |"
            )
        emit(end("pack"))
        emit()
        emit(
            "The Dask run includes starting the LocalCluster (scheduler + worker processes); "
            "on a real cluster the workers are already running. Every archive each engine "
            "wrote, and the one `medmask pack` wrote, was checked against the source files "
            "before the timed runs; zlib-ng's output against CPython's."
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
