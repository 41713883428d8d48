"""medmask.geometry.grid_offset: an archive's grid on an image's grid (one lattice, an integer
voxel offset), or an error that names both grids."""

from __future__ import annotations

import numpy as np
import pytest

from medmask.errors import SpaceMismatchError
from medmask.geometry import grid_offset, lps_matrix, lps_to_space
from medmask.phantoms import phantom_case


def shifted(space, dz: float, dy: float, dx: float, shape=None):
    """The grid whose voxel (0, 0, 0) is ``space``'s voxel (dz, dy, dx), of ``shape``."""
    m = lps_matrix(space)
    m[:3, 3] = m[:3, :3] @ np.array([dx, dy, dz]) + m[:3, 3]
    shape = shape or tuple(int(s) for s in space.shape)
    return lps_to_space(m, shape[::-1])


@pytest.fixture(scope="module")
def oblique():
    return phantom_case(3, (20, 30, 40))[1]


def test_the_same_grid_is_offset_zero(oblique):
    assert grid_offset(oblique, oblique) == (0, 0, 0)


@pytest.mark.parametrize("offset", [(2, -3, 5), (0, 0, 1), (-7, 11, 0)])
def test_a_cropped_archive_lies_at_its_integer_offset(oblique, offset):
    archive = shifted(oblique, *offset, shape=(5, 6, 7))
    assert grid_offset(archive, oblique) == offset
    # the inverse: the image lies at minus the offset on the archive's grid
    assert grid_offset(oblique, archive) == tuple(-v for v in offset)
    # voxel (z, y, x) of the archive has the world position of image voxel (z + dz, ...)
    a, i = lps_matrix(archive), lps_matrix(oblique)
    z, y, x = 1, 2, 3
    world_a = a @ [x, y, z, 1]
    world_i = i @ [x + offset[2], y + offset[1], z + offset[0], 1]
    np.testing.assert_allclose(world_a, world_i, atol=1e-9)


def test_float32_rounding_of_the_origin_is_the_same_lattice(oblique):
    archive = shifted(oblique, 1, 2, 3)
    m = lps_matrix(archive)
    m[:3, 3] = m[:3, 3].astype(np.float32)
    assert grid_offset(lps_to_space(m, tuple(int(s) for s in archive.shape)[::-1]), oblique) == (
        1,
        2,
        3,
    )


def test_half_a_voxel_off_names_both_grids(oblique):
    archive = shifted(oblique, 0, 0.5, 0)
    with pytest.raises(SpaceMismatchError) as info:
        grid_offset(archive, oblique, archive_name="case.mska", image_name="ct.nii")
    msg = str(info.value)
    assert "case.mska" in msg and "ct.nii" in msg
    assert "not on a voxel" in msg and "0.5" in msg
    assert msg.count("shape(z,y,x)=") == 2  # both grids described


def test_other_spacing_or_directions_are_refused(oblique):
    m = lps_matrix(oblique)
    m[:3, 0] *= 1.5  # x spacing
    with pytest.raises(SpaceMismatchError, match="spacing"):
        grid_offset(lps_to_space(m, tuple(int(s) for s in oblique.shape)[::-1]), oblique)
    flipped = lps_matrix(oblique)
    flipped[:3, 1] *= -1  # y axis reversed
    with pytest.raises(SpaceMismatchError, match="directions"):
        grid_offset(lps_to_space(flipped, tuple(int(s) for s in oblique.shape)[::-1]), oblique)
