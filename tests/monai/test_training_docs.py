"""docs/training.md's code runs as written (on phantom cases laid out as its commands make
them) and prints what its comments say; examples/train_patches.py trains a few steps."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")
pytest.importorskip("blosc2")

from medmask.cli import main as medmask  # noqa: E402
from medmask.phantoms import write_phantom_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "training.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def promised(block: str) -> list[str]:
    lines = block.splitlines()
    return [
        nxt.strip()[2:]
        for line, nxt in zip(lines, lines[1:])
        if line.strip().startswith("print(") and nxt.strip().startswith("# ")
    ]


def test_the_training_doc_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_phantom_dataset("raw", n_cases=2, shape_zyx=(40, 80, 80))
    commands = [
        line.split("#")[0].split()
        for block in blocks("bash")
        for line in block.splitlines()
        if line.startswith("medmask ")
    ]
    assert [c[1] for c in commands] == ["pack-tree", "convert-images", "convert-images"]
    for cmd in commands:
        assert medmask(["-q", *(a.strip("'") for a in cmd[1:])]) == 0, cmd
    assert Path("labels/case_0000.mska").exists()
    assert Path("images/case_0000/ct.b2nd").exists() and Path("images/case_0000/ct.nii").exists()
    python = [b for b in blocks("python") if "print(" in b]
    assert len(python) == 2
    for block in python:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, "docs/training.md", "exec"), {})
        assert out.getvalue().splitlines() == promised(block)


def test_train_patches_example_on_phantoms(tmp_path, capsys):
    path = REPO / "examples" / "train_patches.py"
    spec = importlib.util.spec_from_file_location("train_patches", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = [
        "--cases",
        "2",
        "--iterations",
        "3",
        "--patch",
        "16",
        "32",
        "32",
        "--out",
        str(tmp_path),
    ]
    assert script.main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"step\s+3\s+loss \d+\.\d+", out) and "trained 3 steps" in out
    assert len(list((tmp_path / "labels").glob("*.mska"))) == 2
    assert len(list((tmp_path / "images").glob("*/ct.b2nd"))) == 2
