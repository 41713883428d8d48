"""Image sources read by window (nibabel memory map, python-blosc2, zarr), the whole-read
fallback for .nii.gz, and ``medmask convert-images`` (nnU-Net's chunking, exact data)."""

from __future__ import annotations

import gzip
import json
import warnings

import numpy as np
import pytest

from medmask.cli import main
from medmask.errors import MaskValidationError
from medmask.geometry import affine_to_space, space_to_affine
from medmask.patches import ByteLRU
from medmask.patches.convert import blosc2_chunks, convert_image, convert_images
from medmask.patches.images import (
    Blosc2Image,
    NiftiImage,
    WholeImageReadWarning,
    ZarrImage,
    open_image,
)
from medmask.phantoms import phantom_case

nib = pytest.importorskip("nibabel")

SHAPE = (14, 18, 22)  # (z, y, x)
BOXES = [
    (2, 9, 3, 11, 5, 20),  # inside
    (-3, 5, 10, 25, 18, 30),  # past the grid on every side
    (0, 14, 0, 18, 0, 22),  # the whole grid
    (20, 24, 0, 3, 0, 3),  # wholly outside
]


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """An int16 CT ``(z, y, x)`` on an oblique grid, as .nii.gz and .nii (and its affine)."""
    d = tmp_path_factory.mktemp("ct")
    _, space = phantom_case(1, SHAPE)
    affine = space_to_affine(space)
    data = np.random.default_rng(0).integers(-1000, 2000, SHAPE).astype(np.int16)
    img = nib.Nifti1Image(data.T, affine)
    nib.save(img, str(d / "ct.nii.gz"))
    nib.save(img, str(d / "ct.nii"))
    return d, data, space


def window(data: np.ndarray, box, pad=0) -> np.ndarray:
    """The truth: ``box`` of ``(C, z, y, x)`` data, ``pad`` outside."""
    out = np.full(
        (data.shape[0], *(box[2 * a + 1] - box[2 * a] for a in range(3))), pad, data.dtype
    )
    src, dst = [], []
    for a in range(3):
        lo, hi = max(box[2 * a], 0), min(box[2 * a + 1], data.shape[a + 1])
        src.append(slice(lo, max(hi, lo)))
        dst.append(slice(lo - box[2 * a], max(hi, lo) - box[2 * a]))
    out[(slice(None), *dst)] = data[(slice(None), *src)]
    return out


@pytest.mark.parametrize("box", BOXES)
def test_an_uncompressed_nifti_window_is_the_truth_and_padded(ct, box):
    d, data, space = ct
    src = NiftiImage(d / "ct.nii")
    assert not src.compressed and src.shape == SHAPE and src.channels == 1
    assert src.dtype == np.int16
    got = src.read(box, pad=-1024)
    np.testing.assert_array_equal(got, window(data[None], box, pad=-1024))
    assert got.flags.writeable and got.flags.c_contiguous
    f = src.read(box, dtype=np.float32)
    assert f.dtype == np.float32 and np.array_equal(f, window(data[None], box).astype(np.float32))


def test_the_nifti_grid_is_the_masks_grid(ct):
    d, _, space = ct
    got = NiftiImage(d / "ct.nii").space
    np.testing.assert_allclose(space_to_affine(got), space_to_affine(space), atol=1e-4)


def test_scaled_and_four_d_nifti_windows(tmp_path):
    data = np.random.default_rng(1).integers(0, 500, (6, 5, 4, 2)).astype(np.int16)  # x y z c
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(0.5, -10)
    nib.save(img, str(tmp_path / "two.nii"))
    src = NiftiImage(tmp_path / "two.nii")
    assert src.channels == 2 and src.shape == (4, 5, 6) and src.dtype == np.float32
    truth = (data.astype(np.float32) * 0.5 - 10).transpose(3, 2, 1, 0)
    np.testing.assert_allclose(src.read((1, 3, 0, 5, 2, 6)), truth[:, 1:3, 0:5, 2:6])


def test_a_compressed_nifti_is_read_whole_once_per_worker_with_advice(ct):
    d, data, _ = ct
    src = NiftiImage(d / "ct.nii.gz")
    assert src.compressed
    cache = ByteLRU(1 << 24)
    with pytest.warns(WholeImageReadWarning, match="medmask convert-images"):
        first = src.read(BOXES[0], cache=cache)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # cached: no second read, no second warning
        second = src.read(BOXES[1], cache=cache)
    assert cache.misses == 1 and cache.hits == 1
    np.testing.assert_array_equal(first, window(data[None], BOXES[0]))
    np.testing.assert_array_equal(second, window(data[None], BOXES[1]))
    tiny = ByteLRU(data.nbytes - 1)  # the budget holds: a larger image is not kept
    with pytest.warns(WholeImageReadWarning):
        src.read(BOXES[0], cache=tiny)
    assert tiny.nbytes == 0


def test_convert_to_nii_is_the_same_file_uncompressed(ct, tmp_path):
    d, data, _ = ct
    out = convert_image(d / "ct.nii.gz", tmp_path / "ct.nii")
    with gzip.open(d / "ct.nii.gz") as fh:
        assert out.dst.read_bytes() == fh.read()
    np.testing.assert_array_equal(NiftiImage(out.dst).read((0, 14, 0, 18, 0, 22))[0], data)


def test_convert_to_b2nd_keeps_data_and_grid_with_nnunet_chunks(ct, tmp_path):
    blosc2 = pytest.importorskip("blosc2")
    d, data, space = ct
    out = convert_image(d / "ct.nii.gz", tmp_path / "ct.b2nd", patch=(8, 8, 8))
    arr = blosc2.open(str(out.dst), mode="r")
    assert arr.shape == (1, *SHAPE) and arr.dtype == np.int16
    assert (tuple(arr.blocks), tuple(arr.chunks)) == blosc2_chunks(arr.shape, (8, 8, 8), 2)
    src = Blosc2Image(out.dst)
    np.testing.assert_allclose(
        space_to_affine(src.space), space_to_affine(space), atol=1e-4
    )  # the affine travels in the file's metadata
    for box in BOXES:
        np.testing.assert_array_equal(src.read(box), window(data[None], box))


def test_the_chunk_rule_is_nnunets():
    nnunet = pytest.importorskip("nnunetv2.training.dataloading.nnunet_dataset")
    rng = np.random.default_rng(0)
    shapes = [((1, 294, 192, 179), (96, 96, 96), 4), ((1, 512, 512, 300), (128, 128, 128), 2)]
    for _ in range(100):
        shape = (int(rng.integers(1, 3)), *(int(v) for v in rng.integers(5, 600, 3)))
        shapes.append((shape, tuple(int(v) for v in rng.integers(1, 300, 3)), 4))
    for shape, patch, itemsize in shapes:
        assert blosc2_chunks(shape, patch, itemsize) == nnunet.comp_blosc2_params(
            shape, patch, itemsize
        ), (shape, patch, itemsize)


def test_nnunets_own_b2nd_has_no_grid_but_reads(tmp_path):
    blosc2 = pytest.importorskip("blosc2")
    data = np.random.default_rng(2).normal(size=(1, *SHAPE)).astype(np.float32)
    blosc2.asarray(data, urlpath=str(tmp_path / "case.b2nd"), mode="w")
    src = open_image(tmp_path / "case.b2nd")
    assert isinstance(src, Blosc2Image) and src.space is None and src.shape == SHAPE
    np.testing.assert_array_equal(src.read(BOXES[1]), window(data, BOXES[1]))
    _, space = phantom_case(1, SHAPE)
    given = open_image(tmp_path / "case.b2nd", affine=space_to_affine(space))
    assert given.space is not None


def test_zarr_arrays_and_ome_zarr_images(tmp_path):
    zarr = pytest.importorskip("zarr")
    data = np.random.default_rng(3).integers(0, 100, (2, *SHAPE)).astype(np.uint8)
    plain = zarr.open(
        str(tmp_path / "img.zarr"), mode="w", shape=data.shape, dtype="u1", chunks=(1, 7, 9, 11)
    )
    plain[:] = data
    src = open_image(tmp_path / "img.zarr")
    assert isinstance(src, ZarrImage) and src.channels == 2 and src.space is None
    for box in BOXES:
        np.testing.assert_array_equal(src.read(box), window(data, box))
    group = zarr.open_group(str(tmp_path / "ome.zarr"), mode="w")
    level0 = group.create_array("0", shape=(1, *data.shape), dtype="u1", chunks=(1, 1, 7, 9, 11))
    level0[:] = data[None]
    axes = [{"name": n} for n in ("t", "c", "z", "y", "x")]
    group.attrs["multiscales"] = [{"axes": axes, "datasets": [{"path": "0"}]}]
    ome = open_image(tmp_path / "ome.zarr")
    assert ome.shape == SHAPE and ome.channels == 2
    np.testing.assert_array_equal(ome.read(BOXES[1]), window(data, BOXES[1]))


def test_bad_windows_and_files_are_clear_errors(ct, tmp_path):
    d, _, _ = ct
    src = NiftiImage(d / "ct.nii")
    with pytest.raises(MaskValidationError, match=r"\(z0, z1, y0, y1, x0, x1\)"):
        src.read((0, 4, 0, 4))  # a window of the wrong rank
    with pytest.raises(MaskValidationError, match="stops >= starts"):
        src.read((4, 0, 0, 4, 0, 4))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(MaskValidationError, match="convert-images"):
        open_image(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError):
        open_image(tmp_path / "missing.nii")


def test_sources_pickle_without_handles(ct):
    import pickle

    d, data, _ = ct
    src = NiftiImage(d / "ct.nii")
    src.read(BOXES[0])
    clone = pickle.loads(pickle.dumps(src))
    assert clone._handle is None
    np.testing.assert_array_equal(clone.read(BOXES[0]), window(data[None], BOXES[0]))


def test_the_command_converts_a_folder_and_resumes(ct, tmp_path, capsys):
    d, data, _ = ct
    (tmp_path / "src" / "case1").mkdir(parents=True)
    (tmp_path / "src" / "case1" / "ct.nii.gz").write_bytes((d / "ct.nii.gz").read_bytes())
    out = tmp_path / "out"
    args = ["convert-images", str(tmp_path / "src"), "-o", str(out), "--to", "b2nd"]
    assert main([*args, "--pattern", "*/ct.nii.gz", "--patch", "8", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["dst"] for r in rows] == [str(out / "case1" / "ct.b2nd")] and not rows[0]["skipped"]
    np.testing.assert_array_equal(
        open_image(out / "case1" / "ct.b2nd").read((0, 14, 0, 18, 0, 22))[0], data
    )
    assert main([*args, "--pattern", "*/ct.nii.gz"]) == 0
    assert "1 already converted" in capsys.readouterr().out
    assert main(["convert-images", str(tmp_path / "nope"), "-o", str(out), "--to", "nii"]) == 2
    assert main([*args, "--pattern", "*.nii.gz"]) == 1  # nothing matches: a clear error
    assert "no image matches" in capsys.readouterr().err
    assert main([*args, "--patch", "8", "8"]) == 2


def test_a_converted_nii_checks_against_the_grid_it_came_from(ct, tmp_path):
    d, _, space = ct
    out = convert_images(d / "ct.nii.gz", tmp_path, to="nii")
    assert len(out) == 1 and out[0].dst.name == "ct.nii"
    got = NiftiImage(out[0].dst).space
    ref = affine_to_space(space_to_affine(space), SHAPE[::-1])
    np.testing.assert_allclose(space_to_affine(got), space_to_affine(ref), atol=1e-4)


@pytest.mark.parametrize("lead", [(), (1,)])
def test_a_window_is_written_into_a_given_array(ct, tmp_path, lead):
    """``read(box, out=...)``: the window lands in ``out`` (a batch's slot), padded or not,
    the same as a new read; blosc2 (3-D and 4-D files) decompresses straight into it."""
    blosc2 = pytest.importorskip("blosc2")
    d, _, _ = ct
    data = np.random.default_rng(4).normal(size=(1, *SHAPE)).astype(np.float32)
    blosc2.asarray(data.reshape(*lead, *SHAPE), urlpath=str(tmp_path / "c.b2nd"), mode="w")
    for src in (open_image(tmp_path / "c.b2nd"), NiftiImage(d / "ct.nii")):
        for box in BOXES:
            want = src.read(box, dtype=np.float32, pad=-5)
            slot = np.full((2, *want.shape), 7, np.float32)
            assert src.read(box, pad=-5, out=slot[1]) is not None
            np.testing.assert_array_equal(slot[1], want)
            assert (slot[0] == 7).all()  # nothing written outside the slot
        with pytest.raises(MaskValidationError, match="out has shape"):
            src.read(BOXES[0], out=np.zeros((1, 2, 2, 2), np.float32))
