"""docs/datasets.md: its code blocks run as written and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from test_readme_blocks import promised_output  # the same convention as the README

DOC = Path(__file__).resolve().parents[2] / "docs" / "datasets.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_every_block_prints_what_it_promises():
    blocks = python_blocks()
    assert len(blocks) == 4
    namespace: dict = {}  # later blocks use names of earlier ones, as a reader would
    for k, block in enumerate(blocks):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(block, f"datasets.md:block{k}", "exec"), namespace)
        printed = buf.getvalue().splitlines()
        promised = promised_output(block)
        assert promised and printed == promised, f"block {k}"
