"""nnU-Net-style foreground coordinates beside an archive: nnU-Net's count rule, draws from the
file without decoding, a stale file noticed, computed on first use without one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medmask import MaskArchive
from medmask.errors import CorruptFileError
from medmask.patches import (
    CaseIndex,
    CentreSampler,
    NnUNetPolicy,
    StaleCoordsWarning,
    coords_count,
    coords_path,
    load_foreground_coords,
    save_foreground_coords,
)
from medmask.phantoms import phantom_case


@pytest.fixture
def archive(tmp_path):
    masks, space = phantom_case(5, (24, 40, 40))
    path = tmp_path / "case.mska"
    with MaskArchive(path, "w", space=space) as ar:
        for name, m in masks.items():
            ar.add(name, m)
    return path, masks


def test_the_count_rule_is_nnunets():
    for n in (0, 1, 7, 9_999, 10_000, 10_001, 999_999, 1_000_001, 5_000_000):
        assert coords_count(n) == min(n, max(min(10_000, n), math.ceil(n / 100)))
    assert coords_count(5_000_000) == 50_000 and coords_count(500) == 500


def count_decodes(monkeypatch):
    calls = []
    original = MaskArchive.read_cropped

    def counting(self, key):
        calls.append(key)
        return original(self, key)

    monkeypatch.setattr(MaskArchive, "read_cropped", counting)
    return calls


def test_draws_come_from_the_file_without_decoding(archive, monkeypatch):
    path, masks = archive
    out = save_foreground_coords(path)
    assert out == coords_path(path) == path.with_name("case.fgcoords.npz")
    with MaskArchive(path) as ar:
        liver = load_foreground_coords(out, ar, "liver")
        assert liver.dtype == np.int16 and len(liver) == int(masks["liver"].sum())  # < 10,000
        assert load_foreground_coords(out, ar, "spleen") is None  # empty: not listed
    calls = count_decodes(monkeypatch)
    sampler = CentreSampler(NnUNetPolicy(foreground=1.0), foreground="coords")
    rng = np.random.default_rng(0)
    with MaskArchive(path) as ar:
        case = CaseIndex.of(ar)
        for _ in range(300):
            c = sampler.draw(ar, case, rng)
            assert masks[c.name][c.zyx]
    assert calls == []  # every class voxel came from the file


def test_without_a_file_coordinates_are_computed_on_first_use(archive, monkeypatch):
    path, masks = archive
    calls = count_decodes(monkeypatch)
    sampler = CentreSampler(NnUNetPolicy(foreground=1.0), foreground="coords")
    rng = np.random.default_rng(1)
    with MaskArchive(path) as ar:
        case = CaseIndex.of(ar)
        for _ in range(300):
            c = sampler.draw(ar, case, rng)
            assert masks[c.name][c.zyx]
    assert sorted(calls) == sorted(n for n, m in masks.items() if m.any())  # once each


def test_a_stale_file_is_noticed_and_not_used(archive):
    path, masks = archive
    save_foreground_coords(path)
    moved = np.zeros_like(masks["liver"])
    moved[0:2, 0:2, 0:2] = True
    with MaskArchive(path, "a") as ar:
        ar.replace("liver", moved)
    sampler = CentreSampler(NnUNetPolicy(foreground=1.0), foreground="coords")
    rng = np.random.default_rng(2)
    with MaskArchive(path) as ar, pytest.warns(StaleCoordsWarning, match="another version"):
        case = CaseIndex.of(ar)
        for _ in range(100):
            c = sampler.draw(ar, case, rng)
            if c.name == "liver":
                assert moved[c.zyx]


def test_a_damaged_file_is_a_clear_error(archive):
    path, _ = archive
    coords_path(path).write_bytes(b"not a zip file at all")
    with MaskArchive(path) as ar, pytest.raises(CorruptFileError, match="coordinates file"):
        load_foreground_coords(coords_path(path), ar, "liver")
