"""``benchmarks/bench_window.py`` measures what it claims: on the real case its readers (the
real ``read_window`` as a label map, a stack and one organ, and the 0.4 API it is compared
with) are checked equal to nnU-Net's label window / the organ's mask before anything is timed,
and the table it writes names both targets."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.realdata
def test_bench_window_checks_every_reader_then_reports(real_case, tmp_path):
    pytest.importorskip("nnunetv2")
    pytest.importorskip("blosc2")
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(
            "bench_window", REPO / "benchmarks" / "bench_window.py"
        )
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
        code = bench.main(
            [
                "--real",
                str(real_case),
                "--windows",
                "4",
                "--repeat",
                "1",
                "--check",
                "4",
                "--out",
                str(tmp_path),
            ]
        )
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    assert code == 0
    text = (tmp_path / "bench_window.md").read_text()
    assert "read_window" in text and "Targets (issue 18)" in text
    assert "<!-- bench:window -->" in text  # the region docs/benchmarks.md quotes
