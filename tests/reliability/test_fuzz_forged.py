"""Short run of the checksum-forging fuzzer (tests/reliability/fuzz_forged.py), and every
crasher ever found replayed through it. The plain fuzzer runs in tests/reliability/test_fuzz_readers.py;
the long runs are documented in docs/reliability.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reliability import fuzzrun

FUZZ = Path(__file__).parent
HARNESS = FUZZ / "fuzz_forged.py"


def run_forged_fuzzer(workdir: Path, *args: str, timeout: float = 600) -> dict:
    pytest.importorskip("atheris")
    return fuzzrun.run("fuzz_forged.py", workdir, *args, timeout=timeout)


def test_forged_fuzzer_short(tmp_path):
    r = run_forged_fuzzer(tmp_path, "-runs=4000", "-seed=7")
    assert r["rc"] == 0 and not r["findings"], r["tail"]
    assert r["runs"] == 4000 and r["cov"] > 300, r


@pytest.mark.slow
def test_forged_fuzzer_long(tmp_path):
    r = run_forged_fuzzer(tmp_path, "-max_total_time=300", "-seed=11", timeout=900)
    assert r["rc"] == 0 and not r["findings"], r["tail"]


def test_crashers_replay_through_the_forging_harness():
    """Each crasher, as it is and with its checksums forged, must read or raise
    CorruptFileError (the harness raises anything else)."""
    files = sorted(p for p in (FUZZ.parent / "fixtures" / "crashers").iterdir() if p.is_file())
    inputs = [bytes([mode]) + p.read_bytes() for p in files for mode in (0, 1)]
    proc = subprocess.run(
        [sys.executable, "-c", _REPLAY], input=b"".join(len(i).to_bytes(8, "little") + i for i in inputs),
        capture_output=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert proc.stdout.decode().split() == ["ok"] * len(inputs)


_REPLAY = f"""
import sys
sys.path.insert(0, {str(FUZZ)!r})
import fuzz_forged
raw = sys.stdin.buffer.read()
pos = 0
while pos < len(raw):
    n = int.from_bytes(raw[pos : pos + 8], "little")
    fuzz_forged.test_one_input(raw[pos + 8 : pos + 8 + n])
    pos += 8 + n
    print("ok")
"""
