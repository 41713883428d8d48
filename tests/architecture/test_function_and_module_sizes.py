"""No function over 80 lines and no module over 600 lines in medmask/ and medmask_monai/:
long jobs are split into named steps (as nibabel lists its ``_chk_*`` functions)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 600


def offenders(root: Path = REPO) -> set[str]:
    """``path`` (modules over the limit) and ``path:function`` (functions over it)."""
    found = set()
    for package in ("medmask", "medmask_monai"):
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text()
            rel = path.relative_to(root).as_posix()
            if len(text.splitlines()) > MAX_MODULE_LINES:
                found.add(rel)
            for node in ast.walk(ast.parse(text)):
                is_function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                if is_function and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                    found.add(f"{rel}:{node.name}")
    return found


def test_the_check_finds_a_long_function(tmp_path):
    body = "\n".join(f"    x{k} = {k}" for k in range(MAX_FUNCTION_LINES))
    (tmp_path / "medmask").mkdir()
    (tmp_path / "medmask_monai").mkdir()
    (tmp_path / "medmask" / "m.py").write_text(f"def long():\n{body}\n\n\ndef short():\n    pass\n")
    assert offenders(tmp_path) == {"medmask/m.py:long"}
    (tmp_path / "medmask" / "big.py").write_text("x = 1\n" * (MAX_MODULE_LINES + 1))
    assert "medmask/big.py" in offenders(tmp_path)


def test_no_long_functions_or_modules():
    found = sorted(offenders())
    assert not found, (
        f"over {MAX_FUNCTION_LINES} lines (functions) or {MAX_MODULE_LINES} (modules): {found}"
    )
