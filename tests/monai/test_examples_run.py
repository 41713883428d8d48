"""examples/train_unet.py and benchmarks/bench_monai.py run (small settings, in-process)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("monai")

REPO = Path(__file__).resolve().parents[2]


def load_script(relpath: str):
    path = REPO / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_unet_on_phantoms(tmp_path, capsys):
    script = load_script("examples/train_unet.py")
    args = ["--cases", "2", "--iterations", "2", "--crop", "32", "32", "16", "--out", str(tmp_path)]
    assert script.main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"step\s+2\s+loss \d+\.\d+", out)
    assert "trained 2 steps" in out
    assert len(list(tmp_path.glob("case_*/labels.mska"))) == 2


@pytest.mark.realdata
def test_train_unet_on_the_organs_of_the_real_case(real_subset, tmp_path, capsys):
    """Fast: the organs the example trains on (links into the real case), small crops."""
    script = load_script("examples/train_unet.py")
    src = real_subset(list(script.REAL_ORGANS))
    args = ["--real", str(src), "--iterations", "1", "--crop", "32", "32", "16"]
    assert script.main([*args, "--workers", "0", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "trained 1 steps" in out and re.search(r"step\s+1\s+loss \d+\.\d+", out)


@pytest.mark.slow
@pytest.mark.realdata
def test_train_unet_on_the_real_case(real_case, tmp_path, capsys):
    script = load_script("examples/train_unet.py")
    assert script.main(["--real", str(real_case), "--iterations", "1", "--out", str(tmp_path)]) == 0
    assert "trained 1 steps" in capsys.readouterr().out


def test_bench_monai_prints_a_table(tmp_path, capsys):
    script = load_script("benchmarks/bench_monai.py")
    assert script.main(["--phantom", "--repeat", "1", "--out", str(tmp_path / "bench")]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert rows[0].startswith("| load | `LoadImaged` on `.nii.gz` | `LoadMaskd` on `.mska` v2")
    assert len(rows) == 1 + 6  # header + 4 loads + 2 DataLoader rows
    assert all(re.search(r"\*\*[\d,.]+x\*\*", r) for r in rows[1:])
    # the table docs/monai.md quotes is the region this run wrote (same layout)
    regions = load_script("benchmarks/_regions.py")
    written = regions.regions((tmp_path / "bench" / "bench_monai.md").read_text())["monai"]
    quoted = regions.regions((REPO / "docs" / "monai.md").read_text())["monai"]
    assert [ln for ln in written.splitlines() if ln.startswith("| load")] == [
        ln for ln in quoted.splitlines() if ln.startswith("| load")
    ]
    assert len(written.splitlines()) == len(quoted.splitlines())
