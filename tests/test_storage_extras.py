"""Per-mask extras (format 2.1): attributes and centroids stored, read back and validated;
files of medmask 0.2.0 (index of 9 columns, format 2.0) still open and stay 2.0 on append."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from reliability import samples as S

from medmask import MaskArchive, MaskFile, SegmentationMask, save_mask
from medmask.attrs import MAX_ATTRS_BYTES, validate_attrs
from medmask.errors import CorruptFileError, MaskValidationError, UnsupportedFormatError
from medmask.spaces import default_space

SHAPE = (12, 16, 20)
SPACE = default_space(SHAPE)
LIVER = {
    "color": [221, 130, 101],
    "description": "liver, manual",
    "category": {"scheme": "SCT", "value": "123037004", "meaning": "Anatomical Structure"},
    "type": {"scheme": "SCT", "value": "10200004", "meaning": "Liver"},
    "label_value": 5,
    "reviewer": {"name": "A. B.", "passes": [1, 2]},  # a free key, kept as it is
}


def organ(k: int, dtype=bool) -> np.ndarray:
    rng = np.random.default_rng(k)
    a = np.zeros(SHAPE, dtype)
    z, y, x = rng.integers(0, 6, 3)
    a[z : z + 5, y : y + 7, x : x + 9] = rng.random((5, 7, 9)) > 0.4
    if dtype is not bool:
        a[a != 0] = k + 1
    return a


def seg(a: np.ndarray, name: str = "m") -> SegmentationMask:
    label = 1 if a.dtype == bool else int(a.max())
    return SegmentationMask(a, {name: label}, SPACE)


def expected_centroid(a: np.ndarray) -> np.ndarray:
    return np.argwhere(a).mean(0)


# -- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["w", "a"])
def test_attrs_and_centroid_round_trip(tmp_path, mode):
    path = tmp_path / "a.mska"
    arrays = {"liver": organ(1), "spleen": organ(2, np.uint8), "empty": np.zeros(SHAPE, bool)}
    with MaskArchive(path, mode, space=SPACE) as ar:
        ar.add_segmask(seg(arrays["liver"]), "liver", attrs=LIVER)
        ar.add_segmask(seg(arrays["spleen"], "spleen"), "spleen")
        ar.add_segmask(seg(arrays["empty"]), "empty", attrs={"color": (1, 2, 3)})
    with MaskArchive(path) as ar:
        assert ar.version == 2 and ar.minor_version == 1 and ar.supports_attrs
        infos = ar.infos()
        assert [i.name for i in infos] == ["liver", "spleen", "empty"]
        assert infos[0].attrs == LIVER and infos[1].attrs == {}
        assert infos[2].attrs == {"color": [1, 2, 3]} and infos[2].centroid is None
        for info in infos[:2]:
            assert info == ar.info(info.name) == ar.info(info.index)
            np.testing.assert_allclose(
                info.centroid, expected_centroid(arrays[info.name]), atol=1e-3
            )
            assert info.voxels == np.count_nonzero(arrays[info.name])
        assert ar["liver"].data.tolist() == arrays["liver"].tolist()
    # the returned attrs are copies: changing them changes nothing stored
    with MaskArchive(path) as ar:
        ar.info("liver").attrs["color"][0] = 0
        assert ar.info("liver").attrs == LIVER


def test_centroid_of_the_real_case_matches_argwhere(tmp_path, real_case):
    nib = pytest.importorskip("nibabel")
    files = sorted(real_case.glob("*.nii.gz"))[:12]
    arrays = {}
    with MaskArchive(tmp_path / "r.mska", "w") as ar:
        for f in files:
            data = np.asarray(nib.load(f).dataobj).transpose(2, 1, 0) != 0  # (z, y, x)
            name = f.name.removesuffix(".nii.gz")
            arrays[name] = data
            ar.add_segmask(SegmentationMask(data, {name: 1}, default_space(data.shape)), name)
    with MaskArchive(tmp_path / "r.mska") as ar:
        for info in ar.infos():
            a = arrays[info.name]
            if not a.any():
                assert info.centroid is None
            else:
                np.testing.assert_allclose(info.centroid, expected_centroid(a), atol=1e-3)


def test_msk_attrs_round_trip_and_plain_msk_stays_format_20(tmp_path):
    a = organ(3, np.uint16)
    save_mask(seg(a), tmp_path / "plain.msk")
    save_mask(seg(a), tmp_path / "attrs.msk", attrs={"description": "x", "color": [9, 9, 9]})
    plain = (tmp_path / "plain.msk").read_bytes()
    with_attrs = (tmp_path / "attrs.msk").read_bytes()
    assert plain[5] == 0 and with_attrs[5] == 1  # header minor version
    meta_len = struct.unpack_from("<Q", plain, 20)[0]
    assert "extra" not in json.loads(plain[64 : 64 + meta_len])
    info = MaskFile(tmp_path / "attrs.msk").info()
    assert info.attrs == {"description": "x", "color": [9, 9, 9]}
    np.testing.assert_allclose(info.centroid, expected_centroid(a), atol=1e-3)
    plain_info = MaskFile(tmp_path / "plain.msk").info()  # computed by decoding the box
    assert plain_info.attrs == {}
    np.testing.assert_allclose(plain_info.centroid, expected_centroid(a), atol=1e-9)
    assert MaskFile(tmp_path / "attrs.msk").read() == seg(a)


# -- files of medmask 0.2.0 ----------------------------------------------------------------------
def _hand_built_20_archive(tmp_path) -> tuple:
    """A format-2.0 archive (9-column index, minor 0) built from raw rows, not by medmask's
    current writer: the rows of a 2.1 file minus their extra column."""
    masks = [("a", organ(4)), ("b", organ(5, np.uint8))]
    with MaskArchive(tmp_path / "src.mska", "w", space=SPACE) as ar:
        for n, a in masks:
            ar.add_segmask(seg(a, n), n)
    raw = (tmp_path / "src.mska").read_bytes()
    p = S.parse_mska2(raw)
    rows = [r[:9] for r in p["rows"]]
    segment = json.dumps({"prev": None, "fields": S.INDEX_FIELDS_20, "rows": rows}).encode()
    data = bytearray(S.mska2_commit(raw, segment=segment, count=len(rows)))
    pre = bytearray(S.PREAMBLE.pack(b"MSKA", 2, 0, 0, 64, 2, 0))
    pre[12:16] = struct.pack("<I", S.crc(bytes(pre[:12])))
    data[:16] = pre
    path = tmp_path / "old.mska"
    path.write_bytes(bytes(data))
    return path, masks


def test_format_20_archives_open_and_stay_20_when_appended(tmp_path):
    path, masks = _hand_built_20_archive(tmp_path)
    with MaskArchive(path) as ar:
        assert ar.minor_version == 0 and not ar.supports_attrs
        assert [i.centroid for i in ar.infos()] == [None, None]
        assert [i.attrs for i in ar.infos()] == [{}, {}]
        for n, a in masks:
            assert np.array_equal(ar.read_array(n), a)
    with MaskArchive(path, "a") as ar:
        with pytest.raises(MaskValidationError, match="cannot hold attributes"):
            ar.add_segmask(seg(organ(6)), "c", attrs={"color": [1, 2, 3]})
        ar.add_segmask(seg(organ(6)), "c")
    p = S.parse_mska2(path.read_bytes())
    assert all(len(r) == 9 for r in p["rows"]) and len(p["rows"]) == 3
    assert path.read_bytes()[5] == 0  # still minor 0: medmask 0.2.0 reads it


def test_compat_02_writes_format_20(tmp_path):
    with MaskArchive(tmp_path / "c.mska", "w", space=SPACE, compat="0.2") as ar:
        ar.add_segmask(seg(organ(1)), "a")
        with pytest.raises(MaskValidationError, match="cannot hold attributes"):
            ar.add_segmask(seg(organ(2)), "b", attrs={"description": "no"})
    raw = (tmp_path / "c.mska").read_bytes()
    assert raw[5] == 0
    p = S.parse_mska2(raw)
    assert [len(r) for r in p["rows"]] == [9]
    with pytest.raises(MaskValidationError, match="compat"):
        MaskArchive(tmp_path / "d.mska", "w", compat="0.3")


def test_version_1_refuses_attributes(tmp_path):
    with MaskArchive(tmp_path / "v1.mska", "w", codec="zstd", space=SPACE) as ar:
        with pytest.raises(MaskValidationError, match="cannot hold attributes"):
            ar.add_segmask(seg(organ(1)), "a", attrs={"color": [1, 2, 3]})
        ar.add_segmask(seg(organ(1)), "a")
    with MaskArchive(tmp_path / "v1.mska") as ar:
        assert ar.info("a").centroid is None and ar.info("a").attrs == {}
        assert ar.generation is None and ar.index_segments is None
    with pytest.raises(MaskValidationError, match="version-1"):
        save_mask(seg(organ(1)), tmp_path / "v1.msk", codec="zstd", attrs={"color": [1, 2, 3]})
    assert not (tmp_path / "v1.msk").exists()


# -- validation on write -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "attrs, words",
    [
        ({"color": [1, 2]}, "color"),
        ({"color": [1, 2, 256]}, "color"),
        ({"color": [True, 2, 3]}, "color"),
        ({"description": 5}, "description"),
        ({"type": "Liver"}, "coded concept"),
        ({"type": {"scheme": "SCT", "value": "1"}}, "coded concept"),
        ({"region": {"scheme": "SCT", "value": "1", "meaning": 3}}, "coded concept"),
        ({"label_value": -1}, "label_value"),
        ({"label_value": 1.5}, "label_value"),
        ({"x": float("nan")}, "JSON"),
        ({"x": object()}, "JSON"),
        ({1: "x"}, "non-empty strings"),
        ({"x": "y" * (MAX_ATTRS_BYTES + 1)}, "bytes"),
        ({"x": json.loads("[" * 20 + "]" * 20)}, "nested"),
        ("liver", "JSON object"),
    ],
)
def test_bad_attributes_are_refused_and_nothing_is_written(tmp_path, attrs, words):
    path = tmp_path / "a.mska"
    with MaskArchive(path, "a", space=SPACE) as ar:
        ar.add_segmask(seg(organ(1)), "a")
    before = path.read_bytes()
    with MaskArchive(path, "a") as ar:
        with pytest.raises(MaskValidationError, match=words) as err:
            ar.add_segmask(seg(organ(2)), "b", attrs=attrs)
        assert "'b'" in str(err.value)
        assert ar.all_names() == ["a"]
    assert path.read_bytes() == before


def test_validate_attrs_normalises_a_private_copy():
    src = {"color": (1, 2, 3), "free": {"k": [1, 2]}}
    out = validate_attrs(src)
    assert out == {"color": [1, 2, 3], "free": {"k": [1, 2]}}
    out["free"]["k"].append(3)
    assert src["free"]["k"] == [1, 2]
    assert validate_attrs(None) == {}


# -- hostile stored extras ---------------------------------------------------------------------
def _forged(tmp_path, extra: object) -> MaskArchive:
    with MaskArchive(tmp_path / "src.mska", "w", space=SPACE) as ar:
        ar.add_segmask(seg(organ(1)), "a")
        ar.add_segmask(seg(organ(2)), "b")
    raw = (tmp_path / "src.mska").read_bytes()
    rows = S.parse_mska2(raw)["rows"]
    rows[1][9] = extra
    path = tmp_path / "forged.mska"
    path.write_bytes(S.mska2_commit(raw, rows=rows))
    return path


def test_unknown_extra_keys_are_ignored(tmp_path):
    path = _forged(tmp_path, {"future": {"anything": [1, 2]}, "attrs": {"color": [1, 2, 3]}})
    with MaskArchive(path) as ar:
        info = ar.info("b")
        assert info.attrs == {"color": [1, 2, 3]} and info.centroid is None
        assert np.array_equal(ar.read_array("b"), organ(2))


@pytest.mark.parametrize(
    "extra",
    [
        5,
        "x",
        [1, 2, 3],
        {"centroid": "middle"},
        {"centroid": [1.0, 2.0]},
        {"centroid": [1e9, 1.0, 1.0]},
        {"centroid": [True, 1, 1]},
        {"attrs": []},
        {"attrs": {"color": "red"}},
        {"attrs": {"type": {"scheme": 1}}},
        {"attrs": {"description": "x" * (MAX_ATTRS_BYTES + 10)}},
        {"attrs": {"deep": json.loads("[" * 40 + "]" * 40)}},
    ],
)
def test_hostile_stored_extras_are_corrupt_file_errors(tmp_path, extra):
    path = _forged(tmp_path, extra)
    with MaskArchive(path) as ar:
        assert np.array_equal(ar.read_array("a"), organ(1))  # the other masks stay readable
        with pytest.raises(CorruptFileError) as err:
            ar.info("b")
        assert err.value.mask == "b" and "extra" in err.value.field


def test_a_json_bomb_of_nesting_is_a_corrupt_file_error(tmp_path):
    path = _forged(tmp_path, None)
    raw = path.read_bytes()
    rows = S.parse_mska2(raw)["rows"]
    head = json.dumps({"prev": None, "fields": S.INDEX_FIELDS, "rows": rows[:1]})
    deep = "[" * 100_000 + "]" * 100_000
    segment = head[:-2] + ',["b",1,0,0,0,"bool",null,0,{"b":1},' + deep + "]]}"
    path.write_bytes(S.mska2_commit(raw, segment=segment.encode(), count=2))
    with pytest.raises(CorruptFileError), MaskArchive(path) as ar:
        ar.info("b")


def test_unknown_index_columns_are_unsupported(tmp_path):
    path = _forged(tmp_path, None)
    raw = path.read_bytes()
    rows = [[*r, 0] for r in S.parse_mska2(raw)["rows"]]
    seg_b = json.dumps({"prev": None, "fields": [*S.INDEX_FIELDS, "more"], "rows": rows})
    path.write_bytes(S.mska2_commit(raw, segment=seg_b.encode(), count=len(rows)))
    with pytest.raises(UnsupportedFormatError, match="upgrade medmask"):
        MaskArchive(path)


# -- public accessors --------------------------------------------------------------------------
def test_public_accessors(tmp_path):
    path = tmp_path / "a.mska"
    with MaskArchive(path, "a", space=SPACE) as ar:
        for k in range(3):
            ar.add_segmask(seg(organ(k)), f"m{k}")
        assert ar.generation == 4  # the creation (space only) and three appends
    with MaskArchive(path) as ar:
        assert ar.generation == 4 and ar.index_segments == 2  # 2 + 1 rows (binary counter)
        assert ar.end_offset == path.stat().st_size
        assert ar.codec_names == ["bitzstd"]
        assert ar.mask_bytes == sum(i.nbytes for i in ar.infos()) > 0
