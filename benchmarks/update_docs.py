"""Copy the benchmarks' tables from ``bench_output/`` into README.md and docs/*.md.

Every ``<!-- bench:NAME -->`` region of the documentation takes the content of the region of
the same name in a benchmark's Markdown output (see ``benchmarks/_regions.py``); the charts
the pages show are copied from ``bench_output/`` into ``docs/img/``. ``make bench-all`` runs
every benchmark and then this script. ``docs/reliability.md`` is not touched here: it is
written by ``make reliability ARGS=--write-docs``.

    .venv/bin/python benchmarks/update_docs.py            # update from bench_output/
    .venv/bin/python benchmarks/update_docs.py --check    # exit 1 if a region is stale
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _regions import regions, replace  # noqa: E402

#: Outputs whose regions are not copied, and pages not updated here: written by their own
#: tool on request (``make reliability ARGS=--write-docs``).
NOT_COPIED = {"reliability.md"}
#: ``bench_output/<chart>`` -> ``docs/img/<name>``: the charts the pages show.
CHARTS = {
    "bench_format_real_case_totalseg_s0000.png": "bench_real_case.png",
    "bench_format_synthetic_1000.png": "bench_synthetic_1000.png",
    "bench_format_big.png": "bench_big.png",
    "bench_format_match.png": "bench_match.png",
}


def doc_files(repo: Path) -> list[Path]:
    """README.md and the pages of docs/."""
    return [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]


def collect(bench_output: Path) -> dict[str, str]:
    """``{region: content}`` from every Markdown file below ``bench_output``.

    Raises:
        SystemExit: Two outputs write a region of the same name.
    """
    found: dict[str, tuple[str, Path]] = {}
    for path in sorted(bench_output.rglob("*.md")):
        if path.name in NOT_COPIED:
            continue
        for name, content in regions(path.read_text(encoding="utf-8")).items():
            if name in found and found[name][0] != content:
                raise SystemExit(f"region {name!r} is written by {found[name][1]} and {path}")
            found[name] = (content, path)
    return {name: content for name, (content, _) in found.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--bench-output", type=Path, default=REPO / "bench_output")
    ap.add_argument("--repo", type=Path, default=REPO, help="where README.md and docs/ are")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    args = ap.parse_args(argv)
    sources = collect(args.bench_output) if args.bench_output.is_dir() else {}
    stale, unsourced = [], []
    for doc in doc_files(args.repo):
        if doc.name in NOT_COPIED:
            continue
        text = doc.read_text(encoding="utf-8")
        new, changed, missing = replace(text, sources)
        rel = doc.relative_to(args.repo)
        unsourced += [f"{rel}: {name}" for name in missing]
        if changed:
            stale += [f"{rel}: {name}" for name in changed]
            if not args.check:
                doc.write_text(new, encoding="utf-8")
                print(f"updated {rel}: {', '.join(changed)}")
    for chart, name in CHARTS.items():
        src, dst = args.bench_output / chart, args.repo / "docs" / "img" / name
        if src.is_file() and (not dst.is_file() or dst.read_bytes() != src.read_bytes()):
            stale.append(f"docs/img/{name}")
            if not args.check:
                shutil.copyfile(src, dst)
                print(f"updated docs/img/{name}")
    if unsourced:
        print(
            "regions with no benchmark output in "
            f"{args.bench_output} (left as they are; run that benchmark):\n  "
            + "\n  ".join(unsourced),
            file=sys.stderr,
        )
    if args.check and (stale or unsourced):
        print("stale:\n  " + "\n  ".join(stale or ["(none)"]), file=sys.stderr)
        return 1
    if not stale:
        print("the documentation's figures are those of bench_output/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
