"""The README's code blocks run as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_api_tour_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tour = python_blocks()[0]
    exec(compile(tour, "README.md:tour", "exec"), {})
    assert (tmp_path / "case.mska").exists()


def test_monai_block_runs(tmp_path, monkeypatch, real_case):
    pytest.importorskip("monai")
    from medmask.nifti import folder_to_archive

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s0000").mkdir()
    ct = next(real_case.glob("liver.nii.gz"))
    os.symlink(ct, tmp_path / "s0000" / "ct.nii.gz")  # any image on the case's grid
    folder_to_archive(real_case, "s0000.mska")
    folder_to_archive(real_case, "s0001.mska")
    ns: dict = {}
    exec(compile(python_blocks()[1], "README.md:monai", "exec"), ns)
    assert ns["item"]["label"].shape == ns["item"]["image"].shape
    assert len(ns["ds"]) == 2
