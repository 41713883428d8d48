"""Short coverage-guided fuzzing run of the readers, and replay of every crasher ever found."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from medmask.errors import CorruptFileError
from reliability.contract import read_everything

FUZZ = Path(__file__).parent


@pytest.mark.parametrize(
    "crasher", sorted((FUZZ.parent / "fixtures" / "crashers").iterdir()), ids=lambda p: p.name
)
def test_crashers_now_raise_corrupt_file_error(crasher):
    with pytest.raises(CorruptFileError):
        read_everything(crasher)


def run_fuzzer(tmp_path: Path, runs: int) -> dict:
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ.parent / "fixtures" / "fuzz_corpus", corpus)
    proc = subprocess.run(
        [
            sys.executable,
            str(FUZZ / "fuzz_readers.py"),
            str(corpus),
            f"-runs={runs}",
            "-timeout=10",
            "-rss_limit_mb=2048",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    cov = [int(m) for m in re.findall(r"cov: (\d+)", proc.stderr)]
    done = re.findall(r"Done (\d+) runs", proc.stderr)
    return {
        "rc": proc.returncode,
        "cov": max(cov, default=0),
        "runs": int(done[-1]) if done else 0,
        "corpus": len(list(corpus.iterdir())),
        "tail": proc.stderr[-3000:],
    }


def test_fuzz_readers_short(tmp_path):
    r = run_fuzzer(tmp_path, runs=3000)
    assert r["rc"] == 0, r["tail"]
    assert r["runs"] == 3000 and r["cov"] > 100
