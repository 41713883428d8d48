"""Geometry shared by every foreign format: affine <-> Space, MONAI's header rule,
nearest-neighbour resampling and grid comparison.

Conventions: medmask keeps arrays ``(z, y, x)`` and their :class:`~spacetransformer.Space`
in the same ``(z, y, x)`` order; spaces are LPS (DICOM's patient coordinates). NIfTI
affines (as nibabel and MONAI report them) are RAS, so
``affine_lps = diag(-1, -1, 1, 1) @ affine_ras``, and NIfTI arrays are ``(x, y, z)``.

Grids are compared with :data:`medmask.spaces.GRID_ATOL` (1e-3 mm, and 1e-3 on
direction cosines): float32 rounding of real affines moves them by ~1e-4 and is the
same grid; a shifted or rotated grid is not.

This module needs numpy only (no nibabel): :func:`effective_affine` takes an
already-loaded nibabel image.
"""

from __future__ import annotations

import numpy as np

from .errors import MaskValidationError, SpaceMismatchError
from .spaces import (
    GRID_ATOL,
    Space,
    check_same_grid,
    describe_space,
    direction_difference,
    direction_text,
    grid_differences,
    spaces_match,
    vector_text,
    zyx_of,
)

__all__ = [
    "affine_to_space",
    "space_to_affine",
    "lps_matrix",
    "effective_affine",
    "resample_nearest",
    "grid_offset",
    "place_on_grid",
    "spaces_match",
    "check_same_grid",
    "describe_space",
    "grid_differences",
    "GRID_ATOL",
    "RAS_TO_LPS",
]

#: ``diag(-1, -1, 1, 1)``: turns a RAS affine into an LPS one and back.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def affine_to_space(affine: np.ndarray, shape_xyz: tuple[int, ...], *, atol: float = 1e-3) -> Space:
    """The ``(z, y, x)`` medmask space of a NIfTI grid.

    Args:
        affine: The 4x4 RAS affine (nibabel's ``img.affine``, or :func:`effective_affine`).
        shape_xyz: The NIfTI array shape ``(x, y, z)`` (extra dimensions ignored).
        atol: Tolerance on the orthogonality of the axes (largest allowed entry of
            ``R.T @ R - I`` for the normalised direction matrix ``R``).

    Returns:
        The space in ``(z, y, x)`` order (``.reverse_axis_order()`` gives ``(x, y, z)``).

    Raises:
        MaskValidationError: The affine is not a finite 4x4 matrix, has a zero-length
            axis, or is sheared (non-orthogonal axes).
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise MaskValidationError(f"affine must be a finite 4x4 matrix, got shape {a.shape}")
    return lps_to_space(RAS_TO_LPS @ a, shape_xyz, atol=atol)


def lps_to_space(lps: np.ndarray, shape_xyz: tuple[int, ...], *, atol: float = 1e-3) -> Space:
    """The ``(z, y, x)`` space of an LPS index-to-world matrix (columns: the x, y, z steps).

    Args:
        lps: A 4x4 (or 3x4) matrix: columns 0-2 the world step of array axes x, y, z,
            column 3 the world position of voxel 0.
        shape_xyz: The sizes along x, y, z.
        atol: Orthogonality tolerance (see :func:`affine_to_space`).

    Returns:
        The ``(z, y, x)`` space.

    Raises:
        MaskValidationError: Non-finite entries, a zero-length axis, sheared axes, or a
            shape that is not three positive sizes.
    """
    lps = np.asarray(lps, dtype=np.float64)
    if lps.shape[0] < 3 or lps.shape[1] != 4 or not np.all(np.isfinite(lps)):
        raise MaskValidationError(f"index-to-world matrix must be finite 3x4/4x4, got {lps.shape}")
    if len(shape_xyz) < 3 or any(int(s) <= 0 for s in shape_xyz[:3]):
        raise MaskValidationError(f"shape must hold three positive sizes, got {tuple(shape_xyz)}")
    cols = lps[:3, :3]
    spacing = np.linalg.norm(cols, axis=0)
    if np.any(spacing <= 0):
        raise MaskValidationError(f"affine has a zero-length axis: {lps.tolist()}")
    rot = cols / spacing
    err = float(np.abs(rot.T @ rot - np.eye(3)).max())
    if err > atol:
        raise MaskValidationError(
            f"affine is sheared (its axes are not orthogonal, deviation {err:.2g} > {atol}); "
            "medmask grids need orthogonal axes"
        )
    xyz = Space(
        shape=tuple(int(s) for s in shape_xyz[:3]),
        origin=tuple(float(v) for v in lps[:3, 3]),
        spacing=tuple(float(v) for v in spacing),
        x_orientation=tuple(float(v) for v in rot[:, 0]),
        y_orientation=tuple(float(v) for v in rot[:, 1]),
        z_orientation=tuple(float(v) for v in rot[:, 2]),
    )
    return zyx_of(xyz)


def lps_matrix(space_zyx: Space) -> np.ndarray:
    """The 4x4 LPS index-to-world matrix of a ``(z, y, x)`` space (columns: x, y, z steps).

    Args:
        space_zyx: A medmask space.

    Returns:
        A float64 4x4 array; ``M @ [i, j, k, 1]`` is the LPS position of voxel
        ``array[k, j, i]``.
    """
    xyz = space_zyx.reverse_axis_order()
    lps = np.eye(4)
    rot = np.column_stack([xyz.x_orientation, xyz.y_orientation, xyz.z_orientation])
    lps[:3, :3] = rot * np.asarray(xyz.spacing, dtype=np.float64)
    lps[:3, 3] = xyz.origin
    return lps


def space_to_affine(space_zyx: Space) -> np.ndarray:
    """The 4x4 RAS affine (as nibabel/MONAI report it) of a ``(z, y, x)`` medmask space.

    Args:
        space_zyx: A medmask space (``(z, y, x)`` order, as ``SegmentationMask.space``).

    Returns:
        A float64 4x4 array; column ``k`` of the upper 3x3 block is the RAS step of
        NIfTI axis ``k`` (``x``, ``y``, ``z``), the last column the RAS centre of voxel 0.
    """
    return RAS_TO_LPS @ lps_matrix(space_zyx)


def _spacing(affine: np.ndarray, rank: int) -> np.ndarray:
    sp = np.sqrt(np.sum(np.asarray(affine, float)[:rank, :rank] ** 2, axis=0))
    sp[sp == 0] = 1.0
    return sp


def effective_affine(img) -> np.ndarray:
    """The RAS affine MONAI's NIfTI loading reports for a nibabel image.

    That is ``img.affine`` (the sform when its code is set, else the qform), except
    for headers whose pixdim contradicts it: then, like MONAI's
    ``correct_nifti_header_if_necessary``, take the form whose spacing agrees with
    pixdim (the qform when the sform is the odd one out, and vice versa), stored the
    way MONAI stores it (through the header's float32 fields), so that the affine is
    bit for bit the one ``LoadImage`` reports.

    Args:
        img: A ``nibabel.Nifti1Image`` (or ``Nifti2Image``).

    Returns:
        A float64 4x4 RAS affine.
    """
    affine = np.array(img.affine, dtype=np.float64)
    header = img.header
    rank = int(header["dim"][0])
    if rank >= 5:
        return affine
    pixdim = np.asarray(header.get_zooms()[:rank], dtype=np.float64)
    if np.allclose(pixdim, _spacing(affine, rank)):
        return affine
    sform, qform = img.get_sform(), img.get_qform()
    sform_ok = np.allclose(_spacing(sform, rank), pixdim)
    qform_ok = np.allclose(_spacing(qform, rank), pixdim)
    # As MONAI: copy the agreeing form into the other one's header fields (float32 srow,
    # or quaternion), then take nibabel's best affine; on a copy of the header, so that
    # the result is bit for bit what MONAI reports.
    fixed = header.copy()
    if header["sform_code"] != 0:
        if sform_ok or not qform_ok:
            return affine
        fixed.set_sform(qform)
        return np.array(fixed.get_best_affine(), dtype=np.float64)
    if header["qform_code"] != 0 and not qform_ok and sform_ok:
        fixed.set_qform(sform)
        return np.array(fixed.get_best_affine(), dtype=np.float64)
    return affine


def resample_nearest(array_zyx: np.ndarray, src: Space, dst: Space) -> np.ndarray:
    """Nearest-neighbour resampling of a label array from grid ``src`` onto grid ``dst``.

    Voxels of ``dst`` whose centre falls outside ``src`` become 0. Labels are never
    blended (nearest neighbour), so a binary mask stays binary.

    Args:
        array_zyx: The ``(z, y, x)`` array on ``src``.
        src: Its ``(z, y, x)`` space.
        dst: The target ``(z, y, x)`` space.

    Returns:
        A new array of ``dst.shape`` and the dtype of ``array_zyx``.
    """
    m_src, m_dst = lps_matrix(src), lps_matrix(dst)
    inv = np.linalg.inv(m_src[:3, :3])
    a = inv @ m_dst[:3, :3]  # dst (x, y, z) index -> src (x, y, z) index
    b = inv @ (m_dst[:3, 3] - m_src[:3, 3])
    nz, ny, nx = (int(v) for v in dst.shape)
    sz, sy, sx = (int(v) for v in src.shape)
    out = np.zeros((nz, ny, nx), array_zyx.dtype)
    yy, xx = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
    base = a[:, 0, None, None] * xx + a[:, 1, None, None] * yy + b[:, None, None]
    for z in range(nz):
        idx = np.floor(base + a[:, 2, None, None] * z + 0.5).astype(np.int64)
        ix, iy, iz = idx
        ok = (ix >= 0) & (ix < sx) & (iy >= 0) & (iy < sy) & (iz >= 0) & (iz < sz)
        out[z][ok] = array_zyx[iz[ok], iy[ok], ix[ok]]
    return out


def _lattice_differences(a: Space, b: Space, atol: float) -> list[str]:
    """What keeps two grids off one lattice: spacing or direction (never shape or origin)."""
    out = []
    if float(np.abs(np.subtract(a.spacing, b.spacing)).max()) > atol:
        out.append(f"spacing (z, y, x) {vector_text(a.spacing)} vs {vector_text(b.spacing)}")
    if direction_difference(a, b) > atol:
        out.append(f"direction (z, y, x axes) {direction_text(a)} vs {direction_text(b)}")
    return out


def _grid_mismatch(archive_space: Space, image_space: Space, why: str) -> SpaceMismatchError:
    return SpaceMismatchError(
        f"the masks' grid is not on the image's lattice ({why}): masks {describe_space(archive_space)}; "
        f"image {describe_space(image_space)}. medmask moves masks onto an image's grid only by "
        "whole voxels (same spacing and direction, never interpolating); resampling masks is "
        "your decision (e.g. MONAI's ResampleToMatchd(mode='nearest') after loading)"
    )


def grid_offset(
    archive_space: Space, image_space: Space, *, atol: float = GRID_ATOL
) -> tuple[int, int, int]:
    """Where the masks' grid lies on an image's grid, in whole voxels.

    Two grids are one lattice when they have the same spacing and direction and the
    masks' voxel 0 falls on a voxel centre of the image's grid; their shapes may differ
    (a DICOM SEG's grid is the extent of its frames, not the whole series).

    Args:
        archive_space: The ``(z, y, x)`` space of the masks (e.g. ``MaskArchive.space``).
        image_space: The ``(z, y, x)`` space of the image.
        atol: Tolerance in millimetres (origin, spacing) and on direction cosines
            (default :data:`GRID_ATOL`).

    Returns:
        ``(dz, dy, dx)``: mask voxel ``(k, j, i)`` is image voxel ``(k + dz, j + dy, i + dx)``;
        ``(0, 0, 0)`` when the grids start at the same voxel.

    Raises:
        SpaceMismatchError: Another spacing or direction, or an offset that is not a whole
            number of voxels; the message describes both grids.
    """
    diffs = _lattice_differences(archive_space, image_space, atol)
    if diffs:
        raise _grid_mismatch(archive_space, image_space, "; ".join(diffs))
    m_img = lps_matrix(image_space)
    delta = np.subtract(lps_matrix(archive_space)[:3, 3], m_img[:3, 3])
    ijk = np.linalg.solve(m_img[:3, :3], delta)  # (x, y, z) index of the masks' voxel 0
    whole = np.rint(ijk)
    off_mm = float(np.abs(m_img[:3, :3] @ (ijk - whole)).max())
    if off_mm > atol:
        raise _grid_mismatch(
            archive_space,
            image_space,
            f"the masks' first voxel lies {off_mm:.3g} mm off the image's voxel centres",
        )
    dx, dy, dz = (int(v) for v in whole)
    return dz, dy, dx


def place_on_grid(
    array: np.ndarray, offset: tuple[int, int, int], shape_zyx: tuple[int, int, int]
) -> np.ndarray:
    """Put an array onto another grid of the same lattice: pad with 0 and crop, exactly.

    Args:
        array: ``(..., z, y, x)``: leading axes (channels) are kept.
        offset: ``(dz, dy, dx)`` from :func:`grid_offset`: ``array[..., k, j, i]`` goes to
            ``out[..., k + dz, j + dy, i + dx]``.
        shape_zyx: The target grid's ``(z, y, x)`` shape.

    Returns:
        A new array of shape ``(..., *shape_zyx)`` and the dtype of ``array``; voxels of
        ``array`` outside the target grid are left out (callers that must not lose voxels
        check the masks' bounding boxes against the target first).
    """
    out = np.zeros((*array.shape[:-3], *(int(s) for s in shape_zyx)), array.dtype)
    src, dst = _overlap(array.shape[-3:], offset, shape_zyx)
    if src is not None:
        out[(..., *dst)] = array[(..., *src)]
    return out


def _overlap(src_shape, offset, dst_shape):
    """The slices of ``src`` and ``dst`` that overlap, or ``(None, None)``."""
    src, dst = [], []
    for n_src, d, n_dst in zip(src_shape, offset, dst_shape, strict=True):
        lo, hi = max(0, -int(d)), min(int(n_src), int(n_dst) - int(d))
        if hi <= lo:
            return None, None
        src.append(slice(lo, hi))
        dst.append(slice(lo + int(d), hi + int(d)))
    return tuple(src), tuple(dst)
