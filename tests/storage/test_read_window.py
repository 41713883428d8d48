"""``MaskArchive.read_window`` and the one label-map painter (``paint_label_map``).

Every form is compared with a brute-force reference written here from the masks that were
stored (paint whole volumes in the rule's order, pad, slice), over random windows (inside,
across and outside the volume), names (lists, tables with merges and labels in any order),
overlaps, mask dtypes, overlap rules and format layouts (hypothesis). Then: the real case,
a remote archive (one coalesced series of GETs for the blobs a window meets, counted by the
proxy), only the masks met are decoded, and bad input.
"""

from __future__ import annotations

import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medmask import MaskArchive, SegmentationMask
from medmask.errors import CorruptFileError, MaskNotFoundError, MaskValidationError
from medmask.labeltable import LabelTable
from medmask.spaces import default_space
from medmask.storage import Layer, paint_label_map

LAYOUTS = {"2.3": {}, "2.2": {"compat": "0.4"}, "1": {"codec": "zstd"}}


# -- the reference -------------------------------------------------------------------------------
def torch_safe(top: int) -> np.dtype:
    for dt in (np.uint8, np.int16, np.int32):
        if top <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def padded(volume: np.ndarray, box: tuple) -> np.ndarray:
    """``volume[box]`` with zeros where the box lies outside the volume."""
    out = np.zeros((box[1] - box[0], box[3] - box[2], box[5] - box[4]), volume.dtype)
    src, dst = [], []
    for k in range(3):
        lo, hi = max(box[2 * k], 0), min(box[2 * k + 1], volume.shape[k])
        if lo >= hi:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - box[2 * k], hi - box[2 * k]))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def reference(masks: dict, table: dict, box: tuple, as_: str, overlap: str = "last"):
    """Paint whole volumes (a later name wins in the rule's order), then pad and slice."""
    shape = next(iter(masks.values())).shape
    if as_ == "dict":
        return {n: padded(masks[n] != 0, box) for n in table}
    if as_ == "stack":
        labels = sorted(set(table.values()))
        stack = np.zeros((len(labels), *shape), bool)
        for n, v in table.items():
            stack[labels.index(v)] |= masks[n] != 0
        return np.stack([padded(c, box) for c in stack])
    names = list(table)
    if overlap == "first":
        names.reverse()
    elif overlap == "smaller":
        names.sort(key=lambda n: -int(np.count_nonzero(masks[n])))
    full = np.zeros(shape, torch_safe(max(table.values())))
    for n in names:
        full[masks[n] != 0] = table[n]
    return padded(full, box)


def write(path: Path, masks: dict, layout: str) -> None:
    space = default_space(next(iter(masks.values())).shape)
    with MaskArchive(path, "w", space=space, **LAYOUTS[layout]) as ar:
        for n, a in masks.items():
            if a.dtype == np.bool_:
                ar.add(n, a)
            else:
                labels = sorted(int(v) for v in np.unique(a) if v)
                mapping = {f"{n}.{v}": v for v in labels} or {f"{n}.1": 1}
                ar.add(n, SegmentationMask(a, mapping, space))


def as_window(box: tuple, slices: bool) -> tuple:
    pairs = [(box[2 * k], box[2 * k + 1]) for k in range(3)]
    return tuple(slice(a, b) for a, b in pairs) if slices else tuple(pairs)


def same(got, want, what: str) -> None:
    if isinstance(want, dict):
        assert list(got) == list(want), what
        for k in want:
            same(got[k], want[k], f"{what}[{k}]")
        return
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, want.dtype)
    assert np.array_equal(got, want), f"{what}: {int(np.count_nonzero(got != want))} voxels differ"


# -- random cases -----------------------------------------------------------------------------------
@st.composite
def cases(draw):
    shape = tuple(draw(st.integers(3, 9)) for _ in range(3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    masks = {}
    for k in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["block", "noise", "empty", "uint8", "uint16"]))
        a = np.zeros(shape, bool)
        if kind == "block" or kind.startswith("uint"):
            lo = [int(rng.integers(0, s)) for s in shape]
            hi = [int(rng.integers(lo[i] + 1, shape[i] + 1)) for i in range(3)]
            a[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
        elif kind == "noise":
            a = rng.random(shape) < 0.3
        if kind.startswith("uint"):
            dt = np.dtype(kind)
            vals = rng.choice([1, 2, 7, 300 if dt == np.uint16 else 200], size=shape)
            a = np.where(a, vals, 0).astype(dt)
        masks[f"m{k}"] = a
    names = list(masks)
    form = draw(st.sampled_from(["all", "list", "table"]))
    if form == "all":
        table = None
    else:
        chosen = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
        if form == "list":
            table = chosen
        else:  # labels in any order, merges allowed, some beyond 255
            table = {n: draw(st.sampled_from([1, 2, 3, 5, 255, 256, 1000])) for n in chosen}
    box = []
    for s in shape:
        start = draw(st.integers(-4, s + 1))
        box += [start, start + draw(st.integers(1, s + 6))]
    return masks, table, tuple(box)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=cases(),
    layout=st.sampled_from(sorted(LAYOUTS)),
    as_=st.sampled_from(["label_map", "stack", "dict"]),
    overlap=st.sampled_from(["last", "first", "smaller"]),
    slices=st.booleans(),
)
def test_a_window_is_the_slice_of_the_whole_painted_volume(case, layout, as_, overlap, slices):
    masks, names, box = case
    table = (
        {n: k for k, n in enumerate(masks, 1)}
        if names is None
        else (dict(names) if isinstance(names, dict) else {n: k for k, n in enumerate(names, 1)})
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.mska"
        write(path, masks, layout)
        with MaskArchive(path) as ar:
            got = ar.read_window(as_window(box, slices), names, as_, overlap=overlap)
            same(got, reference(masks, table, box, as_, overlap), f"{layout} {as_} {overlap}")
            if as_ == "label_map":  # the same through a LabelTable and the painter's layers
                again = ar.read_window(as_window(box, slices), LabelTable(table), overlap=overlap)
                same(again, got, "LabelTable")
                layers = [Layer(n, n, v) for n, v in table.items()]
                res = paint_label_map(ar, layers, window=as_window(box, slices), overlap=overlap)
                same(res.array, got, "paint_label_map")


@pytest.mark.parametrize("dtype", [np.int32, np.float32, np.uint16])
def test_a_label_map_takes_a_dtype_that_holds_its_labels(tmp_path, dtype):
    masks = {"a": np.ones((4, 5, 6), bool), "b": np.eye(6, dtype=bool)[None, :5, :].repeat(4, 0)}
    write(tmp_path / "a.mska", masks, "2.3")
    with MaskArchive(tmp_path / "a.mska") as ar:
        got = ar.read_window(((0, 4), (0, 5), (0, 6)), {"a": 3, "b": 200}, dtype=dtype)
        want = reference(masks, {"a": 3, "b": 200}, (0, 4, 0, 5, 0, 6), "label_map")
        assert got.dtype == dtype and np.array_equal(got, want.astype(dtype))
        with pytest.raises(MaskValidationError, match="cannot hold label 300"):
            ar.read_window(((0, 4),) * 3, {"a": 300}, dtype=np.uint8)
        with pytest.raises(MaskValidationError, match="bool cannot hold label 2"):
            ar.read_window(((0, 4),) * 3, {"a": 2}, dtype=bool)
        stack = ar.read_window(((0, 4),) * 3, ["a", "b"], "stack", dtype=np.uint8)
        assert stack.dtype == np.uint8 and stack.shape == (2, 4, 4, 4)


# -- the real case -----------------------------------------------------------------------------------
@pytest.mark.realdata
def test_windows_of_the_real_case(tmp_path, real_case):
    from medmask.nifti import folder_to_archive

    path = tmp_path / "s.mska"
    folder_to_archive(real_case, path)
    with MaskArchive(path) as ar:
        shape = tuple(int(s) for s in ar.space.shape)
        masks = {n: ar.read_array(n) for n in ar.all_names()}
        table = {n: k for k, n in enumerate(masks, 1)}
        full = reference(masks, table, (0, shape[0], 0, shape[1], 0, shape[2]), "label_map")
        rng = np.random.default_rng(7)
        for _ in range(12):
            lo = [int(rng.integers(-20, s - 20)) for s in shape]
            box = (lo[0], lo[0] + 96, lo[1], lo[1] + 96, lo[2], lo[2] + 96)
            same(ar.read_window(as_window(box, False)), padded(full, box), f"window {box}")
        big = max(ar.infos(), key=lambda i: i.voxels)
        box = big.bbox
        got = ar.read_window(as_window(box, True), [big.name], "dict")
        same(
            got,
            {big.name: masks[big.name][box[0] : box[1], box[2] : box[3], box[4] : box[5]]},
            big.name,
        )


# -- only what the window meets is read ---------------------------------------------------------------
def _space_and_masks():
    shape = (20, 30, 40)
    masks = {}
    for k in range(6):  # separate boxes along x: a window meets one or two of them
        a = np.zeros(shape, bool)
        a[2:18, 3 + k : 25, 6 * k : 6 * k + 5] = True
        masks[f"m{k}"] = a
    return default_space(shape), masks


def test_only_masks_whose_box_meets_the_window_are_decoded(tmp_path, monkeypatch):
    space, masks = _space_and_masks()
    write(tmp_path / "a.mska", masks, "2.3")
    seen: list[str] = []
    with MaskArchive(tmp_path / "a.mska") as ar:
        real = type(ar._backend).iter_regions

        def spy(self, entries, regions, *fills):
            seen.extend(e.name for e in entries)
            return real(self, entries, regions, *fills)

        monkeypatch.setattr(type(ar._backend), "iter_regions", spy)
        got = ar.read_window(((0, 20), (0, 30), (7, 14)))  # x 7..13: m1 (6..10), m2 (12..16)
        assert seen == ["m1", "m2"]
        assert set(np.unique(got)) == {0, 2, 3}
        seen.clear()
        ar.read_window(((0, 2), (0, 30), (0, 40)))  # z 0..1: no mask
        assert seen == []


def test_a_remote_window_reads_the_blobs_it_meets_in_one_coalesced_request(s3p, tmp_path):
    """An archive larger than the block read at open: the window's three blobs come in one
    ranged GET (neighbours coalesced), the other masks' blobs are not read."""
    shape = (96, 128, 256)
    rng = np.random.default_rng(3)
    masks = {}
    for k in range(32):  # noise in x bands of 8: ~12 kB blobs that do not compress
        a = np.zeros(shape, bool)
        a[:, :, 8 * k : 8 * k + 8] = rng.random((96, 128, 8)) < 0.5
        masks[f"m{k}"] = a
    path = tmp_path / "a.mska"
    write(path, masks, "2.3")
    assert path.stat().st_size > 300_000  # more than medmask fetches whole at open
    url = s3p.put("w.mska", path.read_bytes())
    proxy = s3p.proxy
    window = ((0, 96), (0, 128), (16, 40))  # meets m2, m3, m4
    with MaskArchive(path) as local:
        want = local.read_window(window)
        met = [local._entry(f"m{k}")[1] for k in (2, 3, 4)]
    with MaskArchive(url, storage_options=s3p.storage_options) as ar:
        proxy.reset_counts()
        got = ar.read_window(window)
        gets = proxy.records("GET")
    assert len(gets) == 1 and gets[0].range, [(r.method, r.range) for r in proxy.records()]
    first, last = (int(v) for v in gets[0].range.split("=")[1].split("-"))
    assert first == min(e.offset for e in met)
    assert last + 1 == max(e.offset + e.length for e in met)
    same(got, want, "remote window")
    assert set(np.unique(got)) == {0, 3, 4, 5}


# -- bad input ---------------------------------------------------------------------------------------
@pytest.fixture
def small(tmp_path):
    space, masks = _space_and_masks()
    path = tmp_path / "a.mska"
    write(path, masks, "2.3")
    return path, masks


@pytest.mark.parametrize(
    "window, match",
    [
        (((0, 4), (0, 4)), "3 axes"),
        (((0, 4),) * 4, "3 axes"),
        ((0, 4, 0, 4, 0, 4), r"written \(\(z0, z1\)"),
        (((0, 4), (0, 4), (5, 5)), "empty along x"),
        (((3, 1), (0, 4), (0, 4)), "empty along z"),
        ((slice(0, 4, 2), slice(0, 4), slice(0, 4)), "no step"),
        (((0, 4.5), (0, 4), (0, 4)), "integers"),
        (((0, 4), (0, 4), 7), "slice or a"),
        ("zyx", "three"),
        (((0, 1 << 20),) * 3, "voxels"),
    ],
)
def test_bad_windows(small, window, match):
    path, _masks = small
    with MaskArchive(path) as ar, pytest.raises(MaskValidationError, match=match):
        ar.read_window(window)


def test_bad_names_forms_and_options(small):
    path, _masks = small
    with MaskArchive(path) as ar:
        w = ((0, 4),) * 3
        with pytest.raises(MaskNotFoundError, match="'m11'.*did you mean.*'m1'") as err:
            ar.read_window(w, ["m0", "m11"])
        assert err.value.path == str(path)
        with pytest.raises(MaskNotFoundError, match="lver"):
            ar.read_window(w, {"lver": 1})
        with pytest.raises(MaskValidationError, match="label of 'm0' is 0"):
            ar.read_window(w, {"m0": 0})
        with pytest.raises(MaskValidationError, match="more than once"):
            ar.read_window(w, ["m0", "m0"])
        with pytest.raises(MaskValidationError, match="as_ must be one of"):
            ar.read_window(w, as_="array")
        with pytest.raises(MaskValidationError, match="overlap must be one of"):
            ar.read_window(w, overlap="largest")
        with pytest.raises(MaskValidationError, match="single name"):
            ar.read_window(w, "m0")


def test_an_archive_without_a_grid(tmp_path):
    with MaskArchive(tmp_path / "e.mska", "w") as ar:
        pass
    with (
        MaskArchive(tmp_path / "e.mska") as ar,
        pytest.raises(MaskValidationError, match="no grid"),
    ):
        ar.read_window(((0, 1),) * 3)


def test_a_damaged_blob_met_by_a_window_names_file_and_mask(small):
    path, masks = small
    with MaskArchive(path) as ar:
        entry = ar._entry("m2")[1]
    raw = bytearray(path.read_bytes())
    raw[entry.offset + entry.length // 2] ^= 0x40
    path.write_bytes(bytes(raw))
    assert zlib.crc32(bytes(raw[entry.offset : entry.offset + entry.length])) != entry.crc
    with MaskArchive(path) as ar:
        for as_ in ("label_map", "stack", "dict"):
            with pytest.raises(CorruptFileError, match="checksum") as err:
                ar.read_window(((0, 20), (0, 30), (10, 14)), as_=as_)
            assert err.value.mask == "m2" and err.value.path == str(path)
        # a window that does not meet the damaged mask still reads
        got = ar.read_window(((0, 20), (0, 30), (0, 5)), ["m0"])
        same(got, reference(masks, {"m0": 1}, (0, 20, 0, 30, 0, 5), "label_map"), "m0")


def test_the_resolved_table_follows_changes(tmp_path):
    space, masks = _space_and_masks()
    path = tmp_path / "a.mska"
    with MaskArchive(path, "a", space=space) as ar:
        ar.add("m0", masks["m0"])
        w = ((0, 20), (0, 30), (0, 40))
        assert set(np.unique(ar.read_window(w))) == {0, 1}
        ar.add("m1", masks["m1"])  # the default table now has two names
        assert set(np.unique(ar.read_window(w))) == {0, 1, 2}
        ar.replace("m0", masks["m5"])
        same(ar.read_window(w, ["m0"]), masks["m5"].astype(np.uint8), "replaced")
        ar.delete("m0")
        with pytest.raises(MaskNotFoundError):
            ar.read_window(w, ["m0"])


# -- the codec and backend parts of a window read -------------------------------------------------
@pytest.mark.parametrize("codec", ["bitzstd", "zstd"])
@pytest.mark.parametrize("dtype", [bool, np.uint8, np.uint16])
def test_decode_region_is_the_slice_of_the_decoded_array(codec, dtype):
    from medmask.codecs import BlobSpec, get_codec

    c = get_codec(codec)
    rng = np.random.default_rng(5)
    for _ in range(40):
        shape = tuple(int(v) for v in rng.integers(1, 19, 3))
        a = rng.random(shape) < 0.4
        if dtype is not bool:
            a = (a * rng.integers(1, 300 if dtype is np.uint16 else 200, shape)).astype(dtype)
        blob, spec = c.encode(a), BlobSpec(np.dtype(dtype), shape)
        r = []
        for s in shape:
            lo = int(rng.integers(0, s))
            r += [lo, int(rng.integers(lo + 1, s + 1))]
        want = a[r[0] : r[1], r[2] : r[3], r[4] : r[5]]
        same(np.asarray(c.decode_region(blob, spec, tuple(r))), want, codec)
        if dtype is bool:  # filled: the label where set, made while unpacking
            k = int(rng.integers(1, 256))
            same(c.decode_region(blob, spec, tuple(r), fill=k), want.astype(np.uint8) * k, "fill")
    with pytest.raises(MaskValidationError, match="not inside"):
        get_codec("bitzstd").decode_region(blob, spec, (0, shape[0] + 1, 0, 1, 0, 1))


@pytest.mark.parametrize("layout", ["2.3", "1"])
def test_iter_regions_with_fills_in_every_layout(tmp_path, layout):
    """The backends' regions, filled or not, are the stored masks' parts (version 1 through
    the interface's default, version 2 through its cropped blobs)."""
    _space, masks = _space_and_masks()
    write(tmp_path / "a.mska", masks, layout)
    with MaskArchive(tmp_path / "a.mska") as ar:
        entries = [ar._entry(n)[1] for n in ("m1", "m4")]
        regions = [(2, 10, 4, 20, 6, 11), (3, 18, 9, 25, 25, 29)]
        plain = list(ar._backend.iter_regions(entries, regions))
        filled = list(ar._backend.iter_regions(entries, regions, [7, None]))
    for k, (n, r) in enumerate(zip(("m1", "m4"), regions, strict=True)):
        want = masks[n][r[0] : r[1], r[2] : r[3], r[4] : r[5]]
        same(np.asarray(plain[k]) != 0, want, n)
    same(filled[0], masks["m1"][2:10, 4:20, 6:11].astype(np.uint8) * 7, "filled")
