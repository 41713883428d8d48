"""medmask.format.verify_all: every problem of a file, not just the first."""

from __future__ import annotations

import numpy as np
import pytest

from medmask import MaskArchive, SegmentationMask, save_mask
from medmask.format import Problem, open_archive, verify_all
from medmask.io import open_source


def _masks(n: int = 4) -> list[tuple[str, np.ndarray]]:
    out = []
    for k in range(n):
        a = np.zeros((12, 10, 9), bool)
        a[k : k + 5, 2:7, 1 + k : 6 + k] = True
        out.append((f"organ_{k}", a))
    return out


def _archive(path, codec=None):
    with MaskArchive(path, "w", codec=codec) as ar:
        for name, arr in _masks():
            ar.add(name, SegmentationMask(arr, {name: 1}))
        ar.add("empty", np.zeros((12, 10, 9), bool))
    return path


def _flip_blob(path, index: int, at: int | None = None) -> str:
    """Damage byte ``at`` (default: the middle one) of mask ``index``'s blob; return its name."""
    with open_source(path) as src:
        entry = open_archive(src).entries[index]
    data = bytearray(path.read_bytes())
    data[entry.offset + (entry.length // 2 if at is None else at)] ^= 0xFF
    path.write_bytes(bytes(data))
    return entry.name


@pytest.mark.parametrize("codec", [None, "zstd"])
def test_sound_archive_has_no_problems(tmp_path, codec):
    assert verify_all(_archive(tmp_path / "a.mska", codec)) == []


def test_every_damaged_mask_is_reported(tmp_path):
    path = _archive(tmp_path / "a.mska")
    damaged = {_flip_blob(path, 1), _flip_blob(path, 3)}
    problems = verify_all(path)
    assert {p.mask for p in problems} == damaged == {"organ_1", "organ_3"}
    for p in problems:
        assert isinstance(p, Problem)
        assert p.path == str(path) and p.error == "CorruptFileError"
        assert "checksum" in p.message and p.field == "data.crc32"
        assert str(p).startswith(f"{path}: mask {p.mask!r}: ")
    # the readers stop at the first damaged mask; verify_all reads on past it
    with MaskArchive(path) as ar:
        ar.read_array("organ_0")
        ar.read_array("organ_2")


def test_version1_damaged_blob(tmp_path):
    path = _archive(tmp_path / "a.mska", "zstd")
    first = _flip_blob(path, 0, at=2)  # the blob's dtype name
    second = _flip_blob(path, 2, at=2)
    problems = verify_all(path)
    assert [p.mask for p in problems] == [first, second]
    assert all(p.field == "data" and "invalid blob header" in p.message for p in problems)


def test_structural_damage_is_one_problem(tmp_path):
    path = _archive(tmp_path / "a.mska")
    data = bytearray(path.read_bytes())
    data[20] ^= 0xFF  # commit slot A
    data[84] ^= 0xFF  # commit slot B
    path.write_bytes(bytes(data))
    (p,) = verify_all(path)
    assert p.mask is None and "no valid commit slot" in p.message


def test_msk_and_missing_files(tmp_path):
    arr = _masks(1)[0][1]
    good = tmp_path / "m.msk"
    save_mask(SegmentationMask(arr, {"organ": 1}), good)
    assert verify_all(good) == []
    data = bytearray(good.read_bytes())
    data[-3] ^= 0xFF
    bad = tmp_path / "bad.msk"
    bad.write_bytes(bytes(data))
    (p,) = verify_all(bad)
    assert p.path == str(bad) and "checksum" in p.message
    (p,) = verify_all(tmp_path / "none.mska")
    assert p.error == "FileNotFoundError" and p.path == str(tmp_path / "none.mska")
    junk = tmp_path / "junk.mska"
    junk.write_bytes(b"not a medmask file at all")
    (p,) = verify_all(junk)
    assert p.field == "magic"
