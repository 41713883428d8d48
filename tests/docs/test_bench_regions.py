"""The figures of README.md and docs/ come from the benchmarks (docs/testing.md, "Guard tests"):
every table of measurements sits in a ``<!-- bench:NAME -->`` region that a benchmark writes
into ``bench_output/`` and ``benchmarks/update_docs.py`` (``make bench-all``) copies in; no
speed-up or size ratio is quoted in prose outside such a region."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
_regions = importlib.import_module("_regions")
update_docs = importlib.import_module("update_docs")

#: A table cell that is a measurement: a time, a size in k/M/GiB, or a ratio.
FIGURE_CELL = re.compile(r"^\**[\d][\d,.]*( (ms|s|µs|kB|MB|KiB|MiB|GiB)|x)\**$")
#: A speed or size claim in prose.
PROSE_CLAIM = re.compile(
    r"\b\d[\d.,]*(x|%) (faster|smaller|slower|larger|the size)\b"
    # a measured figure: a ratio, time or size with decimals (1.72x, 0.406 ms, 54.5 kB)
    r"|(?<![\w.])\d+\.\d+ ?(x|×|ms|µs|s|B|kB|MB|GB|KiB|MiB|GiB)(?!\w)"
)
#: Words that make a figure a goal, not a measurement ("target: 0.6x", "<= 2x").
TARGET = re.compile(r"(target|<=|≤|within|at most)[^.;]{0,12}$")
#: What a failing check tells the author of a page.
FIX = (
    "Make a benchmark print it between <!-- bench:NAME --> and <!-- /bench:NAME --> "
    "(benchmarks/_regions.py: region(), begin()/end()) in its bench_output/*.md, put the same "
    "two markers in the page, run the benchmark (make bench-all runs them all) and "
    "benchmarks/update_docs.py, which copies the region in; or say it without the figure "
    "(docs/testing.md, 'Rules')."
)


def docs() -> list[Path]:
    return update_docs.doc_files(REPO)


def _outside(text: str) -> str:
    """``text`` without its bench regions and fenced code blocks (blanked, lines kept)."""
    blank = list(text)
    spans = [(a, b) for a, b, _ in _regions.spans(text)]
    spans += [(m.start(), m.end()) for m in re.finditer(r"```.*?```", text, flags=re.S)]
    for a, b in spans:
        for i in range(a, b):
            if blank[i] != "\n":
                blank[i] = " "
    return "".join(blank)


def figure_tables(text: str) -> list[tuple[int, str]]:
    """``(line number, first row)`` of the Markdown tables of ``text`` with a measurement."""
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        if not lines[i].startswith("|"):
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].startswith("|"):
            j += 1
        cells = [c.strip().strip("`") for ln in lines[i:j] for c in ln.strip("|").split("|")]
        if any(FIGURE_CELL.match(c) for c in cells):
            out.append((i + 1, lines[i]))
        i = j
    return out


def prose_claims(text: str) -> list[tuple[int, str]]:
    """``(line number, figure)`` of the measured figures quoted in the prose of ``text``."""
    return [
        (text[: m.start()].count("\n") + 1, m.group(0))
        for m in PROSE_CLAIM.finditer(text)
        if not TARGET.search(text[max(0, m.start() - 40) : m.start()])
    ]


def test_the_prose_scanner_finds_figures_not_targets():
    text = (
        "Reads are 3.5x faster, the index 39% smaller.\nA window takes 0.406 ms (1.72x of "
        "blosc2); the file is 54.5 kB.\nTargets: <= 2x, target: 0.6x; readable by 0.1.x; "
        "a 5 s backoff, 64 KiB blocks.\n"
    )
    assert prose_claims(text) == [
        (1, "3.5x faster"),
        (1, "39% smaller"),
        (2, "0.406 ms"),
        (2, "1.72x"),
        (2, "54.5 kB"),
    ]


def test_the_table_scanner_finds_measurements():
    text = "a\n\n| what | time |\n|---|---:|\n| read | 24.5 ms |\n\n| field | type |\n|---|---|\n| magic | 4s |\n"
    assert figure_tables(text) == [(3, "| what | time |")]
    assert figure_tables(_outside(f"{_regions.region('x', text)}\n")) == []


@pytest.mark.parametrize("doc", docs(), ids=lambda p: p.name)
def test_every_table_of_measurements_is_written_by_a_benchmark(doc):
    text = doc.read_text(encoding="utf-8")
    _regions.regions(text)  # well-formed: every region closed, no name twice
    loose = figure_tables(_outside(text))
    assert loose == [], (
        f"{doc.name}: tables of figures outside a benchmark's region (line, first row): "
        f"{loose}. {FIX}"
    )
    claims = prose_claims(_outside(text))
    assert claims == [], (
        f"{doc.name}: figures quoted in prose outside a benchmark's region (line, figure): "
        f"{claims}. {FIX}"
    )


def _written_by_benchmarks() -> dict[str, list[str]]:
    """``{region name: benchmark scripts naming it}`` (a string literal in the script)."""
    out: dict[str, list[str]] = {}
    for script in sorted(BENCHMARKS.glob("*.py")):
        if script.name.startswith("_") or script.name == "update_docs.py":
            continue
        for name in re.findall(r"[\"']([\w.-]+)[\"']", script.read_text(encoding="utf-8")):
            out.setdefault(name, []).append(script.name)
    return out


def test_a_benchmark_writes_every_region_the_docs_hold():
    written = _written_by_benchmarks()
    names = {n: doc.name for doc in docs() for n in _regions.regions(doc.read_text("utf-8"))}
    assert names, "no bench region in README.md or docs/"
    orphans = {n: d for n, d in names.items() if n not in written}
    assert orphans == {}, f"regions no benchmark writes: {orphans}"
    # and make bench-all runs those benchmarks, then copies their regions
    make = (REPO / "Makefile").read_text(encoding="utf-8")
    target = make[make.index("\nbench-all:") :].split("\n\n")[0]
    for name in names:
        if name == "reliability":  # make reliability ARGS=--write-docs
            continue
        assert any(f"benchmarks/{s}" in target for s in written[name]), (name, written[name])
    assert target.rstrip().endswith("benchmarks/update_docs.py")


def test_update_docs_copies_regions_and_reports_stale_ones(tmp_path, capsys):
    repo, out = tmp_path / "repo", tmp_path / "bench_output"
    (repo / "docs" / "img").mkdir(parents=True)
    out.mkdir()
    region = _regions.region
    (repo / "README.md").write_text(f"# x\n\n{region('t1', '| a | 1 ms |')}\n\ntext\n")
    (repo / "docs" / "p.md").write_text(f"{region('t2', 'old')}\n{region('gone', 'kept')}\n")
    (out / "b.md").write_text(f"head\n{region('t1', '| a | 2 ms |')}\n{region('t2', 'new')}\n")
    (out / "reliability.md").write_text(region("t2", "not copied") + "\n")
    (out / "bench_format_big.png").write_bytes(b"png")
    argv = ["--bench-output", str(out), "--repo", str(repo)]
    assert update_docs.main([*argv, "--check"]) == 1
    assert update_docs.main(argv) == 0
    assert "| a | 2 ms |" in (repo / "README.md").read_text()
    assert (repo / "README.md").read_text().endswith("\n\ntext\n")
    page = (repo / "docs" / "p.md").read_text()
    assert region("t2", "new") in page and region("gone", "kept") in page
    assert (repo / "docs" / "img" / "bench_big.png").read_bytes() == b"png"
    assert "docs/p.md: gone" in capsys.readouterr().err  # no benchmark wrote it: said so
    (repo / "docs" / "p.md").write_text(f"{region('t2', 'new')}\n")
    assert update_docs.main([*argv, "--check"]) == 0  # now current
    (out / "c.md").write_text(region("t1", "| a | 3 ms |") + "\n")
    with pytest.raises(SystemExit, match="t1"):  # two outputs for one region
        update_docs.collect(out)


def test_regions_refuse_broken_markers():
    with pytest.raises(ValueError, match="x"):
        _regions.regions("<!-- bench:x -->\nno end\n")
    with pytest.raises(ValueError, match="twice"):
        _regions.regions(_regions.region("x", "a") + "\n" + _regions.region("x", "b"))
    with pytest.raises(ValueError):
        _regions.region("bad name", "a")
