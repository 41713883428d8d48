"""Coverage-guided fuzzer (atheris/libFuzzer) for the medmask readers.

Any input must either read (every mask) or raise ``CorruptFileError``; anything else
(another exception, a hang, a crash) is a finding. Short run (in the test suite)::

    .venv/bin/python tests/reliability/fuzz_readers.py tests/fixtures/fuzz_corpus -runs=2000

Long run (manual; findings land in ./crash-*; copy them to tests/fixtures/crashers/)::

    .venv/bin/python tests/reliability/fuzz_readers.py tests/fixtures/fuzz_corpus -max_total_time=3600 -timeout=10 -rss_limit_mb=1024

``--make-corpus DIR`` writes seed files (one of each kind and version) into DIR.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

import atheris  # noqa: E402

with atheris.instrument_imports():
    import medmask  # noqa: F401
    import medmask.codecs  # noqa: F401
    import medmask.format  # noqa: F401
    import medmask.format.v1  # noqa: F401
    import medmask.format.v2  # noqa: F401
    import medmask.storage  # noqa: F401
    from medmask.errors import CorruptFileError, ForeignFileError

from reliability.contract import read_everything  # noqa: E402

_TMP = Path(tempfile.mkdtemp(prefix="medmask-fuzz-"))


def check_input(data: bytes) -> None:
    """Read ``data`` as a .msk or .mska (by its magic); raise on any non-corrupt-file error."""
    suffix = ".mska" if data[:4] == b"MSKA" else ".msk"
    path = _TMP / f"input{suffix}"
    path.write_bytes(data)
    with contextlib.suppress(CorruptFileError, ForeignFileError):
        read_everything(path)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--make-corpus":
        out = Path(sys.argv[2])
        out.mkdir(parents=True, exist_ok=True)
        from reliability.samples import build_samples

        for name, sample in build_samples().items():
            (out / name).write_bytes(sample.data)
        return
    atheris.Setup(sys.argv, check_input)
    atheris.Fuzz()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
