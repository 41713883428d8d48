"""medmask.geometry.grid_offset / place_on_grid: masks on an image's grid by whole voxels only."""

from __future__ import annotations

import numpy as np
import pytest

from medmask.errors import SpaceMismatchError
from medmask.geometry import grid_offset, lps_matrix, place_on_grid
from medmask.spaces import Space

# an oblique grid, as the real case's: rotated about z, 1.5 mm voxels
_C, _S = np.cos(0.3), np.sin(0.3)
_AXES = {"x_orientation": (_C, _S, 0.0), "y_orientation": (-_S, _C, 0.0)}


def _space(shape_xyz, origin, spacing=(1.5, 1.5, 1.5), **axes) -> Space:
    return Space(
        shape=shape_xyz, origin=origin, spacing=spacing, **{**_AXES, **axes}
    ).reverse_axis_order()


def _shifted(space: Space, ijk, shape_xyz) -> Space:
    """The grid whose voxel 0 is voxel ``ijk`` (x, y, z) of ``space``."""
    m = lps_matrix(space)
    origin = m[:3, 3] + m[:3, :3] @ np.asarray(ijk, float)
    xyz = space.reverse_axis_order()
    return Space(
        shape=shape_xyz,
        origin=tuple(origin),
        spacing=xyz.spacing,
        x_orientation=xyz.x_orientation,
        y_orientation=xyz.y_orientation,
        z_orientation=xyz.z_orientation,
    ).reverse_axis_order()


IMAGE = _space((40, 30, 20), (-12.5, 30.25, 94.59))


@pytest.mark.parametrize("ijk", [(0, 0, 0), (0, 0, 1), (3, -2, 5), (-4, 0, -1)])
def test_the_offset_is_the_whole_voxel_shift_in_zyx_order(ijk):
    masks = _shifted(IMAGE, ijk, (38, 30, 19))
    assert grid_offset(masks, IMAGE) == (ijk[2], ijk[1], ijk[0])


def test_float32_rounding_of_the_origin_is_the_same_lattice():
    masks = _shifted(IMAGE, (0, 0, 1), (40, 30, 19))
    xyz = masks.reverse_axis_order()
    rounded = Space(
        shape=xyz.shape,
        origin=tuple(float(np.float32(v)) for v in xyz.origin),
        spacing=xyz.spacing,
        x_orientation=xyz.x_orientation,
        y_orientation=xyz.y_orientation,
        z_orientation=xyz.z_orientation,
    ).reverse_axis_order()
    assert grid_offset(rounded, IMAGE) == (1, 0, 0)


def _message(masks: Space) -> str:
    with pytest.raises(SpaceMismatchError) as err:
        grid_offset(masks, IMAGE)
    text = str(err.value)
    # both grids are named
    assert "masks shape(z,y,x)=" in text and "image shape(z,y,x)=(20, 30, 40)" in text
    return text


def test_half_a_voxel_off_is_not_the_same_lattice():
    text = _message(_shifted(IMAGE, (0, 0, 0.5), (40, 30, 20)))
    assert "0.75 mm off the image's voxel centres" in text


def test_another_spacing_is_not_the_same_lattice():
    text = _message(_space((40, 30, 20), (-12.5, 30.25, 94.59), spacing=(1.5, 1.5, 3.0)))
    assert "spacing (z, y, x) (3, 1.5, 1.5) vs (1.5, 1.5, 1.5)" in text


def test_another_direction_is_not_the_same_lattice():
    text = _message(
        _space(
            (40, 30, 20),
            (-12.5, 30.25, 94.59),
            x_orientation=(1.0, 0.0, 0.0),
            y_orientation=(0.0, 1.0, 0.0),
        )
    )
    assert "direction (z, y, x axes)" in text


def test_place_on_grid_pads_and_crops_exactly():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 5, size=(2, 4, 5, 6), dtype=np.uint8)  # channels kept
    out = place_on_grid(src, (1, -2, 3), (6, 5, 7))
    assert out.shape == (2, 6, 5, 7) and out.dtype == np.uint8
    expected = np.zeros_like(out)
    expected[:, 1:5, 0:3, 3:7] = src[:, :, 2:5, 0:4]
    np.testing.assert_array_equal(out, expected)
    # no overlap at all: all zeros
    assert not place_on_grid(src, (10, 0, 0), (6, 5, 7)).any()
