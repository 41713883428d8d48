"""Catalogues over many archives against reading every archive's index, in one run.

The dataset: ``--archives`` synthetic archives (10,000 by default) of ``--masks`` masks each
(117, TotalSegmentator v2's class list; small boxes on a 40x48x48 grid, some empty), made
from 8 templates copied under different names into a temporary folder (kept with
``--data DIR``). Every copy is a full archive, opened and read on its own.

Measured (equal outputs checked first):

* **build**: ``Catalog.build(folder, workers=--workers)`` (the index of every archive read in
  worker processes, rows made in the workers) and ``.write()``, against the peer
  ``medmask.stats(folder)`` (one process, the same rows in pandas). Target: <= 60 s for
  10,000 x 117 on 2 cores.
* **open**: ``Catalog.open(file)`` plus the first look at its rows (``archive_index()``).
  Target: <= 1 s.
* **ready to yield**: ``Catalog.open`` + ``MaskArchiveDataset(catalog)`` + its first item,
  against ``MaskArchiveDataset(paths)`` + its first item (which reads every archive's index
  at startup). Target: <= 2 s.
* **update** of an unchanged catalogue (every archive peeked: 144 bytes each).

Each measurement runs in a fresh Python process (imports not timed, files in the page
cache as after any first run), ``--repeat`` times; medians. Usage::

    .venv/bin/python benchmarks/bench_catalog.py                       # 10,000 archives
    .venv/bin/python benchmarks/bench_catalog.py --archives 500 --repeat 1 --out bench_output

Writes ``bench_catalog.md`` into ``--out`` (default ``bench_output/``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _regions import region  # noqa: E402

SHAPE = (40, 48, 48)

#: Each timed step, run as ``python -c`` in a fresh process: prints one JSON line.
STEPS = {
    "build": """
import time, medmask, pyarrow
from medmask import Catalog
if __name__ == "__main__":
    t, c = time.perf_counter(), time.process_time()
    cat = Catalog.build(DATA, workers=WORKERS)
    cat.write(OUT)
    cpu = time.process_time() - c + (cat.report.cpu_seconds if WORKERS > 1 else 0.0)
    print(json.dumps({"seconds": time.perf_counter() - t, "rows": len(cat), "cpu": cpu}))
""",
    "stats": """
import time, medmask
medmask.stats.find_mask_files(DATA)
t, c = time.perf_counter(), time.process_time()
df = medmask.stats(DATA)
print(json.dumps({"seconds": time.perf_counter() - t, "rows": len(df), "cpu": time.process_time() - c}))
""",
    "open": """
import time, pyarrow.parquet, pandas
from medmask import Catalog
t, c = time.perf_counter(), time.process_time()
cat = Catalog.open(OUT)
cat.archive_index()
print(json.dumps({"seconds": time.perf_counter() - t, "rows": len(cat), "cpu": time.process_time() - c}))
""",
    "ready_catalog": """
import time, pyarrow.parquet, pandas
from medmask import Catalog
from medmask_monai import MaskArchiveDataset
t, c = time.perf_counter(), time.process_time()
ds = MaskArchiveDataset(Catalog.open(OUT))
item = ds[0]
print(json.dumps({"seconds": time.perf_counter() - t, "rows": len(ds), "cpu": time.process_time() - c}))
""",
    "ready_paths": """
import time
from medmask_monai import MaskArchiveDataset
t, c = time.perf_counter(), time.process_time()
ds = MaskArchiveDataset(DATA)
item = ds[0]
print(json.dumps({"seconds": time.perf_counter() - t, "rows": len(ds), "cpu": time.process_time() - c}))
""",
    "update": """
import time, pyarrow.parquet, pandas
from medmask import Catalog
t, c = time.perf_counter(), time.process_time()
new = Catalog.open(OUT).update(workers=1)
assert not new.report.read and len(new.report.kept) == NARCH
print(json.dumps({"seconds": time.perf_counter() - t, "rows": len(new), "cpu": time.process_time() - c}))
""",
}


def make_dataset(folder: Path, n: int, masks: int) -> None:
    """``n`` archives of ``masks`` masks (8 templates, copied)."""
    import numpy as np

    from medmask import MaskArchive
    from medmask.schemes import load_class_map
    from medmask.spaces import Space

    names = list(load_class_map("totalseg_v2").table.to_dict())[:masks]
    names += [f"extra_{k}" for k in range(masks - len(names))]
    folder.mkdir(parents=True, exist_ok=True)
    space = Space(shape=SHAPE[::-1], spacing=(1.5, 1.5, 1.5)).reverse_axis_order()
    rng = np.random.default_rng(0)
    templates = []
    for t in range(8):
        p = folder.parent / f"template_{t}.mska"
        with MaskArchive(p, "w", space=space) as ar:
            for k, name in enumerate(names):
                a = np.zeros(SHAPE, bool)
                if (k + t) % 9:
                    z, y, x = rng.integers(0, 30, 3)
                    a[z : z + 5, y : y + 6, x : x + 4] = True
                ar.add(name, a)
        templates.append(p)
    for i in range(n):
        shutil.copyfile(templates[i % 8], folder / f"case_{i:05d}.mska")


def run_step(name: str, subs: dict, repeat: int) -> tuple[float, float, int]:
    """Median wall and CPU seconds of a step (its processes' CPU time: what the step costs
    on an idle machine, where a shared one stretches the wall time), and its row count."""
    code = "import json\n" + STEPS[name]
    for k, v in subs.items():
        code = code.replace(k, repr(v))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    times, cpus, rows = [], [], 0
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO
        )
        if out.returncode:
            raise RuntimeError(f"step {name} failed:\n{out.stderr[-2000:]}")
        got = json.loads(out.stdout.strip().splitlines()[-1])
        times.append(got["seconds"])
        cpus.append(got["cpu"])
        rows = got["rows"]
    return statistics.median(times), statistics.median(cpus), rows


def check_equal(data: Path, catalog: Path, sample: int) -> None:
    """The catalogue's rows equal medmask.stats' for ``sample`` archives (and every row
    count): the same cases, names, voxels, boxes, volumes and border contact."""
    import numpy as np

    import medmask
    from medmask import Catalog

    cat = Catalog.open(catalog)
    files = sorted(data.glob("*.mska"))
    picked = [str(files[k].resolve()) for k in np.linspace(0, len(files) - 1, sample, dtype=int)]
    st = medmask.stats(picked)
    df = cat.df_of(picked)
    assert len(df) == len(st), (len(df), len(st))
    for col in ("case", "name"):
        assert df[col].astype(str).tolist() == st[col].astype(str).tolist(), col
    for col in ("voxels", "empty", "touches_border"):
        assert df[col].tolist() == st[col].tolist(), col
    assert np.allclose(df["volume_ml"].to_numpy(), st["volume_ml"].to_numpy())
    boxes = [None if b is None or b is __import__("pandas").NA else tuple(b)
             for b in df["bbox"].tolist()]  # fmt: skip
    assert boxes == st["bbox"].tolist()


def _met(value: float, target: float) -> str:
    return "met" if value <= target else "MISSED"


def report(f: dict, checked: int) -> list[str]:
    """The Markdown of one run; the part the docs quote is the region ``catalog``.

    Args:
        f: The run's figures: ``(wall, cpu)`` medians per step, the dataset's size, the load.
        checked: How many archives' rows were checked equal to ``medmask.stats`` first.
    """
    (tb, cb), (ts, cs) = f["build"], f["stats"]
    (to, co), (tr, cr), (tp, cp), (tu, cu) = f["open"], f["ready"], f["paths"], f["update"]
    head = (
        f"{f['archives']:,} archives x {f['masks']} masks = {f['rows']:,} rows, a "
        f"{f['size_mb']:.2f} MB catalogue; `benchmarks/bench_catalog.py --repeat {f['repeat']}` "
        f"on {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{f['date']}, load average {f['load']:.1f} at the end (other jobs share the machine: "
        "wall times stretch with the load; CPU seconds in brackets are what a step costs an "
        f"idle machine). Medians of {f['repeat']} runs ({f['repeat_build']} for build and "
        "stats), each in a fresh process."
    )
    table = [
        "| step | medmask wall (CPU) | peer wall (CPU) | ratio (CPU) | target |",
        "|---|---:|---:|---:|---|",
        f"| build ({f['workers']} processes) + write | {tb:.1f} s ({cb:.1f} s) | "
        f"medmask.stats, 1 process: {ts:.1f} s ({cs:.1f} s) | {ts / tb:.2f}x ({cs / cb:.2f}x) "
        f"| <= 60 s: wall {_met(tb, 60)}, CPU / {f['workers']} {_met(cb / f['workers'], 60)} |",
        f"| open (+ rows' archives) | {to:.2f} s ({co:.2f} s) | - | - | <= 1 s: {_met(to, 1)} |",
        f"| ready to yield: open + MaskArchiveDataset + first item | {tr:.2f} s ({cr:.2f} s) | "
        f"MaskArchiveDataset(paths): {tp:.1f} s ({cp:.1f} s) | **{tp / tr:.0f}x** "
        f"({cp / cr:.0f}x) | <= 2 s: {_met(tr, 2)} |",
        f"| update, nothing changed (1 process) | {tu:.1f} s ({cu:.1f} s) | build: {tb:.1f} s "
        f"| {tb / tu:.1f}x | - |",
    ]
    checked_text = (
        f"Equal outputs checked first: the catalogue's rows against medmask.stats for {checked} "
        "archives spread over the dataset, and the row counts of both."
    )
    body = "\n".join([head, "", *table, "", checked_text])
    return ["# Catalogue benchmark", "", region("catalog", body)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--archives", type=int, default=10_000, help="archives (default 10,000)")
    ap.add_argument("--masks", type=int, default=117, help="masks per archive (default 117)")
    ap.add_argument("--workers", type=int, default=2, help="processes of the build (default 2)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the quick steps (median)")
    ap.add_argument("--repeat-build", type=int, default=1, help="runs of build and stats")
    ap.add_argument("--data", type=Path, help="keep the archives here (reused if present)")
    ap.add_argument("--out", type=Path, default=Path("bench_output"), help="folder for the .md")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="medmask-bench-catalog-"))
    data = args.data or work / "archives"
    try:
        if not (data.is_dir() and len(list(data.glob("*.mska"))) == args.archives):
            shutil.rmtree(data, ignore_errors=True)
            make_dataset(data, args.archives, args.masks)
        out = work / "catalog.parquet"
        n = args.archives
        subs = {"DATA": str(data), "OUT": str(out), "WORKERS": args.workers, "NARCH": n}
        t_build, c_build, rows = run_step("build", subs, args.repeat_build)
        assert rows == n * args.masks, rows
        check_equal(data, out, min(n, 50))
        t_stats, c_stats, rows_stats = run_step("stats", subs, args.repeat_build)
        assert rows_stats == rows
        t_open, c_open, _ = run_step("open", subs, args.repeat)
        t_ready, c_ready, _ = run_step("ready_catalog", subs, args.repeat)
        t_paths, c_paths, _ = run_step("ready_paths", subs, args.repeat)
        t_update, c_update, _ = run_step("update", subs, args.repeat)
        size = out.stat().st_size
    finally:
        shutil.rmtree(work, ignore_errors=True)  # --data lives elsewhere and stays
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    figs = dict(
        archives=n, masks=args.masks, rows=rows, size_mb=size / 1e6, load=load,
        repeat=args.repeat, repeat_build=args.repeat_build, workers=args.workers,
        date=time.strftime("%Y-%m-%d"),
        build=(t_build, c_build), stats=(t_stats, c_stats), open=(t_open, c_open),
        ready=(t_ready, c_ready), paths=(t_paths, c_paths), update=(t_update, c_update),
    )  # fmt: skip
    lines = report(figs, min(n, 50))
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_catalog.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
