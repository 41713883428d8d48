"""Run a libFuzzer/atheris harness in a subprocess and read its figures."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parent


def run(
    harness: str, workdir: Path, *args: str, seeds: Path | None = None, timeout: float = 900
) -> dict:
    """Run ``tests/reliability/<harness>`` on a corpus in ``workdir`` (copied from ``seeds``, or made
    with the harness's ``--make-corpus``). Returns runs, seconds, coverage (``cov``: edges,
    ``ft``: features), corpus size and findings (``crash-*``, ``timeout-*`` ... files)."""
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "corpus"
    if not corpus.exists():
        if seeds is not None:
            shutil.copytree(seeds, corpus)
        else:
            subprocess.run(
                [sys.executable, str(FUZZ / harness), "--make-corpus", str(corpus)],
                check=True,
                capture_output=True,
            )
    seeds_n = len(list(corpus.iterdir()))
    proc = subprocess.run(
        [sys.executable, str(FUZZ / harness), str(corpus), "-timeout=10", "-rss_limit_mb=3072",
         f"-artifact_prefix={workdir}/", *args],
        capture_output=True, text=True, timeout=timeout, cwd=workdir,
    )  # fmt: skip
    err = proc.stderr
    done = re.findall(r"Done (\d+) runs in (\d+) second", err)
    return {
        "harness": harness,
        "rc": proc.returncode,
        "runs": int(done[-1][0]) if done else 0,
        "seconds": int(done[-1][1]) if done else 0,
        "cov": max((int(c) for c in re.findall(r"cov: (\d+)", err)), default=0),
        "ft": max((int(c) for c in re.findall(r"ft: (\d+)", err)), default=0),
        "seeds": seeds_n,
        "corpus": len(list(corpus.iterdir())),
        "findings": sorted(
            p.name
            for p in workdir.iterdir()
            if p.name.split("-")[0] in ("crash", "timeout", "oom", "leak", "slow")
        ),
        "tail": err[-4000:],
    }
