"""Ingest speed: the real case as NIfTI, as DICOM SEG and as .seg.nrrd, and a collection of
40 cases, each against the peer reader in the same run (medians, interleaved runs).

1. NIfTI: ``medmask pack`` of the real TotalSegmentator case (117 ``.nii.gz``) as a whole
   process, against a whole process loading the same files with nibabel
   (``np.asanyarray(nib.load(f).dataobj)``). Target: pack <= 0.45x load, on 2 cores.
2. DICOM SEG: the 117 masks written by highdicom as one BINARY SEG on a CT series generated
   on the case's grid (setup). ``medmask pack`` of the SEG against highdicom's ``segread`` +
   ``get_volume`` of every segment: in one process (both libraries imported) and as whole
   processes with their peak RSS. Target: >= 10x faster, lower peak RSS.
3. ``.seg.nrrd``: the case as a Slicer segmentation; ``medmask pack`` against slicerio's
   ``read_segmentation`` + ``segment_mask`` of every segment (in one process, whole processes).
4. ``medmask pack-tree`` of 40 cases (links to the real case's files) on ``--workers``
   processes, local pool and Dask ``LocalCluster``, against nibabel loading the same
   40 x 117 files in a pool of as many processes.

Outputs are checked equal before anything is timed: every archive mask against nibabel's
arrays, highdicom's volumes (world positions) and slicerio's masks. The machine's load
average is printed before and after (the benchmark machine may be shared).

Usage::

    python benchmarks/bench_ingest.py [--case DIR] [--repeat 5] [--cases 40] [--workers 2]
        [--parts nifti,seg,tree]

Quick run (one part, fewer repeats): ``--parts seg --repeat 3`` or ``--cases 8 --tree-repeat 1``.

Writes the table to stdout and to ``bench_output/ingest.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "tests")]
from _regions import begin, end  # noqa: E402 - the docs' region (update_docs.py copies it)
from bench_pack import DEFAULT_CASE, LOAD_SCRIPT  # noqa: E402 - the same case and nibabel load

#: The region of docs/benchmarks.md this benchmark's table fills.
REGION = "ingest"

# whole-process peers; each prints its own peak RSS (KiB) on its last stderr line: VmHWM, the
# high-water mark of its own memory map (ru_maxrss would carry over the parent's across exec)
RSS = (
    "import atexit, sys\n"
    "def _hwm():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            print('maxrss', line.split()[1], file=sys.stderr)\n"
    "atexit.register(_hwm)\n"
)
NIBABEL = RSS + LOAD_SCRIPT
HIGHDICOM = RSS + (
    "import highdicom as hd\nseg = hd.seg.segread(sys.argv[1])\n"
    "for n in seg.segment_numbers:\n"
    "    seg.get_volume(segment_numbers=[n], combine_segments=False)\n"
)
SLICERIO = RSS + (
    "import slicerio\nseg = slicerio.read_segmentation(sys.argv[1])\n"
    "for s in seg['segments']:\n    slicerio.segment_mask(seg, s)\n"
)
MEDMASK = (
    RSS
    + "import runpy\nsys.argv = ['medmask', *sys.argv[1:]]\nrunpy.run_module('medmask', run_name='__main__')\n"
)
NIBABEL_TREE = (
    "import sys, numpy as np, nibabel as nib\nfrom multiprocessing import Pool\nfrom pathlib import Path\n"
    "def load(case):\n    for f in sorted(Path(case).glob('*.nii.gz')):\n        np.asanyarray(nib.load(f).dataobj)\n"
    "if __name__ == '__main__':\n"
    "    cases = sorted(str(p) for p in Path(sys.argv[1]).glob('*/segmentations'))\n"
    "    with Pool(int(sys.argv[2])) as pool:\n        pool.map(load, cases, chunksize=1)\n"
)


def run(cmd: list[str]) -> tuple[float, int]:
    """``(seconds, peak RSS in KiB or 0)`` of a whole process."""
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("maxrss ")]
    return dt, int(lines[-1].split()[1]) if lines else 0


def interleaved(cmds: dict[str, list[str]], repeat: int) -> dict[str, list[tuple[float, int]]]:
    """Each command ``repeat`` times, in turn (slow drifts in the machine's load hit all)."""
    for cmd in cmds.values():  # warm the page cache and the bytecode caches
        run(cmd)
    out: dict[str, list[tuple[float, int]]] = {k: [] for k in cmds}
    for _ in range(repeat):
        for k, cmd in cmds.items():
            out[k].append(run(cmd))
    return out


def med(runs: list[tuple[float, int]]) -> float:
    return statistics.median(t for t, _rss in runs)


def rss(runs: list[tuple[float, int]]) -> float:
    return statistics.median(r for _t, r in runs) / 1024


def _cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def in_process(fns: dict[str, object], repeat: int) -> dict[str, tuple[float, float]]:
    """``(median wall seconds, median CPU seconds of the process, all threads)`` of each
    function, called in turn in this process. CPU time stretches less with other jobs on
    the machine than wall time does."""
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm
    for _ in range(repeat):
        for k, fn in fns.items():
            c, t = _cpu(), time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t, _cpu() - c))
    return {
        k: (statistics.median(w for w, _c in v), statistics.median(c for _w, c in v))
        for k, v in times.items()
    }


# -- equality before timing -----------------------------------------------------------------------
def check_nifti(case: Path, archive: Path) -> None:
    import nibabel as nib
    import numpy as np

    from medmask import MaskArchive

    with MaskArchive(archive) as ar:
        for f in sorted(case.glob("*.nii.gz")):
            want = np.asanyarray(nib.load(f).dataobj).transpose(2, 1, 0).astype(bool)
            assert np.array_equal(ar.read_array(f.name[: -len(".nii.gz")]), want), f.name


def _world(idx, affine):
    import numpy as np

    return {tuple(v) for v in np.round(idx @ affine[:3, :3].T + affine[:3, 3], 3)}


def check_seg(seg_path: Path, archive: Path) -> None:
    """Every segment of the archive sits at the world positions of highdicom's volume."""
    import highdicom as hd
    import numpy as np

    from medmask import MaskArchive
    from medmask.geometry import lps_matrix

    seg = hd.seg.segread(str(seg_path))
    with MaskArchive(archive) as ar:
        m = lps_matrix(ar.space)
        for k, name in zip(seg.segment_numbers, ar.all_names(), strict=True):
            vol = seg.get_volume(segment_numbers=[k], combine_segments=False)
            theirs = _world(np.argwhere(vol.array[..., 0]).astype(float), np.asarray(vol.affine))
            mine = _world(np.argwhere(ar.read_array(name))[:, ::-1].astype(float), m)
            assert mine == theirs, name


def check_nrrd(nrrd_path: Path, archive: Path) -> None:
    import numpy as np
    import slicerio

    from medmask import MaskArchive

    seg = slicerio.read_segmentation(str(nrrd_path))
    with MaskArchive(archive) as ar:
        for s in seg["segments"]:
            want = slicerio.segment_mask(seg, s).transpose(2, 1, 0)
            assert np.array_equal(ar.read_array(s["name"]), want), s["name"]


# -- the run ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--case", type=Path, default=DEFAULT_CASE, help="folder of .nii.gz masks")
    p.add_argument("--repeat", type=int, default=5, help="runs of each figure (median)")
    p.add_argument("--cases", type=int, default=40, help="cases of the pack-tree collection")
    p.add_argument("--tree-repeat", type=int, default=3, help="runs of each pack-tree engine")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="pack-tree workers")
    p.add_argument(
        "--parts",
        default="nifti,seg,tree",
        help="what to measure: nifti, seg (SEG and .seg.nrrd), tree",
    )
    p.add_argument("--out", type=Path, default=REPO / "bench_output" / "ingest.md")
    args = p.parse_args(argv)
    files = sorted(args.case.glob("*.nii.gz"))
    if not files:
        raise SystemExit(f"{args.case}: no .nii.gz files (set --case or MEDMASK_REAL_CASE)")
    lines: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="medmask-bench-ingest-") as tmp:
        rows = _measure(Path(tmp), args, files)
    load_after = os.getloadavg()
    from medmask.conversions._inflate import INFLATER

    emit("# Ingest speed (benchmarks/bench_ingest.py)")
    emit()
    emit(begin(REGION))
    emit(
        f"{platform.node() or 'machine'}: {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, inflater {INFLATER}; case {args.case.name} "
        f"({len(files)} files); medians of {args.repeat} interleaved runs "
        f"({args.tree_repeat} for pack-tree); load average (1, 5, 15 min) "
        f"{', '.join(f'{v:.1f}' for v in load_before)} before, "
        f"{', '.join(f'{v:.1f}' for v in load_after)} after. Outputs checked equal first."
    )
    emit()
    emit("| input | medmask | peer | medmask / peer | target |")
    emit("| --- | ---: | ---: | ---: | --- |")
    for row in rows:
        emit("| " + " | ".join(row) + " |")
    emit(end(REGION))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {args.out}")
    return 0


def _measure(tmp: Path, args: argparse.Namespace, files: list[Path]) -> list[tuple[str, ...]]:
    py = sys.executable
    scripts = {}
    for name, text in (
        ("nibabel", NIBABEL),
        ("highdicom", HIGHDICOM),
        ("slicerio", SLICERIO),
        ("medmask", MEDMASK),
        ("tree", NIBABEL_TREE),
    ):
        scripts[name] = tmp / f"run_{name}.py"  # not "highdicom.py": it would import itself
        scripts[name].write_text(text)
    mm = [py, str(scripts["medmask"])]
    rows = []
    parts = set(args.parts.split(","))
    out = tmp / "nifti.mska"
    run([*mm, "pack", "-q", str(args.case), "-o", str(out)])
    check_nifti(args.case, out)
    if "nifti" in parts:
        rows += _nifti_rows(args, mm, scripts, out, files)
    if "seg" in parts:
        rows += _seg_rows(tmp, args, mm, scripts, out)
    if "tree" in parts:
        rows += _tree_rows(tmp, args, files, scripts)
    return rows


def _nifti_rows(
    args, mm: list[str], scripts: dict, out: Path, files: list[Path]
) -> list[tuple[str, ...]]:
    print("NIfTI ...", file=sys.stderr)
    py = sys.executable
    r = interleaved(
        {
            "mm": [*mm, "pack", "-q", str(args.case), "-o", str(out)],
            "peer": [py, str(scripts["nibabel"]), str(args.case)],
        },
        args.repeat,
    )
    pairs = statistics.median(a / b for (a, _), (b, _) in zip(r["mm"], r["peer"], strict=True))
    return [
        (
            f"NIfTI, {len(files)} `.nii.gz` (whole process, `medmask pack` vs nibabel load)",
            f"{med(r['mm']):.2f} s, {rss(r['mm']):.0f} MiB",
            f"{med(r['peer']):.2f} s, {rss(r['peer']):.0f} MiB",
            f"**{med(r['mm']) / med(r['peer']):.2f}x** (pairs {pairs:.2f}x)",
            "<= 0.45x",
        )
    ]


def _seg_rows(
    tmp: Path, args, mm: list[str], scripts: dict, archive: Path
) -> list[tuple[str, ...]]:
    import highdicom as hd
    import slicerio
    from interop_support import write_ct_series

    from medmask import MaskArchive
    from medmask.conversions import from_archive, to_archive
    from medmask.conversions.dicom_seg import read_dicom_seg

    py = sys.executable
    print("DICOM SEG setup (highdicom writes the 117-segment SEG) ...", file=sys.stderr)
    with MaskArchive(archive) as ar:
        space = ar.space
    write_ct_series(tmp / "ct", space)
    seg = tmp / "case_seg.dcm"
    from_archive(archive, seg, source=tmp / "ct")  # built by highdicom
    to_archive(seg, tmp / "seg.mska")
    check_seg(seg, tmp / "seg.mska")

    def hd_each() -> None:
        s = hd.seg.segread(str(seg))
        for n in s.segment_numbers:
            s.get_volume(segment_numbers=[n], combine_segments=False)

    def mm_read() -> None:  # the read alone: every segment's box, no archive written
        with read_dicom_seg(seg) as s:
            for job in s.jobs:
                job()

    t = in_process(
        {"mm": lambda: to_archive(seg, tmp / "seg.mska"), "read": mm_read, "hd": hd_each},
        args.repeat,
    )
    r = interleaved(
        {
            "mm": [*mm, "pack", "-q", str(seg), "-o", str(tmp / "seg.mska")],
            "peer": [py, str(scripts["highdicom"]), str(seg)],
        },
        args.repeat,
    )
    rows = [
        (
            "DICOM SEG, 117 segments (in one process: `to_archive` vs `segread` + `get_volume` each)",
            f"{t['mm'][0] * 1000:.0f} ms (CPU {t['mm'][1] * 1000:.0f} ms)",
            f"{t['hd'][0] * 1000:.0f} ms (CPU {t['hd'][1] * 1000:.0f} ms)",
            f"**{t['hd'][0] / t['mm'][0]:.1f}x faster** (CPU {t['hd'][1] / t['mm'][1]:.1f}x)",
            ">= 10x faster",
        ),
        (
            "DICOM SEG, 117 segments, the read alone (`read_dicom_seg`, every segment's box; no archive)",
            f"{t['read'][0] * 1000:.0f} ms (CPU {t['read'][1] * 1000:.0f} ms)",
            f"{t['hd'][0] * 1000:.0f} ms (CPU {t['hd'][1] * 1000:.0f} ms)",
            f"{t['hd'][0] / t['read'][0]:.1f}x faster (CPU {t['hd'][1] / t['read'][1]:.1f}x)",
            "",
        ),
        (
            "DICOM SEG, 117 segments (whole process, peak RSS)",
            f"{med(r['mm']):.2f} s, {rss(r['mm']):.0f} MiB",
            f"{med(r['peer']):.2f} s, {rss(r['peer']):.0f} MiB",
            f"{med(r['peer']) / med(r['mm']):.1f}x faster, RSS {rss(r['mm']) / rss(r['peer']):.2f}x",
            "RSS below highdicom's",
        ),
    ]
    print(".seg.nrrd ...", file=sys.stderr)
    nrrd = tmp / "case.seg.nrrd"
    from_archive(archive, nrrd)
    to_archive(nrrd, tmp / "nrrd.mska")
    check_nrrd(nrrd, tmp / "nrrd.mska")

    def slicer_each() -> None:
        s = slicerio.read_segmentation(str(nrrd))
        for x in s["segments"]:
            slicerio.segment_mask(s, x)

    t = in_process(
        {"mm": lambda: to_archive(nrrd, tmp / "nrrd.mska"), "sl": slicer_each}, args.repeat
    )
    r = interleaved(
        {
            "mm": [*mm, "pack", "-q", str(nrrd), "-o", str(tmp / "nrrd.mska")],
            "peer": [py, str(scripts["slicerio"]), str(nrrd)],
        },
        args.repeat,
    )
    rows += [
        (
            "`.seg.nrrd`, 117 segments (in one process: `to_archive` vs slicerio read + `segment_mask` each)",
            f"{t['mm'][0] * 1000:.0f} ms (CPU {t['mm'][1] * 1000:.0f} ms)",
            f"{t['sl'][0] * 1000:.0f} ms (CPU {t['sl'][1] * 1000:.0f} ms)",
            f"{t['sl'][0] / t['mm'][0]:.1f}x faster (CPU {t['sl'][1] / t['mm'][1]:.1f}x)",
            "",
        ),
        (
            "`.seg.nrrd` (whole process, peak RSS)",
            f"{med(r['mm']):.2f} s, {rss(r['mm']):.0f} MiB",
            f"{med(r['peer']):.2f} s, {rss(r['peer']):.0f} MiB",
            f"{med(r['peer']) / med(r['mm']):.1f}x faster, RSS {rss(r['mm']) / rss(r['peer']):.2f}x",
            "",
        ),
    ]
    return rows


def _tree_rows(tmp: Path, args, files: list[Path], scripts: dict) -> list[tuple[str, ...]]:
    print(f"pack-tree of {args.cases} cases ...", file=sys.stderr)
    root = tmp / "collection"
    for c in range(args.cases):
        seg = root / f"s{c:04d}" / "segmentations"
        seg.mkdir(parents=True)
        for f in files:
            (seg / f.name).symlink_to(f.resolve())
    dest = tmp / "packed"
    base = [
        sys.executable,
        "-m",
        "medmask",
        "pack-tree",
        "-q",
        str(root),
        "-o",
        str(dest),
        "--force",
    ]
    w = str(args.workers)
    run([*base, "-w", w])
    check_nifti(root / "s0000" / "segmentations", dest / "s0000.mska")
    check_nifti(
        root / f"s{args.cases - 1:04d}" / "segmentations", dest / f"s{args.cases - 1:04d}.mska"
    )
    r = interleaved(
        {
            "local": [*base, "-w", w],
            "dask": [*base, "--dask", "-w", w],
            "peer": [sys.executable, str(scripts["tree"]), str(root), w],
        },
        args.tree_repeat,
    )
    n = args.cases
    peer = med(r["peer"])
    return [
        (
            f"pack-tree, {n} cases x {len(files)} files, local pool `-w {w}` (whole process) vs nibabel in a pool of {w}",
            f"{med(r['local']):.1f} s ({n / med(r['local']):.1f} cases/s)",
            f"{peer:.1f} s",
            f"{med(r['local']) / peer:.2f}x",
            "",
        ),
        (
            f"pack-tree, {n} cases, Dask LocalCluster `--dask -w {w}` (whole process, cluster start included)",
            f"{med(r['dask']):.1f} s ({n / med(r['dask']):.1f} cases/s)",
            f"{peer:.1f} s",
            f"{med(r['dask']) / peer:.2f}x",
            "",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main())
