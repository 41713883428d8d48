"""Per-mask extras: attributes and centroids stored, read back and validated, in the index
layouts of format 2.2 (what writers produce: a centroid column of fixed-point integers, a
bare label number for a ``{name: label}`` mapping, ``extra`` holding the attributes) and
2.1 (``compat="0.3"``: the centroid as decimals inside ``extra``); files of medmask 0.2.0
(index of 9 columns, format 2.0) and 0.3.0 (format 2.1) still open and keep their layout on
append. The layouts are hand-written in ``tests/reliability/samples.py`` from
``docs/format.md``, not imported from medmask."""

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


def index_fields(raw: bytes) -> list:
    """The ``fields`` list of every index segment of an archive (newest first)."""
    return [seg["fields"] for _off, _len, seg in S.parse_mska2(raw)["segments"]]


# -- round trips -------------------------------------------------------------------------------
@pytest.mark.parametrize("compat, minor", [(None, 3), ("0.4", 2), ("0.3", 1)])
@pytest.mark.parametrize("mode", ["w", "a"])
def test_attrs_and_centroid_round_trip(tmp_path, mode, compat, minor):
    path = tmp_path / "a.mska"
    arrays = {"liver": organ(1), "spleen": organ(2, np.uint8), "empty": np.zeros(SHAPE, bool)}
    with MaskArchive(path, mode, space=SPACE, compat=compat) as ar:
        ar.add("liver", seg(arrays["liver"]), attrs=LIVER)
        ar.add("spleen", seg(arrays["spleen"], "spleen"))
        ar.add("empty", seg(arrays["empty"]), attrs={"color": (1, 2, 3)})
    assert path.read_bytes()[5] == minor
    rows_minor = min(minor, 2)  # 2.3 rows are 2.2 rows
    assert all(f == S.INDEX_LAYOUTS[rows_minor] for f in index_fields(path.read_bytes()))
    with MaskArchive(path) as ar:
        assert ar.version == 2 and ar.minor_version == minor and ar.supports_attrs
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


@pytest.mark.realdata
def test_centroid_of_the_real_case_matches_argwhere(tmp_path, real_case):
    nib = pytest.importorskip("nibabel")
    files = sorted(real_case.glob("*.nii.gz"))[:12]
    arrays = {}
    with MaskArchive(tmp_path / "r.mska", "w") as ar:
        for f in files:
            data = np.asarray(nib.load(f).dataobj).transpose(2, 1, 0) != 0  # (z, y, x)
            name = f.name.removesuffix(".nii.gz")
            arrays[name] = data
            ar.add(name, SegmentationMask(data, {name: 1}, default_space(data.shape)))
    with MaskArchive(tmp_path / "r.mska") as ar:
        for info in ar.infos():
            a = arrays[info.name]
            if not a.any():
                assert info.centroid is None
            else:
                np.testing.assert_allclose(info.centroid, expected_centroid(a), atol=1e-3)


def _two_labels() -> np.ndarray:
    a = organ(4, np.uint8)  # label 5 where set
    a[a != 0] = 1
    a[:6][a[:6] != 0] = 2
    return a


MIXED = {  # name -> (array, mapping, attrs): every mapping form a writer meets
    "liver": (organ(1), {"liver": 1}, LIVER),  # {name: label}: a bare 1 in 2.2
    "b": (organ(2, np.uint8), {"b": 3}, {}),  # a bare 3
    "renamed": (organ(3), {"a": 1}, {"color": [1, 2, 3]}),  # another name: an object
    "two": (_two_labels(), {"two": 1, "other": 2}, {}),  # two labels: an object
    "empty": (np.zeros(SHAPE, bool), {"empty": 1}, {"description": "nothing"}),
}


def _write_mixed(path, compat: str | None) -> None:
    with MaskArchive(path, "w", space=SPACE, compat=compat) as ar:
        for name, (a, mapping, attrs) in MIXED.items():
            ar.add(name, SegmentationMask(a, mapping, SPACE), attrs=attrs)


def test_compat_03_writes_format_21_with_the_same_information(tmp_path):
    """compat="0.3" writes minor 1 with 2.1's ten columns (the centroid as decimals in
    ``extra``); it reads back the same infos and arrays as the 2.2 file of the same masks,
    and its rows are the 2.2 rows in the other layout."""
    new, old = tmp_path / "new.mska", tmp_path / "old.mska"
    _write_mixed(new, None)
    _write_mixed(old, "0.3")
    raw_new, raw_old = new.read_bytes(), old.read_bytes()
    assert raw_new[5] == 3 and raw_old[5] == 1
    assert index_fields(raw_new) == [S.INDEX_FIELDS] and len(S.INDEX_FIELDS) == 11
    ten = ["name", "codec", "offset", "length", "crc32", "dtype", "bbox", "voxels", "mapping"]
    ten.append("extra")
    assert index_fields(raw_old) == [ten] and ten == S.INDEX_FIELDS_21
    with MaskArchive(new) as a, MaskArchive(old) as b:
        assert (a.minor_version, b.minor_version) == (3, 1)
        for x, y in zip(a.infos(), b.infos(), strict=True):
            array, mapping, attrs = MIXED[x.name]
            assert (x.name, x.index, x.dtype, x.bbox, x.voxels) == (
                y.name, y.index, y.dtype, y.bbox, y.voxels,
            )  # fmt: skip
            assert x.mapping == y.mapping == mapping
            assert x.attrs == y.attrs == validate_attrs(attrs)
            if x.bbox is None:
                assert x.centroid is None and y.centroid is None
            else:
                np.testing.assert_allclose(x.centroid, y.centroid, atol=1e-4, rtol=0)
                np.testing.assert_allclose(x.centroid, expected_centroid(array), atol=1e-4)
            assert np.array_equal(a.read_array(x.name), array)
            assert np.array_equal(b.read_array(y.name), array)
    rows_new, rows_old = S.parse_mska2(raw_new)["rows"], S.parse_mska2(raw_old)["rows"]
    for rn, ro in zip(rows_new, rows_old, strict=True):
        conv = S.convert_row(rn, S.INDEX_FIELDS, S.INDEX_FIELDS_21)
        assert conv[:9] == ro[:9]
        ce, oe = conv[9] or {}, ro[9] or {}
        assert ce.get("attrs") == oe.get("attrs") and set(ce) == set(oe)
        if "centroid" in oe:
            np.testing.assert_allclose(ce["centroid"], oe["centroid"], atol=1e-4, rtol=0)


def test_mapping_is_a_bare_label_number_exactly_for_name_to_label(tmp_path):
    """2.2 stores ``{name: n}`` (the row's own name, one label) as the bare number n and
    any other mapping as an object; each reads back as the mapping that was added."""
    path = tmp_path / "m.mska"
    _write_mixed(path, None)
    rows = {r[0]: r for r in S.parse_mska2(path.read_bytes())["rows"]}
    m = S.col(S.INDEX_FIELDS, "mapping")
    assert rows["liver"][m] == 1 and type(rows["liver"][m]) is int
    assert rows["b"][m] == 3 and type(rows["b"][m]) is int
    assert rows["empty"][m] == 1
    assert rows["renamed"][m] == {"a": 1}
    assert rows["two"][m] == {"two": 1, "other": 2}
    with MaskArchive(path) as ar:
        every = {i.name: i.mapping for i in ar.infos()}
        for name, (_a, mapping, _attrs) in MIXED.items():
            assert ar.info(name).mapping == mapping
            assert ar[name].mapping.to_dict() == mapping
            assert every[name] == mapping


def _forged_mappings(tmp_path, label):
    """A 2.2 archive whose mask "b" stores ``label`` as a bare number, then as ``{"b": label}``
    (checksums recomputed), yielded one after the other at the same path."""
    path = tmp_path / "m.mska"
    _write_mixed(path, None)
    raw = path.read_bytes()
    m = S.col(S.INDEX_FIELDS, "mapping")
    for form in (label, {"b": label}):
        rows = S.parse_mska2(raw)["rows"]
        rows[1][m] = form
        forged = tmp_path / "forged.mska"
        forged.write_bytes(S.mska2_commit(raw, rows=rows))
        yield forged


@pytest.mark.parametrize("label", [0, 1, 7, 255])
def test_a_forged_bare_label_reads_as_name_to_label(tmp_path, label):
    """A bare number n in a 2.2 row is read as ``{name: n}``, the same as the object form."""
    outcomes = []
    for forged in _forged_mappings(tmp_path, label):
        with MaskArchive(forged) as ar:
            outcomes.append((ar.info("b").mapping, ar["b"].mapping.to_dict()))
    assert outcomes[0] == outcomes[1] == ({"b": label}, {"b": label})


@pytest.mark.parametrize("label", [-1, 256, 2**31, 2**64, True, 1.5, 1.0, "3", None])
def test_a_bad_bare_label_is_rejected_like_its_object_form(tmp_path, label):
    for form, forged in zip(("bare", "object"), _forged_mappings(tmp_path, label), strict=True):
        with MaskArchive(forged) as ar:
            assert np.array_equal(ar.read_array("liver"), MIXED["liver"][0])
            with pytest.raises(CorruptFileError) as err:
                ar["b"]
            assert err.value.mask == "b" and err.value.field == "mapping", form


def test_format_21_archives_stay_21_when_appended(tmp_path):
    """A 2.1 archive (medmask 0.3.0's layout) appended to keeps minor 1 and ten columns in
    every segment, old and new (segments merged on append are rewritten in 2.1 too)."""
    path = tmp_path / "old.mska"
    _write_mixed(path, "0.3")
    for k in range(5):
        with MaskArchive(path, "a") as ar:
            assert ar.minor_version == 1
            ar.add(f"n{k}", seg(organ(10 + k), f"n{k}"), attrs={"label_value": k})
    raw = path.read_bytes()
    assert raw[5] == 1
    fields = index_fields(raw)
    assert len(fields) > 1 and all(f == S.INDEX_FIELDS_21 for f in fields)
    with MaskArchive(path) as ar:
        assert ar.minor_version == 1 and len(ar) == len(MIXED) + 5
        for k in range(5):
            info = ar.info(f"n{k}")
            assert info.attrs == {"label_value": k} and info.mapping == {f"n{k}": 1}
            np.testing.assert_allclose(info.centroid, expected_centroid(organ(10 + k)), atol=1e-4)
        for name, (a, mapping, attrs) in MIXED.items():
            assert ar.info(name).mapping == mapping and ar.info(name).attrs == validate_attrs(attrs)
            assert np.array_equal(ar.read_array(name), a)


def test_a_chain_of_21_and_22_segments_reads_each_by_its_fields(tmp_path):
    """Readers take each index segment's layout from its own ``fields``: a 2.1 archive whose
    newest segment is in the 2.2 layout reads the same, and appending to it (minor 1) keeps
    every mask."""
    path = tmp_path / "old.mska"
    names = list(MIXED)
    with MaskArchive(path, "w", space=SPACE, compat="0.3") as ar:
        for name in names[:4]:
            a, mapping, attrs = MIXED[name]
            ar.add(name, SegmentationMask(a, mapping, SPACE), attrs=attrs)
    with MaskArchive(path, "a") as ar:
        a, mapping, attrs = MIXED[names[4]]
        ar.add(names[4], SegmentationMask(a, mapping, SPACE), attrs=attrs)
    raw = path.read_bytes()
    with MaskArchive(path) as ar:
        before = ar.infos()
    p = S.parse_mska2(raw)
    _off, _len, newest = p["segments"][0]
    assert len(p["segments"]) == 2 and newest["fields"] == S.INDEX_FIELDS_21
    rows22 = [S.convert_row(r, S.INDEX_FIELDS_21, S.INDEX_FIELDS) for r in newest["rows"]]
    segment = json.dumps({"prev": newest["prev"], "fields": S.INDEX_FIELDS, "rows": rows22})
    path.write_bytes(S.mska2_commit(raw, segment=segment.encode(), count=len(names)))
    assert index_fields(path.read_bytes()) == [S.INDEX_FIELDS, S.INDEX_FIELDS_21]

    def same(infos) -> None:
        for x, y in zip(infos, before, strict=True):
            assert (x.name, x.mapping, x.bbox, x.voxels, x.attrs) == (
                y.name, y.mapping, y.bbox, y.voxels, y.attrs,
            )  # fmt: skip
            if y.centroid is None:
                assert x.centroid is None
            else:
                np.testing.assert_allclose(x.centroid, y.centroid, atol=1e-4, rtol=0)

    with MaskArchive(path) as ar:
        same(ar.infos())
        for name in names:
            assert np.array_equal(ar.read_array(name), MIXED[name][0])
    with MaskArchive(path, "a") as ar:
        assert ar.minor_version == 1
        ar.add("late", seg(organ(9), "late"))
    with MaskArchive(path) as ar:
        same(ar.infos()[: len(names)])
        assert ar.info("late").mapping == {"late": 1}
        for name in names:
            assert np.array_equal(ar.read_array(name), MIXED[name][0])
    assert path.read_bytes()[5] == 1
    assert index_fields(path.read_bytes())[0] == S.INDEX_FIELDS_21


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
    current writer: the rows of a 2.2 file in 2.0's layout (no centroid or extra column,
    each mapping an object)."""
    masks = [("a", organ(4)), ("b", organ(5, np.uint8))]
    with MaskArchive(tmp_path / "src.mska", "w", space=SPACE) as ar:
        for n, a in masks:
            ar.add(n, seg(a, n))
    raw = (tmp_path / "src.mska").read_bytes()
    p = S.parse_mska2(raw)
    assert p["fields"] == S.INDEX_FIELDS
    rows = [S.convert_row(r, S.INDEX_FIELDS, S.INDEX_FIELDS_20) for r in p["rows"]]
    assert [r[8] for r in rows] == [{n: 1 if a.dtype == bool else int(a.max())} for n, a in masks]
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
            ar.add("c", seg(organ(6)), attrs={"color": [1, 2, 3]})
        ar.add("c", seg(organ(6), "c"))  # {name: label}: 2.2 would store a bare 1
    p = S.parse_mska2(path.read_bytes())
    assert all(len(r) == 9 for r in p["rows"]) and len(p["rows"]) == 3
    assert all(f == S.INDEX_FIELDS_20 for f in index_fields(path.read_bytes()))
    assert all(type(r[8]) is dict for r in p["rows"])  # no bare label numbers in 2.0
    assert path.read_bytes()[5] == 0  # still minor 0: medmask 0.2.0 reads it
    with MaskArchive(path) as ar:
        assert ar.info("c").mapping == {"c": 1} and ar.info("c").centroid is None


def test_compat_02_writes_format_20(tmp_path):
    with MaskArchive(tmp_path / "c.mska", "w", space=SPACE, compat="0.2") as ar:
        ar.add("a", seg(organ(1), "a"))
        with pytest.raises(MaskValidationError, match="cannot hold attributes"):
            ar.add("b", seg(organ(2)), attrs={"description": "no"})
    raw = (tmp_path / "c.mska").read_bytes()
    assert raw[5] == 0
    p = S.parse_mska2(raw)
    assert [len(r) for r in p["rows"]] == [9] and index_fields(raw) == [S.INDEX_FIELDS_20]
    assert p["rows"][0][8] == {"a": 1}  # the object form: 2.0 has no bare label number
    for bad in ("0.5", "2.2", 0.3):
        with pytest.raises(MaskValidationError, match="compat"):
            MaskArchive(tmp_path / "d.mska", "w", compat=bad)
    assert not (tmp_path / "d.mska").exists()


def test_version_1_refuses_attributes(tmp_path):
    with MaskArchive(tmp_path / "v1.mska", "w", codec="zstd", space=SPACE) as ar:
        with pytest.raises(MaskValidationError, match="cannot hold attributes"):
            ar.add("a", seg(organ(1)), attrs={"color": [1, 2, 3]})
        ar.add("a", seg(organ(1)))
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
        ar.add("a", seg(organ(1)))
    before = path.read_bytes()
    with MaskArchive(path, "a") as ar:
        with pytest.raises(MaskValidationError, match=words) as err:
            ar.add("b", seg(organ(2)), attrs=attrs)
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
def _forged(tmp_path, value: object, col: str = "extra", compat: str | None = None):
    """An archive of masks "a" and "b" (written with ``compat``) whose row "b" has ``value``
    in column ``col``, re-committed with valid checksums in the file's own layout."""
    with MaskArchive(tmp_path / "src.mska", "w", space=SPACE, compat=compat) as ar:
        ar.add("a", seg(organ(1)))
        ar.add("b", seg(organ(2)))
    raw = (tmp_path / "src.mska").read_bytes()
    p = S.parse_mska2(raw)
    assert p["fields"] == (S.INDEX_FIELDS_21 if compat == "0.3" else S.INDEX_FIELDS)
    rows = p["rows"]
    rows[1][S.col(p["fields"], col)] = value
    path = tmp_path / "forged.mska"
    path.write_bytes(S.mska2_commit(raw, rows=rows))
    return path


@pytest.mark.parametrize("compat", [None, "0.3"])
def test_unknown_extra_keys_are_ignored(tmp_path, compat):
    extra = {"future": {"anything": [1, 2]}, "attrs": {"color": [1, 2, 3]}}
    path = _forged(tmp_path, extra, compat=compat)
    with MaskArchive(path) as ar:
        info = ar.info("b")
        assert info.attrs == {"color": [1, 2, 3]}
        if compat == "0.3":  # 2.1: the centroid was in the extra this row replaced
            assert info.centroid is None
        else:  # 2.2: it has a column of its own, untouched
            np.testing.assert_allclose(info.centroid, expected_centroid(organ(2)), atol=1e-4)
        assert np.array_equal(ar.read_array("b"), organ(2))


@pytest.mark.parametrize(
    "extra",
    [
        {"centroid": "middle"},
        {"centroid": [1.0, 2.0]},
        {"centroid": [1e9, 1.0, 1.0]},
        {"centroid": [True, 1, 1]},
        {"centroid": [2.0, 3.0, 4.0], "attrs": {"color": [1, 2, 3]}},
    ],
)
def test_a_centroid_inside_extra_is_an_unknown_key_in_22(tmp_path, extra):
    """In 2.2 the centroid has its own column: a "centroid" key of ``extra`` (valid or
    not) is ignored like any unknown key, and the column's centroid is the one read."""
    path = _forged(tmp_path, extra)
    with MaskArchive(path) as ar:
        info = ar.info("b")
        np.testing.assert_allclose(info.centroid, expected_centroid(organ(2)), atol=1e-4)
        assert info.attrs == extra.get("attrs", {})
        assert np.array_equal(ar.read_array("b"), organ(2))


HOSTILE_EXTRAS = [
    5,
    "x",
    [1, 2, 3],
    True,
    {"attrs": []},
    {"attrs": {"color": "red"}},
    {"attrs": {"type": {"scheme": 1}}},
    {"attrs": {"description": "x" * (MAX_ATTRS_BYTES + 10)}},
    {"attrs": {"deep": json.loads("[" * 40 + "]" * 40)}},
]
#: Hostile only in 2.1, where ``extra`` holds the centroid (2.2 ignores the key: see above).
HOSTILE_21_CENTROIDS = [
    {"centroid": "middle"},
    {"centroid": [1.0, 2.0]},
    {"centroid": [1e9, 1.0, 1.0]},
    {"centroid": [True, 1, 1]},
]


@pytest.mark.parametrize(
    "extra, compat",
    [(e, c) for e in HOSTILE_EXTRAS for c in (None, "0.3")]
    + [(e, "0.3") for e in HOSTILE_21_CENTROIDS],
)
def test_hostile_stored_extras_are_corrupt_file_errors(tmp_path, extra, compat):
    path = _forged(tmp_path, extra, compat=compat)
    with MaskArchive(path) as ar:
        assert np.array_equal(ar.read_array("a"), organ(1))  # the other masks stay readable
        with pytest.raises(CorruptFileError) as err:
            ar.info("b")
        assert err.value.mask == "b" and "extra" in err.value.field


def _box_of(a: np.ndarray) -> list[int]:
    nz = np.argwhere(a)
    lo, hi = nz.min(0), nz.max(0) + 1
    return [int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1]), int(lo[2]), int(hi[2])]


B_BOX = _box_of(organ(2))
#: The spec's bounds of a 2.2 centroid of mask "b": lo*10000 - 10 .. (hi-1)*10000 + 10.
B_LO = [B_BOX[2 * a] * 10_000 - 10 for a in range(3)]
B_HI = [(B_BOX[2 * a + 1] - 1) * 10_000 + 10 for a in range(3)]


@pytest.mark.parametrize(
    "centroid",
    [
        "middle",
        5,
        {"z": 1},
        [],
        [50_000, 60_000],
        [50_000, 60_000, 70_000, 0],
        [50_000.0, 60_000.0, 70_000.0],
        [5.0, 6.0, 7.0],  # the 2.1 representation
        [True, 60_000, 70_000],
        [None, 60_000, 70_000],
        ["50000", 60_000, 70_000],
        [[50_000], 60_000, 70_000],
        [2**63, 2**63, 2**63],
        [2**64, 0, 0],
        [-1, 0, 0],
        [B_LO[0] - 1, B_LO[1], B_LO[2]],
        [B_LO[0], B_LO[1] - 1, B_LO[2]],
        [B_LO[0], B_LO[1], B_LO[2] - 1],
        [B_HI[0] + 1, B_HI[1], B_HI[2]],
        [B_HI[0], B_HI[1] + 1, B_HI[2]],
        [B_HI[0], B_HI[1], B_HI[2] + 1],
        [B_BOX[0], B_BOX[2], B_BOX[4]],  # in voxels: not scaled by 10,000
    ],
)
def test_hostile_centroid_columns_are_corrupt_file_errors(tmp_path, centroid):
    path = _forged(tmp_path, centroid, col="centroid")
    with MaskArchive(path) as ar:
        assert np.array_equal(ar.read_array("a"), organ(1))  # the other masks stay readable
        with pytest.raises(CorruptFileError) as err:
            ar.info("b")
        assert err.value.mask == "b" and err.value.field == "index.centroid"
        with pytest.raises(CorruptFileError) as err:
            ar.read_array("b")
        assert err.value.mask == "b" and err.value.field == "index.centroid"


@pytest.mark.parametrize("where", ["lo", "hi"])
def test_centroid_columns_at_the_bounds_are_read(tmp_path, where):
    """The spec's slack of 10 units (1/1000 voxel) outside the box is accepted."""
    value = B_LO if where == "lo" else B_HI
    path = _forged(tmp_path, value, col="centroid")
    with MaskArchive(path) as ar:
        assert ar.info("b").centroid == tuple(v / 10_000 for v in value)
        assert np.array_equal(ar.read_array("b"), organ(2))


def test_an_empty_mask_cannot_have_a_centroid(tmp_path):
    with MaskArchive(tmp_path / "src.mska", "w", space=SPACE) as ar:
        ar.add("a", seg(organ(1)))
        ar.add("e", seg(np.zeros(SHAPE, bool), "e"))
    raw = (tmp_path / "src.mska").read_bytes()
    rows = S.parse_mska2(raw)["rows"]
    c = S.col(S.INDEX_FIELDS, "centroid")
    assert rows[1][6] is None and rows[1][c] is None
    rows[1][c] = [0, 0, 0]
    path = tmp_path / "forged.mska"
    path.write_bytes(S.mska2_commit(raw, rows=rows))
    with MaskArchive(path) as ar:
        assert np.array_equal(ar.read_array("a"), organ(1))
        with pytest.raises(CorruptFileError) as err:
            ar.info("e")
        assert err.value.mask == "e" and err.value.field == "index.centroid"


def test_a_null_centroid_column_is_an_unknown_centroid(tmp_path):
    path = _forged(tmp_path, None, col="centroid")
    with MaskArchive(path) as ar:
        assert ar.info("b").centroid is None and ar.info("b").voxels > 0
        assert np.array_equal(ar.read_array("b"), organ(2))


@pytest.mark.parametrize("compat", [None, "0.3"])
def test_a_json_bomb_of_nesting_is_a_corrupt_file_error(tmp_path, compat):
    path = _forged(tmp_path, None, compat=compat)
    raw = path.read_bytes()
    p = S.parse_mska2(raw)
    head = json.dumps({"prev": None, "fields": p["fields"], "rows": p["rows"][:1]})
    deep = "[" * 100_000 + "]" * 100_000
    # a row of the right width whose last column (extra) nests 100,000 deep
    pad = "null," * (len(p["fields"]) - 10)
    segment = head[:-2] + ',["b",1,0,0,0,"bool",null,0,{"b":1},' + pad + deep + "]]}"
    path.write_bytes(S.mska2_commit(raw, segment=segment.encode(), count=2))
    with pytest.raises(CorruptFileError), MaskArchive(path) as ar:
        ar.info("b")


@pytest.mark.parametrize(
    "fields",
    [
        [*S.INDEX_FIELDS, "more"],
        [*S.INDEX_FIELDS_20, "extra", "centroid"],  # 2.2's columns in another order
        [*S.INDEX_FIELDS_20, "centroid"],
        [*S.INDEX_FIELDS_21[:-1], "Extra"],
    ],
)
def test_unknown_index_columns_are_unsupported(tmp_path, fields):
    path = _forged(tmp_path, None)
    raw = path.read_bytes()
    rows = [[*r, 0][: len(fields)] for r in S.parse_mska2(raw)["rows"]]
    seg_b = json.dumps({"prev": None, "fields": fields, "rows": rows})
    path.write_bytes(S.mska2_commit(raw, segment=seg_b.encode(), count=len(rows)))
    with pytest.raises(UnsupportedFormatError, match="upgrade medmask"):
        MaskArchive(path)


# -- public accessors --------------------------------------------------------------------------
def test_public_accessors(tmp_path):
    path = tmp_path / "a.mska"
    with MaskArchive(path, "a", space=SPACE) as ar:
        for k in range(3):
            ar.add(f"m{k}", seg(organ(k)))
        assert ar.generation == 4  # the creation (space only) and three appends
    with MaskArchive(path) as ar:
        assert ar.generation == 4 and ar.index_segments == 2  # 2 + 1 rows (binary counter)
        assert ar.end_offset == path.stat().st_size
        assert ar.codec_names == ["bitzstd"]
        assert ar.mask_bytes == sum(i.nbytes for i in ar.infos()) > 0
