"""A byte source of our own, registered from outside the package for a new URL scheme: every
reader (MaskArchive, load_mask, medmask.stats, inspect) reads through it, with nothing
under medmask/ edited."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import medmask
from medmask import MaskArchive, SegmentationMask, load_mask, save_mask
from medmask.errors import CorruptFileError
from medmask.inspect import file_info, list_masks, verify_file
from medmask.io import ByteSource, Target, register_source, source_schemes
from medmask.io import source as source_module
from medmask.spaces import default_space

SHAPE = (5, 6, 7)
SPACE = default_space(SHAPE)


class VaultSource(ByteSource):
    """Objects kept in a dict, keyed by their path after ``vault://``; counts its reads."""

    store: dict[str, bytes] = {}
    reads: list[tuple[str, int, int]] = []

    def __init__(self, target: Target) -> None:
        self.name = target.path
        key = target.path.split("://", 1)[1]
        if key not in self.store:
            raise FileNotFoundError(f"{target.path}: not in the vault")
        self._data = self.store[key]

    def size(self) -> int:
        return len(self._data)

    @property
    def tag(self) -> str:
        return str(hash(self._data))

    def read(self, offset: int, length: int, *, field: str = "data", mask: str | None = None):
        if offset < 0 or length < 0 or offset + length > len(self._data):
            raise self._range_error(offset, length, len(self._data), field=field, mask=mask)
        self.reads.append((self.name, offset, length))
        return self._data[offset : offset + length]


@pytest.fixture
def vault(tmp_path, request):
    """The ``vault://`` scheme, registered for one test, holding an archive and a .msk."""
    register_source("vault", VaultSource)
    request.addfinalizer(lambda: source_module._SOURCES.pop("vault", None))
    masks = {}
    for k in range(3):
        a = np.zeros(SHAPE, bool)
        a[k : k + 2, 1:4, 2:6] = True
        masks[f"m{k}"] = SegmentationMask(a, {f"m{k}": 1}, SPACE)
    with MaskArchive(tmp_path / "case.mska", "w") as ar:
        for name, m in masks.items():
            ar.add(name, m)
    save_mask(masks["m1"], tmp_path / "m1.msk")
    VaultSource.store = {
        "bucket/c1/case.mska": (tmp_path / "case.mska").read_bytes(),
        "bucket/c2/liver.msk": (tmp_path / "m1.msk").read_bytes(),
    }
    VaultSource.reads = []
    return masks


def test_the_scheme_is_in_the_table(vault):
    assert "vault" in source_schemes()
    with pytest.raises(ValueError, match="already registered"):
        register_source("vault", lambda t: None)


def test_archives_and_masks_are_read_through_the_registered_source(vault):
    with MaskArchive("vault://bucket/c1/case.mska") as ar:
        assert ar.all_names() == list(vault)
        assert ar["m2"] == vault["m2"]
        assert ar.read_all_masks() == vault
    assert load_mask("vault://bucket/c2/liver.msk") == vault["m1"]
    assert {name for name, _off, _len in VaultSource.reads} == {
        "vault://bucket/c1/case.mska",
        "vault://bucket/c2/liver.msk",
    }
    with pytest.raises(FileNotFoundError, match="not in the vault"):
        load_mask("vault://bucket/c3/none.msk")


def test_stats_and_inspect_read_through_it(vault):
    df = medmask.stats(["vault://bucket/c1/case.mska", "vault://bucket/c2/liver.msk"])
    assert list(df["case"]) == ["case"] * 3 + ["c2"]
    assert list(df["name"]) == ["m0", "m1", "m2", "liver"]
    assert list(df["voxels"]) == [int(m.data.sum()) for m in vault.values()] + [24]
    assert set(df["source"]) == {"index", "decoded"}
    info = file_info("vault://bucket/c1/case.mska")
    assert (info["kind"], info["masks"], info["version"]) == ("mska", 3, 2)
    assert [r["name"] for r in list_masks("vault://bucket/c2/liver.msk")] == ["m1"]
    assert verify_file("vault://bucket/c1/case.mska")["ok"]


def test_damage_seen_through_the_source_is_reported(vault):
    data = bytearray(VaultSource.store["bucket/c1/case.mska"])
    data[-10] ^= 0xFF
    VaultSource.store["bucket/c1/case.mska"] = bytes(data)
    report = verify_file("vault://bucket/c1/case.mska")
    assert not report["ok"] and "vault://bucket/c1/case.mska" in report["error"]
    with pytest.raises(CorruptFileError), MaskArchive("vault://bucket/c1/case.mska") as ar:
        ar.read_all_masks()


def test_a_target_is_made_once_and_passed_on(vault):
    t = Target("vault://bucket/c1/case.mska")
    assert (t.scheme, t.name, t.stem, t.parent.name) == ("vault", "case.mska", "case", "c1")
    assert t.exists() and not (t.parent / "nothing.mska").exists()
    with MaskArchive(t) as ar:
        assert ar.target is t and ar.path == "vault://bucket/c1/case.mska"
    assert Path(str(t)).name == "case.mska"
