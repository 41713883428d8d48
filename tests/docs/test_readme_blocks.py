"""The README's code blocks run as written, and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
#: How the README names the sample case (relative to the repository root).
README_CASE = "../shared/data/totalseg_s0000"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def promised_output(block: str) -> list[str]:
    """The ``# ...`` comment lines that directly follow a ``print(...)`` line: its output."""
    out, after_print = [], False
    for line in block.splitlines():
        stripped = line.strip()
        if after_print and stripped.startswith("# "):
            text = stripped[2:]
            out.append(re.split(r"\s{3,}\(", text)[0].rstrip())  # drop a trailing "   (note)"
            after_print = False
            continue
        after_print = stripped.startswith("print(") and "#" not in stripped
    return out


def run_block(block: str, name: str) -> list[str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(block, f"README.md:{name}", "exec"), {})
    return buf.getvalue().splitlines()


def test_api_tour_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tour = python_blocks()[0]
    printed = run_block(tour, "tour")
    assert (tmp_path / "case.mska").exists()
    assert printed[0] == "['liver', 'spleen'] 2 True"
    assert printed[1] == "40000 (10, 30, 20, 60, 20, 70)"


@pytest.mark.realdata
def test_monai_block_runs_on_the_sample_case(tmp_path, monkeypatch, real_case):
    pytest.importorskip("monai")
    monkeypatch.chdir(tmp_path)
    block = python_blocks()[1]
    assert README_CASE in block
    block = block.replace(README_CASE, str(real_case))
    printed = run_block(block, "monai")
    promised = promised_output(block)
    assert len(promised) == 3 and printed == promised
    assert "{'colon': 59305" in printed[1]  # non-empty: real organs came through
