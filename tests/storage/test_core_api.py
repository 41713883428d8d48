"""The public API of the core: LabelMapping, SegmentationMask, MaskFile, MaskArchive."""

from __future__ import annotations

import io
import os
import pickle
import threading

import numpy as np
import pytest
from spacetransformer import Space

import medmask
from medmask import (
    LabelMapping,
    MaskArchive,
    MaskFile,
    SegmentationMask,
    load_mask,
    match_allowed_values,
    save_mask,
)
from medmask.errors import (
    ArchiveLockedError,
    CorruptFileError,
    MaskNotFoundError,
    MaskValidationError,
    MedMaskError,
    SpaceMismatchError,
)

SHAPE = (6, 8, 10)


def test_public_names():
    for name in [
        "LabelMapping",
        "SegmentationMask",
        "MaskFile",
        "MaskArchive",
        "save_mask",
        "load_mask",
    ]:
        assert hasattr(medmask, name)
    assert callable(match_allowed_values)


# -- LabelMapping --------------------------------------------------------------------------
def test_mapping_basics():
    m = LabelMapping({"liver": 1, "spleen": 2})
    assert m["liver"] == 1 and m.inverse(2) == "spleen" and m.has_label(1) and not m.has_label(3)
    assert "liver" in m and list(m) == ["liver", "spleen"] and len(m) == 2
    assert dict(m.items()) == {"liver": 1, "spleen": 2}
    m["kidney"] = 3
    assert LabelMapping.from_json(m.to_json()) == m
    assert m == {"liver": 1, "spleen": 2, "kidney": 3}
    assert "LabelMapping" in repr(m) and "'kidney': 3" in repr(m)


def test_mapping_clashes_and_missing():
    m = LabelMapping({"liver": 1})
    with pytest.raises(ValueError, match="'liver'.*'spleen'|'spleen'.*'liver'"):
        m["spleen"] = 1
    with pytest.raises(ValueError, match="liver"):
        m["liver"] = 2
    with pytest.raises(KeyError) as exc:
        m["livr"]
    assert "did you mean: 'liver'" in str(exc.value)
    with pytest.raises(KeyError):
        m.inverse(5)
    with pytest.raises(ValueError):
        LabelMapping.from_json("[1, 2]")
    with pytest.raises(ValueError):
        LabelMapping({"x": -1})


# -- SegmentationMask ----------------------------------------------------------------------
def test_construction_and_properties():
    arr = np.zeros(SHAPE, np.uint8)
    m = SegmentationMask(arr, {"a": 1})
    assert m.bit_depth == 8 and m.shape == SHAPE
    assert tuple(m.space.shape) == SHAPE and tuple(m.space.spacing) == (1.0, 1.0, 1.0)
    assert isinstance(m.mapping, LabelMapping)
    with pytest.raises(ValueError):
        m.data[0, 0, 0] = 1  # read-only view
    arr[0, 0, 0] = 5
    assert m.data[0, 0, 0] == 0  # the constructor copied by default
    assert not np.shares_memory(m.data, arr)
    # data is a view of the mask's own array, never a copy: a view taken before an
    # in-place edit shows the edit
    before = m.data
    region = np.zeros(SHAPE, bool)
    region[1, 2, 3] = True
    m.add_label(region, 7, "b")
    assert before[1, 2, 3] == 7 and np.shares_memory(before, m.data)
    # copy=False takes the caller's array as it is
    owned = np.zeros(SHAPE, np.uint8)
    assert np.shares_memory(SegmentationMask(owned, {"a": 1}, copy=False).data, owned)
    assert {
        SegmentationMask(np.zeros(SHAPE, d), {}).bit_depth for d in (bool, np.uint16, np.uint32)
    } == {1, 16, 32}


@pytest.mark.parametrize(
    "dtype,values,expected",
    [
        (np.int8, [0, 5], np.uint8),
        (np.int16, [0, 300], np.uint16),
        (np.int64, [0, 70000], np.uint32),
        (np.int32, [0, 1], np.uint8),
        (np.uint64, [0, 9], np.uint8),
    ],
)
def test_signed_and_wide_ints_are_converted(dtype, values, expected):
    arr = np.zeros(SHAPE, dtype)
    arr[0, 0, :2] = values
    m = SegmentationMask(arr, {})
    assert m.data.dtype == expected
    np.testing.assert_array_equal(m.data, arr)


def test_bad_arrays_are_rejected():
    with pytest.raises(MaskValidationError, match="negative"):
        SegmentationMask(np.full(SHAPE, -1, np.int16), {})
    with pytest.raises(MaskValidationError, match="3-D"):
        SegmentationMask(np.zeros((4, 4), np.uint8), {})
    with pytest.raises(MaskValidationError, match="float"):
        SegmentationMask(np.zeros(SHAPE, np.float32), {})
    with pytest.raises(MaskValidationError, match="uint32"):
        SegmentationMask(np.full(SHAPE, 2**40, np.int64), {})
    with pytest.raises(MaskValidationError, match="does not fit"):
        SegmentationMask(np.zeros(SHAPE, np.uint8), {"a": 300})
    wrong = Space(shape=(10, 8, 7)).reverse_axis_order()
    with pytest.raises(MaskValidationError, match="does not match array shape"):
        SegmentationMask(np.zeros(SHAPE, np.uint8), {}, wrong)


def test_lazy_init_and_add_label():
    space = Space(shape=SHAPE[::-1], spacing=(0.5, 0.5, 2.0)).reverse_axis_order()
    m = SegmentationMask.lazy_init(8, space=space)
    assert m.shape == SHAPE and m.space == space and len(m.mapping) == 0
    a = np.zeros(SHAPE, bool)
    a[1:3] = True
    b = np.zeros(SHAPE, bool)
    b[2:5] = True
    m.add_label(a, 1, "a")
    m.add_label(b, 2, "b")  # overlaps: the later label wins
    assert m.data[1].max() == 1 and m.data[2].max() == 2
    np.testing.assert_array_equal(m.get_binary_mask_by_names("a"), m.data == 1)
    np.testing.assert_array_equal(m.get_binary_mask_by_names(["a", "b"]), m.data > 0)
    np.testing.assert_array_equal(m.get_binary_mask_by_labels(2), m.data == 2)
    np.testing.assert_array_equal(m.to_binary(), a | b)
    with pytest.raises(MaskValidationError, match="already used"):
        m.add_label(a, 1, "c")
    with pytest.raises(MaskValidationError, match="already used"):
        m.add_label(a, 3, "a")
    with pytest.raises(MaskValidationError, match="outside 1..255"):
        m.add_label(a, 256, "big")
    with pytest.raises(MaskValidationError, match="outside"):
        m.add_label(a, 0, "zero")
    with pytest.raises(MaskValidationError, match="shape"):
        m.add_label(np.zeros((2, 2, 2), bool), 4, "small")
    with pytest.raises(MaskValidationError, match="boolean"):
        m.add_label(np.full(SHAPE, 7, np.uint8), 5, "labels")
    with pytest.raises(MaskNotFoundError, match="did you mean"):
        m.get_binary_mask_by_names("aa")
    with pytest.raises(MaskNotFoundError):
        m.get_binary_mask_by_labels(9)
    with pytest.raises(MaskValidationError):
        SegmentationMask.lazy_init(12, shape=SHAPE)
    with pytest.raises(MaskValidationError):
        SegmentationMask.lazy_init(8)


def test_add_label_paints_in_place():
    m = SegmentationMask.lazy_init(16, shape=(64, 64, 64))
    before = m.data.__array_interface__["data"][0]
    region = np.zeros(m.shape, bool)
    for label in range(1, 118):
        region[:] = False
        region[label % 64] = True
        m.add_label(region, label, f"organ{label}")
    assert m.data.__array_interface__["data"][0] == before  # never reallocated
    assert len(m.mapping) == 117


def test_bool_mask_holds_label_one():
    m = SegmentationMask.lazy_init(1, shape=SHAPE)
    region = np.zeros(SHAPE, bool)
    region[0] = True
    m.add_label(region, 1, "only")
    with pytest.raises(MaskValidationError):
        m.add_label(region, 2, "second")
    np.testing.assert_array_equal(m.get_binary_mask_by_names("only"), region)


# -- MaskFile / save_mask / load_mask --------------------------------------------------------
@pytest.mark.parametrize("codec", [None, "zstd"])
def test_maskfile(tmp_path, codec):
    arr = np.zeros(SHAPE, np.uint8)
    arr[2:4, 3:5, 1:9] = 4
    m = SegmentationMask(arr, {"x": 4})
    with MaskFile(tmp_path / "m.msk", "w", codec=codec) as f:
        f.write(m)
    with MaskFile(tmp_path / "m.msk") as f:
        assert f.read() == m
        crop, box, mapping, space = f.read_cropped()
    assert box == (2, 4, 3, 5, 1, 9) and crop.shape == (2, 2, 8) and (crop == 4).all()
    assert mapping == {"x": 4} and space == m.space
    with pytest.raises(io.UnsupportedOperation):
        MaskFile(tmp_path / "m.msk").write(m)
    with pytest.raises(FileNotFoundError):
        MaskFile(tmp_path / "missing.msk")
    save_mask(m, tmp_path / "n.msk", codec=codec)
    assert load_mask(tmp_path / "n.msk") == m
    with pytest.raises(MaskValidationError, match="unknown codec 'lz4'"):
        save_mask(m, tmp_path / "o.msk", codec="lz4")


# -- MaskArchive -----------------------------------------------------------------------------
def organ(k: int, shape=SHAPE, space=None) -> SegmentationMask:
    arr = np.zeros(shape, bool)
    arr[k % shape[0], : k + 1, 1:] = True
    return SegmentationMask(arr, {f"organ{k}": 1}, space)


def test_archive_protocol(tmp_path):
    p = tmp_path / "a.mska"
    with MaskArchive(p, "w") as ar:
        for k in range(5):
            ar.add(f"organ{k}", organ(k))
        assert len(ar) == 5 and ar["organ4"] == organ(4)  # readable before close
    with MaskArchive(p) as ar:
        assert len(ar) == 5 and "organ3" in ar and "nope" not in ar
        assert list(ar) == [f"organ{k}" for k in range(5)] == ar.all_names()
        assert ar[0] == organ(0) and ar[-1] == organ(4) and ar["organ2"] == organ(2)
        assert ar["organ1"] == organ(1)
        assert list(ar.read_all_masks()) == ar.all_names()
        assert ar.info("organ3").mapping == {"organ3": 1}
        info = ar.info("organ2")
        assert info.index == 2 and info.voxels == 3 * (SHAPE[2] - 1) and info.dtype == "bool"
        with pytest.raises(MaskNotFoundError, match="did you mean: 'organ1'"):
            ar["organ_1"]
        with pytest.raises(KeyError):
            ar[5]
        with pytest.raises(TypeError):
            ar[1.5]
        with pytest.raises(io.UnsupportedOperation):
            ar.add("x", organ(9))
        with pytest.raises(TypeError, match="pickled"):
            pickle.dumps(ar)
    with pytest.raises(ValueError, match="closed"):
        ar["organ1"]


def test_archive_rejects_bad_adds_and_keeps_data(tmp_path):
    p = tmp_path / "a.mska"
    with MaskArchive(p, "a") as ar:
        ar.add("organ0", organ(0))
        with pytest.raises(MaskValidationError, match="already stored"):
            ar.add("organ0", organ(1))
        other = Space(shape=SHAPE[::-1], spacing=(2, 2, 2)).reverse_axis_order()
        with pytest.raises(SpaceMismatchError, match="spacing"):
            ar.add("organ1", organ(1, space=other))
        with pytest.raises(MaskValidationError):
            ar.add("raw", "not a mask")
        with pytest.raises(MaskValidationError):
            ar.add("", organ(1))
        ar.add("organ1", organ(1))
    with MaskArchive(p) as ar:
        assert ar.all_names() == ["organ0", "organ1"]


def test_tiny_grid_differences_are_one_grid(tmp_path):
    base = Space(shape=SHAPE[::-1], spacing=(0.8, 0.8, 1.5), origin=(1, 2, 3)).reverse_axis_order()
    nudged = Space(
        shape=SHAPE[::-1], spacing=(0.8 + 1.6e-4, 0.8, 1.5), origin=(1, 2, 3 - 1e-4)
    ).reverse_axis_order()
    with MaskArchive(tmp_path / "a.mska", "w", space=base) as ar:
        ar.add("a", organ(0, space=base))
        ar.add("b", organ(1, space=nudged))
        assert ar["b"].space == base  # stored on the archive's grid


def test_write_mode_is_atomic(tmp_path):
    p = tmp_path / "a.mska"
    with MaskArchive(p, "w") as ar:
        ar.add("old", organ(0))
    before = p.read_bytes()
    with pytest.raises(RuntimeError), MaskArchive(p, "w") as ar:
        ar.add("new", organ(1))
        raise RuntimeError("crash while packing")
    assert p.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.mska"]  # no temporary left behind
    with pytest.raises(RuntimeError), MaskArchive(tmp_path / "b.mska", "w") as ar:
        ar.add("new", organ(1))
        raise RuntimeError
    assert not (tmp_path / "b.mska").exists()


def test_empty_archive_and_codec_mismatch(tmp_path):
    with MaskArchive(tmp_path / "e.mska", "w"):
        pass
    with MaskArchive(tmp_path / "e.mska") as ar:
        assert len(ar) == 0 and ar.space is None and ar.version == 2
    with MaskArchive(tmp_path / "v1.mska", "w", codec="zstd") as ar:
        ar.add("a", organ(0))
    with pytest.raises(MaskValidationError, match="version-1 archive"):
        MaskArchive(tmp_path / "v1.mska", "a", codec="bitzstd")
    with pytest.raises(FileNotFoundError):
        MaskArchive(tmp_path / "missing.mska")
    with pytest.raises(ValueError, match="mode"):
        MaskArchive(tmp_path / "x.mska", "x")


def test_msk_and_mska_are_not_confused(tmp_path):
    save_mask(organ(0), tmp_path / "m.msk")
    with pytest.raises(CorruptFileError, match="MaskFile"):
        MaskArchive(tmp_path / "m.msk")
    with MaskArchive(tmp_path / "a.mska", "w") as ar:
        ar.add("a", organ(0))
    with pytest.raises(CorruptFileError, match="MaskArchive"):
        load_mask(tmp_path / "a.mska")


def test_second_writer_is_refused(tmp_path):
    p = tmp_path / "a.mska"
    with MaskArchive(p, "a") as ar:
        ar.add("a", organ(0))
        with pytest.raises(ArchiveLockedError, match="another writer"):
            MaskArchive(p, "a")
        with pytest.raises(ArchiveLockedError):
            MaskArchive(p, "w")
        with MaskArchive(p) as reader:  # readers are never blocked
            assert reader.all_names() == ["a"]
            ar.add("b", organ(1))
            assert reader.all_names() == ["a"]  # a snapshot of the commit it opened
            reader.refresh()
            assert reader.all_names() == ["a", "b"]
    assert isinstance(ArchiveLockedError("x"), (OSError, MedMaskError))


def test_threads_share_one_reader(tmp_path):
    p = tmp_path / "a.mska"
    shape = (16, 32, 32)
    with MaskArchive(p, "w") as ar:
        for k in range(12):
            ar.add(f"o{k}", organ(k, shape))
    errors = []
    with MaskArchive(p) as ar:

        def work(seed):
            rng = np.random.default_rng(seed)
            for _ in range(50):
                k = int(rng.integers(12))
                if ar[k] != organ(k, shape):
                    errors.append(k)

        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_many_masks_index_stays_short(tmp_path):
    """Appending one at a time keeps the index chain O(log n) and every mask reachable."""
    p = tmp_path / "a.mska"
    with MaskArchive(p, "a") as ar:
        for k in range(100):
            ar.add(f"o{k}", organ(k % 6))
        chain = ar.index_segments
    assert chain <= 7  # popcount(100) == 3; never more than log2(n) + 1
    with MaskArchive(p) as ar:
        assert len(ar) == 100 and ar["o99"] == organ(99 % 6) and ar[37] == organ(37 % 6)


def test_written_files_get_the_usual_permissions(tmp_path):
    """Files are written through a private temporary, but end up 0666 minus the umask."""
    old = os.umask(0o022)
    try:
        with MaskArchive(tmp_path / "w.mska", "w") as ar:
            ar.add("a", organ(0))
        with MaskArchive(tmp_path / "a.mska", "a") as ar:
            ar.add("a", organ(0))
        save_mask(organ(0), tmp_path / "m.msk")
        save_mask(organ(0), tmp_path / "v1.msk", codec="zstd")
    finally:
        os.umask(old)
    from medmask.io.atomic import file_mode

    for name in ("w.mska", "a.mska", "m.msk", "v1.msk"):
        assert (tmp_path / name).stat().st_mode & 0o777 == file_mode(), name


def test_editing_a_loaded_mask_does_not_change_the_archive(tmp_path):
    """A loaded mask owns its mapping: add_label on it, or a change of an info's mapping,
    never changes what the open archive reports."""
    with MaskArchive(tmp_path / "a.mska", "w") as ar:
        ar.add("x", SegmentationMask(np.zeros(SHAPE, np.uint8), {"a": 1}))
    with MaskArchive(tmp_path / "a.mska") as ar:
        m = ar["x"]
        region = np.zeros(SHAPE, bool)
        region[0] = True
        m.add_label(region, 2, "b")
        ar.info("x").mapping["c"] = 3
        ar.infos()[0].mapping["c"] = 3
        assert ar["x"].mapping == {"a": 1}
        assert ar.info("x").mapping == {"a": 1}


def test_stored_space_is_read_as_spacetransformer_reverses_it():
    """``space_from_disk_json`` builds the (z, y, x) space in one step; it must equal what
    spacetransformer's own ``from_dict(...).reverse_axis_order()`` gives, for oblique grids
    and for objects that leave optional keys out."""
    import json

    from medmask.spaces import space_from_disk_json

    rng = np.random.default_rng(0)
    for _ in range(100):
        axes, _r = np.linalg.qr(rng.normal(size=(3, 3)))
        obj = {
            "shape": [int(v) for v in rng.integers(1, 500, 3)],
            "origin": [float(v) for v in rng.normal(size=3) * 100],
            "spacing": [float(v) for v in rng.uniform(0.1, 5, 3)],
            "x_orientation": [float(v) for v in axes[:, 0]],
            "y_orientation": [float(v) for v in axes[:, 1]],
            "z_orientation": [float(v) for v in axes[:, 2]],
        }
        for drop in (
            (),
            ("origin",),
            ("spacing", "x_orientation", "y_orientation", "z_orientation"),
        ):
            part = {k: v for k, v in obj.items() if k not in drop}
            got = space_from_disk_json(json.dumps(part).encode())
            assert got == Space.from_dict(part).reverse_axis_order()


def test_boolean_mask_names_label_one():
    """The set voxels of a boolean mask are label 1 (docs/format.md): naming them 0, the
    background, would make ``get_binary_mask_by_names`` return the background."""
    arr = np.zeros((4, 5, 6), bool)
    arr[1, 2, 3] = True
    with pytest.raises(MaskValidationError, match="boolean mask are label 1"):
        SegmentationMask(arr, {"liver": 0})
    assert SegmentationMask(arr, {"liver": 1}).get_binary_mask_by_names("liver").sum() == 1
    u8 = arr.astype(np.uint8) * 3
    both = SegmentationMask(u8, {"background": 0, "liver": 3})  # a label map may name 0
    assert both.get_binary_mask_by_names("liver").sum() == 1


# -- one name per job: the older names still work, and say which one to use ---------------------
def test_deprecated_names_warn_and_do_the_same_job(tmp_path):
    path = tmp_path / "a.mska"
    with MaskArchive(path, "w") as ar:
        with pytest.warns(DeprecationWarning, match=r"add_segmask.*use archive\.add\(name"):
            ar.add_segmask(organ(1), "organ1")
        with (
            pytest.raises(MaskValidationError, match="expects a SegmentationMask"),
            pytest.warns(DeprecationWarning),
        ):
            ar.add_segmask(np.zeros(SHAPE, bool), "raw")
        ar.add("organ2", organ(2))
    with MaskArchive(path) as ar:
        with pytest.warns(DeprecationWarning, match=r"load_segmask.*use archive\[name\]"):
            assert ar.load_segmask("organ1") == ar["organ1"] == organ(1)
        with pytest.warns(DeprecationWarning, match=r"read_all_mapping.*infos\(\)"):
            every = ar.read_all_mapping()
        assert {n: m.to_dict() for n, m in every.items()} == {i.name: i.mapping for i in ar.infos()}
        every["organ1"]["x"] = 9  # a copy: the archive is not changed
        assert ar.info("organ1").mapping == {"organ1": 1}
