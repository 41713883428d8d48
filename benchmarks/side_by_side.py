"""``make bench`` of two releases side by side, in one run: is this tree slower than a reference?

Each round runs ``benchmarks/bench_format.py`` twice, once from a checkout of the reference
commit (its own code and its own copy of the benchmark) and once from this tree, in turns
(the order alternates between rounds so that neither side always runs on a warmer machine).
Each run writes ``--json``; this script collects medmask's rows (the version-1 and version-2
columns of every dataset and the 10,000-mask archive), takes the median of each figure over the
rounds, and prints one table: before, after, after/before, and whether the difference is
within the noise of the run. The noise of a figure is the larger of the two sides' spreads
between rounds (max/min - 1), and at least ``--floor`` (default 10%): a row is called slower or
faster only when the ratio leaves that band.

Usage::

    .venv/bin/python benchmarks/side_by_side.py                  # or: make bench-compare
    .venv/bin/python benchmarks/side_by_side.py --ref <commit> --rounds 3 --repeat 5

The reference defaults to the commit of medmask 0.4.0 (format 2.2). Writes
``bench_output/side_by_side.md`` and ``side_by_side.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _regions import region  # noqa: E402

REAL_CASE = ROOT.parent / "shared" / "data" / "totalseg_s0000"
# medmask 0.4.0 as it stood on main before the 0.5 work (format 2.2)
DEFAULT_REF = "0c8a49a"
MEDMASK_COLUMNS = ("v1 (0.1.x zstd)", "v2 (bitzstd)")
TIMES = ("pack", "read_all", "read_one", "open")
BIG_TIMES = ("open", "open_read", "append", "build")


def export_tree(ref: str, dest: Path) -> Path:
    """Write the files of ``ref`` (the packages and the benchmarks) into ``dest``.

    Args:
        ref: a commit, tag or branch of this repository.
        dest: an empty folder.

    Returns:
        ``dest``, now holding ``medmask/``, ``medmask_monai/`` and ``benchmarks/`` of ``ref``.

    Raises:
        subprocess.CalledProcessError: ``ref`` is not in this repository (a shallow clone may
            lack it: fetch it, or pass ``--ref``).
    """
    blob = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "medmask", "benchmarks"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def run_once(tree: Path, args: argparse.Namespace, json_path: Path) -> dict:
    """Run ``tree``'s own ``bench_format.py`` with ``tree``'s medmask first on the path."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [
        sys.executable,
        str(tree / "benchmarks" / "bench_format.py"),
        "--repeat", str(args.repeat),
        "--synthetic", str(args.synthetic),
        "--big", str(args.big),
        "--real", str(args.real),
        "--no-match",
        "--json", str(json_path),
        "--out", str(json_path.parent / (json_path.stem + "_md")),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, env=env, cwd=tree, stdout=subprocess.DEVNULL)
    return json.loads(json_path.read_text())


def figures(report: dict) -> dict[str, float]:
    """medmask's timings in one bench_format report, keyed by ``dataset / column / metric``."""
    out: dict[str, float] = {}
    for d in report.get("datasets", []):
        for col in MEDMASK_COLUMNS:
            res = d["results"].get(col, {})
            for key in TIMES:
                if isinstance(res.get(key), int | float):
                    out[f"{d['title']} / {col} / {key}"] = float(res[key])
            if isinstance(res.get("size"), int | float):
                out[f"{d['title']} / {col} / size (bytes)"] = float(res["size"])
    big = report.get("big") or {}
    for v in ("v1", "v2"):
        for key in BIG_TIMES:
            if isinstance(big.get(f"{v}_{key}"), int | float):
                out[f"{big['masks']:,}-mask archive / {v} / {key}"] = float(big[f"{v}_{key}"])
    return out


def compare(before: list[dict[str, float]], after: list[dict[str, float]], floor: float) -> list:
    """One row per figure both sides measured: (name, before, after, ratio, noise, verdict)."""
    rows = []
    for name in sorted(set(before[0]) & set(after[0]), key=list(after[0]).index):
        b = [r[name] for r in before if name in r]
        a = [r[name] for r in after if name in r]
        mb, ma = statistics.median(b), statistics.median(a)
        spread = max((max(x) / min(x) - 1.0) if min(x) > 0 else 0.0 for x in (a, b))
        noise = max(floor, spread)
        ratio = ma / mb if mb else float("nan")
        if name.endswith("size (bytes)"):
            verdict = "same" if ma == mb else ("larger" if ma > mb else "smaller")
        elif ratio > 1 + noise:
            verdict = "slower"
        elif ratio < 1 / (1 + noise):
            verdict = "faster"
        else:
            verdict = "within noise"
        rows.append((name, mb, ma, ratio, noise, verdict))
    return rows


def _fmt(name: str, v: float) -> str:
    if name.endswith("size (bytes)"):
        return f"{v:,.0f}"
    return f"{v * 1e3:.2f} ms" if v < 1 else f"{v:.2f} s"


def render(rows: list, ref: str, args: argparse.Namespace) -> str:
    """The Markdown page: a title and the ``side-by-side`` region (what docs/ quotes)."""
    lines = [
        f"`benchmarks/side_by_side.py --ref {ref} --rounds {args.rounds} --repeat {args.repeat}`: "
        f"{args.rounds} rounds, each running both trees' `bench_format.py` in turns; medians over "
        f"rounds of per-run medians. Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average before the run "
        f"{args.load_before}.",
        "",
        "| figure | before | after | after/before | noise | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for name, b, a, ratio, noise, verdict in rows:
        lines.append(
            f"| {name} | {_fmt(name, b)} | {_fmt(name, a)} | {ratio:.2f} | ±{noise:.0%} | {verdict} |"
        )
    slower = [r[0] for r in rows if r[5] == "slower"]
    lines += [
        "",
        f"{len(rows)} figures; slower beyond noise: {', '.join(slower) if slower else 'none'}.",
    ]
    title = f"# medmask side by side: this tree against {ref}\n\n"
    return title + region("side-by-side", "\n".join(lines)) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ref", default=DEFAULT_REF, help="the reference commit (default: 0.4.0)")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each side (alternating)")
    ap.add_argument("--repeat", type=int, default=5, help="bench_format.py --repeat")
    ap.add_argument("--synthetic", type=int, default=1000, help="bench_format.py --synthetic")
    ap.add_argument("--big", type=int, default=10_000, help="bench_format.py --big")
    ap.add_argument("--real", type=Path, default=REAL_CASE, help="folder of the real case")
    ap.add_argument("--floor", type=float, default=0.10, help="smallest noise band (0.10 = 10%%)")
    ap.add_argument("--out", type=Path, default=Path("bench_output"), help="output folder")
    ap.add_argument("--from-json", type=Path, help="render side_by_side.json of a past run")
    args = ap.parse_args(argv)
    args.load_before = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.from_json:  # render a past run again (its figures, this script's page)
        past = json.loads(args.from_json.read_text())
        args.ref, args.load_before = past["ref"], past.get("load_before", "not recorded")
        runs = past["runs"]
        return _write(compare(runs["before"], runs["after"], args.floor), runs, args)
    with tempfile.TemporaryDirectory(prefix="medmask-side-") as tmp:
        work = Path(tmp)
        old = export_tree(args.ref, work / "before")
        trees = {"before": old, "after": ROOT}
        runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        for k in range(args.rounds):
            order = ("before", "after") if k % 2 == 0 else ("after", "before")
            for side in order:
                print(f"round {k + 1}/{args.rounds}: {side}", file=sys.stderr, flush=True)
                report = run_once(trees[side], args, work / f"{side}_{k}.json")
                runs[side].append(figures(report))
    return _write(compare(runs["before"], runs["after"], args.floor), runs, args)


def _write(rows: list, runs: dict, args: argparse.Namespace) -> int:
    """Print the page and write it, with the run's figures, into ``args.out``."""
    text = render(rows, args.ref, args)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "side_by_side.md").write_text(text)
    keep = {"ref": args.ref, "load_before": args.load_before, "runs": runs}
    (args.out / "side_by_side.json").write_text(json.dumps(keep, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
