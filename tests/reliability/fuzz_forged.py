"""Coverage-guided fuzzer (atheris/libFuzzer) for the readers, past the checksums.

A random bit flip in a version-2 file almost always just fails a CRC, so a plain
fuzzer (``fuzz_readers.py``) spends its time in the checksum checks. Here the first
input byte is a mode: when its low bit is set, every checksum the file can be checked
against (header, preamble, commit slots, meta, blob, space and newest index section) is
recomputed before reading, so the mutations reach the validation of the header fields,
the JSON and the index rows. The rest of the input is the file; its magic picks
``.msk`` or ``.mska``.

Every input must read (through every public read path) or raise ``CorruptFileError``;
another exception, a hang (``-timeout``), or an allocation beyond the address-space cap
(``MemoryError``) is a finding, written by libFuzzer as ``crash-*``/``timeout-*``.

Short run (the test suite does this)::

    .venv/bin/python tests/reliability/fuzz_forged.py -runs=3000 -seed=1 CORPUS_DIR

Long run (manual; copy the findings into tests/fixtures/crashers/ after fixing them)::

    mkdir -p /tmp/forged && .venv/bin/python tests/reliability/fuzz_forged.py --make-corpus /tmp/forged
    .venv/bin/python tests/reliability/fuzz_forged.py /tmp/forged -max_total_time=3600 -timeout=10 \\
        -rss_limit_mb=3072 -artifact_prefix=/tmp/forged-

``--make-corpus DIR`` writes the seeds (every sample file, forged and not).
``--replay FILE...`` runs inputs once without the fuzzer (for debugging a finding).
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Address-space cap: an input that makes a reader allocate beyond the declared limits
#: fails with MemoryError, which the fuzzer reports.
ADDRESS_SPACE_CAP = 3 << 30

_DIR = Path(
    tempfile.mkdtemp(
        prefix="medmask-fuzz-forged-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
)


def _imports():
    import atheris

    with atheris.instrument_imports(include=["medmask"]):
        import medmask  # noqa: F401
        import medmask.codecs  # noqa: F401
        import medmask.format  # noqa: F401
        import medmask.format.base  # noqa: F401
        import medmask.format.v1  # noqa: F401
        import medmask.format.v2  # noqa: F401
        import medmask.mapping  # noqa: F401
        import medmask.spaces  # noqa: F401
        import medmask.storage  # noqa: F401
    return atheris


def read_all(path: Path) -> None:
    """Every public read path; only CorruptFileError (ForeignFileError at open) may escape."""
    import numpy as np

    from medmask import MaskArchive, MaskFile, load_mask
    from medmask.errors import CorruptFileError, ForeignFileError

    try:
        if path.suffix == ".msk":
            m = load_mask(path)
            crop, box, mapping, space = MaskFile(path).read_cropped()
            if box is not None:
                z0, z1, y0, y1, x0, x1 = box
                assert np.array_equal(m.data[z0:z1, y0:y1, x0:x1], crop)
            return
        with MaskArchive(path) as ar:
            for i, name in enumerate(ar.all_names()):
                try:
                    ar.info(name)
                    full = ar[i]
                    crop, box = ar.read_cropped(name)
                    if box is not None:
                        z0, z1, y0, y1, x0, x1 = box
                        assert np.array_equal(full.data[z0:z1, y0:y1, x0:x1], crop)
                except CorruptFileError:
                    continue
    except (CorruptFileError, ForeignFileError):
        return


def prepare(data: bytes) -> Path:
    """Write the input (forged when its first byte says so) to the file to read."""
    from reliability import samples as S

    mode, body = (data[0], data[1:]) if data else (0, b"")
    archive = body[:4] == b"MSKA"
    if mode & 1 and len(body) > 4:
        kind = ("mska" if archive else "msk") + ("1" if body[4] == 1 else "2")
        with contextlib.suppress(Exception):  # a header too damaged to forge: read it as it is
            body = S.forge_all(kind, body)
    path = _DIR / ("input.mska" if archive else "input.msk")
    path.write_bytes(body)
    return path


def test_one_input(data: bytes) -> None:
    read_all(prepare(data))


def make_corpus(out: Path) -> int:
    from reliability import samples as S

    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for name, s in S.build_samples().items():
        for mode in (0, 1):
            (out / f"{name}-{mode}").write_bytes(bytes([mode]) + s.data)
            n += 1
    return n


def main() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if len(sys.argv) > 2 and sys.argv[1] == "--make-corpus":
        print(make_corpus(Path(sys.argv[2])), "seeds")
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--replay":
        for f in sys.argv[2:]:
            test_one_input(Path(f).read_bytes())
            print(f, "ok")
        return
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_CAP, ADDRESS_SPACE_CAP))
    atheris = _imports()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
