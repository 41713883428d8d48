"""No leaks in training: a 2-worker DataLoader over MaskArchiveDataset for thousands of
items, over more archives than each worker keeps open, two epochs with new workers each:
open descriptors and memory stay flat (psutil), and this process gets every descriptor
back. (tests/reliability/test_campaign.py runs a single epoch with persistent workers.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from medmask import MaskArchive
from reliability import workload as W


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    d = tmp_path_factory.mktemp("leak")
    paths = []
    for c in range(12):
        p = d / f"case{c}.mska"
        with MaskArchive(p, "w", codec="zstd" if c % 4 == 3 else None) as ar:
            for k in range(40):
                ar.add_segmask(W.mask(k + c), f"m{k + c}")
        paths.append(p)
    return paths


def _leak_run_in_fresh_process(archives) -> dict:
    """``W.leak_run`` in a new interpreter: this process's descriptor counts then describe the
    DataLoader run alone, not background threads of other tests sharing a pytest worker."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); "
        "from reliability import workload as W; "
        "r = W.leak_run(sys.argv[2:], items=1500, workers=2, epochs=2, max_open=4); "
        "print(json.dumps(r, default=str))"
    )
    tests = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", code, tests, *map(str, archives)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_dataloader_workers_keep_files_and_memory_flat(archives):
    pytest.importorskip("torch")
    r = _leak_run_in_fresh_process(archives)
    assert r["items"] == 3000, r
    # per worker: never more archives open than max_open (the LRU closes the others; the
    # next one is opened just before the least recently used is dropped: + 1)
    assert 1 <= r["worker_archive_fds_max"] <= r["max_open"] + 1, r
    # all descriptors (archives + torch's pipes and shared-memory sockets, which vary
    # from batch to batch): no growth from the first epoch to the end of the second
    assert r["worker_fds_end"] <= r["worker_fds_start"] + 16, r
    assert r["worker_rss_end"] - r["worker_rss_start"] < 48 << 20, r
    assert r["own_rss_end"] - r["own_rss_start"] < 48 << 20, r
    assert r["workers_left"] == 0, r
    assert r["own_fds_after"] <= r["own_fds_before"] + 1, r
    assert r["own_archive_fds_after"] == 0, r
