"""docs/datasets.md: its code blocks run as written and print what their comments say.

The blocks run in order in one namespace (later blocks use names of earlier ones, as a
reader would), in a temporary folder. The worked example reads the real TotalSegmentator
case under the name the docs give it (``../shared/data/totalseg_s0000``, from the
repository's root: the README's convention); the test substitutes where the tests find it
(the ``real_case`` fixture, ``MEDMASK_REAL_CASE``) and skips from that block on when it
is absent.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
from test_readme_blocks import README_CASE, promised_output  # the README's conventions

DOC = Path(__file__).resolve().parents[2] / "docs" / "datasets.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_every_block_prints_what_it_promises(tmp_path, monkeypatch, request):
    pytest.importorskip("pandas")
    pytest.importorskip("monai")
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks()
    assert len(blocks) == 8
    assert sum(README_CASE in b for b in blocks) == 1
    assert sum(bool(promised_output(b)) for b in blocks) == 7  # one block only writes files
    namespace: dict = {}
    for k, block in enumerate(blocks):
        if README_CASE in block:  # skips here when the sample case is absent
            block = block.replace(README_CASE, str(request.getfixturevalue("real_case")))
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(block, f"datasets.md:block{k}", "exec"), namespace)
        printed = buf.getvalue().splitlines()
        promised = promised_output(block)
        assert printed == promised, f"block {k}"
