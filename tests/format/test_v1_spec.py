"""Version-1 compatibility: fixtures are built by hand from ../shared/spec/v1-format.md
with ``struct`` (not with medmask's writer), read back exactly, and files medmask
writes with ``codec="zstd"`` are parsed field by field against the spec."""

from __future__ import annotations

import json

import numpy as np
import pytest
from spacetransformer import Space
from spec_v1 import MSK, MSKA, decode_blob, spec_msk, spec_mska, xyz_space_json

from medmask import LabelMapping, MaskArchive, SegmentationMask, load_mask, save_mask
from medmask.errors import CorruptFileError, UnsupportedFormatError

SHAPE = (7, 11, 13)


def sample(dtype) -> np.ndarray:
    rng = np.random.default_rng(3)
    if dtype is bool:
        return rng.random(SHAPE) > 0.7
    hi = {np.uint8: 250, np.uint16: 60000, np.uint32: 2**31}[dtype]
    return rng.integers(0, hi, SHAPE).astype(dtype)


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.uint16, np.uint32])
def test_read_spec_msk_every_dtype(tmp_path, dtype):
    arr = sample(dtype)
    mapping = {"organ": 1} if dtype is bool else {"a": 1, "b": 7}
    p = tmp_path / "x.msk"
    p.write_bytes(spec_msk(arr, mapping, xyz_space_json(SHAPE)))
    m = load_mask(p)
    assert m.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(m.data, arr)
    assert m.mapping == LabelMapping(mapping)
    # in memory the space is (z, y, x): spacing reversed relative to the file
    assert tuple(m.space.shape) == SHAPE
    assert np.allclose(m.space.spacing, (2.5, 0.9, 0.8))
    assert np.allclose(m.space.origin, (-10.0, 20.0, 5.0))  # a world point: not reordered


def test_read_spec_mska_with_empty_and_overlapping_masks(tmp_path):
    a = np.zeros(SHAPE, bool)
    a[1:4, 2:6, 3:9] = True
    b = np.zeros(SHAPE, bool)
    b[2:5, 4:8, 5:12] = True  # overlaps a
    empty = np.zeros(SHAPE, bool)
    lab = sample(np.uint8)
    items = [
        ("a", a, {"a": 1}),
        ("b", b, {"b": 1}),
        ("empty", empty, {"empty": 1}),
        ("lab", lab, {"x": 3}),
    ]
    p = tmp_path / "x.mska"
    p.write_bytes(spec_mska(items, xyz_space_json(SHAPE)))
    with MaskArchive(p) as ar:
        assert ar.version == 1
        assert ar.all_names() == ["a", "b", "empty", "lab"]
        for k, (name, arr, mapping) in enumerate(items):
            for m in (ar[name], ar[k]):
                np.testing.assert_array_equal(m.data, arr)
                assert m.mapping == mapping
                assert tuple(m.space.shape) == SHAPE
        crop, box = ar.read_cropped("a")
        assert box == (1, 4, 2, 6, 3, 9) and crop.all()
        assert ar.read_cropped("empty")[1] is None


def test_read_spec_mska_grown_index(tmp_path):
    """0.1.x doubles the index capacity when it fills up; any capacity must read."""
    items = [
        (f"organ_{i:03d}_" + "x" * 30, np.zeros(SHAPE, bool), {f"organ_{i}": 1}) for i in range(60)
    ]
    p = tmp_path / "x.mska"
    p.write_bytes(spec_mska(items, xyz_space_json(SHAPE), capacity=16000))
    with MaskArchive(p) as ar:
        assert len(ar) == 60 and ar.all_names()[59] == items[59][0]


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.uint16, np.uint32])
def test_written_msk_follows_spec(tmp_path, dtype):
    arr = sample(dtype)
    space = Space(shape=SHAPE[::-1], spacing=(0.8, 0.9, 2.5)).reverse_axis_order()
    mapping = {"organ": 1}
    p = tmp_path / "x.msk"
    save_mask(SegmentationMask(arr, mapping, space), p, codec="zstd")
    raw = p.read_bytes()
    magic, major, minor, codec, s_off, s_len, m_off, m_len, d_off, d_len = MSK.unpack_from(raw)
    assert (magic, major, minor, codec) == (b"MSK1", 1, 0, 0)
    assert raw[55:62] == b"\0" * 7
    assert s_off == 62 and m_off == s_off + s_len and d_off == m_off + m_len
    assert d_off + d_len == len(raw)
    sp = Space.from_json(raw[s_off : s_off + s_len].decode())
    assert tuple(sp.shape) == SHAPE[::-1]  # (x, y, z) on disk
    assert json.loads(raw[m_off : m_off + m_len]) == mapping
    check_blob(raw[d_off : d_off + d_len], arr)


def check_blob(blob: bytes, arr: np.ndarray) -> None:
    got = decode_blob(blob)
    assert got.dtype == arr.dtype and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)


# written through the seed API's names, as medmask 0.1 users call it (deprecated, still working)
@pytest.mark.filterwarnings("ignore:MaskArchive.add_segmask:DeprecationWarning")
def test_written_mska_follows_spec(tmp_path):
    space = Space(shape=SHAPE[::-1], spacing=(0.8, 0.9, 2.5)).reverse_axis_order()
    arrays = {"a": sample(bool), "empty": np.zeros(SHAPE, bool), "lab": sample(np.uint16)}
    p = tmp_path / "x.mska"
    with MaskArchive(p, "w", codec="zstd") as ar:
        for n, a in arrays.items():
            ar.add_segmask(SegmentationMask(a, {n: 1}, space), n)
    with MaskArchive(p, "a") as ar:  # appending keeps version 1
        ar.add_segmask(SegmentationMask(sample(np.uint8), {"late": 2}, space), "late")
    arrays["late"] = sample(np.uint8)
    raw = p.read_bytes()
    magic, major, minor, codec, s_off, s_len, i_off, i_len, d_off, d_len, count = MSKA.unpack_from(
        raw
    )
    assert (magic, major, minor, codec, count) == (b"MSKA", 1, 0, 0, 4)
    assert raw[63:90] == b"\0" * 27
    assert s_off == 90 and i_off == s_off + s_len and d_off == i_off + i_len
    assert i_len >= 4000 and d_off + d_len == len(raw)
    index = json.loads(raw[i_off : i_off + i_len].rstrip(b"\0"))
    assert [e["name"] for e in index] == list(arrays)
    for e in index:
        assert set(e) == {"name", "offset", "length", "mapping"}
        check_blob(raw[e["offset"] : e["offset"] + e["length"]], arrays[e["name"]])


def test_unknown_version_and_codec(tmp_path):
    arr = sample(bool)
    raw = bytearray(spec_msk(arr, {"o": 1}, xyz_space_json(SHAPE)))
    raw[4] = 9
    (tmp_path / "v9.msk").write_bytes(raw)
    with pytest.raises(UnsupportedFormatError, match="versions 1, 2"):
        load_mask(tmp_path / "v9.msk")
    raw[4], raw[6] = 1, 42
    (tmp_path / "c42.msk").write_bytes(raw)
    with pytest.raises(UnsupportedFormatError, match="codec id 42"):
        load_mask(tmp_path / "c42.msk")
    (tmp_path / "junk.msk").write_bytes(b"hello world, not a mask" * 4)
    with pytest.raises(CorruptFileError, match="junk.msk.*not a medmask file"):
        load_mask(tmp_path / "junk.msk")
