"""Masks on an image's grid (``LoadMask(like=...)``, ``LoadMaskd(like="image")``) and the
grid check between loaded masks and loaded images.

An archive's grid may be only part of the image's: a DICOM SEG packed without its source
series covers the extent of its frames, not the whole series. Masks are moved onto the
image's grid only when both grids are one lattice (same spacing and direction, a whole
number of voxels apart: :func:`medmask.geometry.grid_offset`), by padding with 0 and
cropping, exactly; never by interpolation (resampling masks is the user's decision).

Everything here is NumPy; the transforms wrap the result as a ``MetaTensor``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from medmask.errors import MaskValidationError, SpaceMismatchError
from medmask.geometry import RAS_TO_LPS, affine_to_space, grid_offset, place_on_grid
from medmask.spaces import Space, describe_space, grid_differences, spaces_match

__all__ = ["image_grid", "place_like", "grid_of_meta", "check_same_grid_as"]


def _floats(value: Any) -> np.ndarray:
    """A tensor or array-like as a float64 NumPy array (``tolist`` works for both)."""
    raw = value.tolist() if hasattr(value, "tolist") else value
    return np.asarray(raw, dtype=np.float64)


def image_grid(like: Any, what: str = "like") -> tuple[np.ndarray, Space]:
    """The RAS affine and ``(z, y, x)`` space of an image given as ``like``.

    Args:
        like: A ``MetaTensor`` (any tensor or array with ``affine``; its last three axes
            are spatial, ``(x, y, z)`` as MONAI has them; ``meta["space"] == "LPS"`` is
            honoured), or a pair ``(affine, spatial_shape)``: the 4x4 RAS affine as MONAI
            reports it and the ``(x, y, z)`` shape.
        what: Words naming ``like`` in messages.

    Returns:
        ``(affine, space)``: the 4x4 float64 RAS affine and the ``(z, y, x)`` space.

    Raises:
        MaskValidationError: ``like`` is neither, its affine is not 4x4 (a batch), or it
            has fewer than three spatial axes.
    """
    if hasattr(like, "affine"):
        affine, shape = _floats(like.affine), tuple(int(s) for s in like.shape[-3:])
        meta = getattr(like, "meta", None)
        if isinstance(meta, Mapping) and str(meta.get("space", "RAS")).upper() == "LPS":
            affine = RAS_TO_LPS @ affine
        if len(like.shape) < 3:
            raise MaskValidationError(f"{what}: an image with three spatial axes is needed")
    elif isinstance(like, tuple | list) and len(like) == 2:
        affine, shape = _floats(like[0]), tuple(int(s) for s in like[1])
    else:
        raise MaskValidationError(
            f"{what} must be a loaded image (a MetaTensor with an affine) or "
            f"(affine, spatial_shape), got {type(like).__name__}"
        )
    if affine.shape != (4, 4) or len(shape) != 3:
        raise MaskValidationError(
            f"{what}: need one 4x4 affine and an (x, y, z) shape, got an affine of shape "
            f"{affine.shape} and shape {shape} (a batch? place masks before collating)"
        )
    return affine, affine_to_space(affine, shape)


def grid_of_meta(array: np.ndarray, meta: Mapping) -> Space:
    """The ``(z, y, x)`` space of loaded masks: their ``(C, x, y, z)`` array and meta."""
    return affine_to_space(_floats(meta["affine"]), array.shape[-3:])


def place_like(
    array: np.ndarray, meta: dict, like: Any, what: str = "like"
) -> tuple[np.ndarray, dict]:
    """Loaded masks moved onto the grid of the image ``like`` (pad and crop, exact).

    Args:
        array: The masks, ``(C, x, y, z)`` as :func:`~medmask_monai._load.load_mask_array`
            returns them.
        meta: Their meta (``affine`` RAS, ``filename_or_obj``, ``labels``, ``mask_mode``).
        like: The image (see :func:`image_grid`).
        what: Words naming ``like`` in messages.

    Returns:
        ``(array, meta)`` on the image's grid: the image's affine and spatial shape.

    Raises:
        SpaceMismatchError: The grids are not one lattice (both are described), or masks
            have voxels outside the image's grid (they would be lost; they are named).
        MaskValidationError: ``like`` is not an image or an ``(affine, shape)`` pair.
    """
    affine, target = image_grid(like, what)
    source = grid_of_meta(array, meta)
    where = meta.get("filename_or_obj")
    if spaces_match(source, target):
        return array, _meta_on(meta, affine, target)
    try:
        offset = grid_offset(source, target)
    except SpaceMismatchError as exc:
        exc.add_context(path=where)
        raise
    czyx = array.transpose(0, 3, 2, 1)  # the C-order (C, z, y, x) buffer
    _refuse_lost_voxels(czyx, offset, target, meta, where)
    placed = place_on_grid(czyx, offset, tuple(int(s) for s in target.shape))
    return placed.transpose(0, 3, 2, 1), _meta_on(meta, affine, target)


def _meta_on(meta: dict, affine: np.ndarray, space: Space) -> dict:
    out = dict(meta)
    out["affine"] = affine.copy()
    out["original_affine"] = affine.copy()
    out["spatial_shape"] = np.array(space.shape[::-1], dtype=np.int64)
    return out


def _refuse_lost_voxels(czyx: np.ndarray, offset, target: Space, meta: Mapping, where) -> None:
    """Raise when masks have voxels outside the image's grid (cropping would drop them)."""
    window = tuple(
        slice(max(0, -d), max(0, min(n, m - d)))
        for n, d, m in zip(czyx.shape[1:], offset, target.shape, strict=True)
    )
    total = int(np.count_nonzero(czyx))
    if total == int(np.count_nonzero(czyx[(slice(None), *window)])):
        return
    outside = czyx.copy()
    outside[(slice(None), *window)] = 0
    labels = meta.get("labels") or {}
    if meta.get("mask_mode") == "channels":
        levels = sorted(set(labels.values()))
        hit = {levels[c] for c in np.flatnonzero(outside.reshape(len(outside), -1).any(axis=1))}
    else:
        hit = {int(v) for v in np.unique(outside[outside != 0])}
    names = [n for n, v in labels.items() if v in hit] or sorted(hit)
    raise SpaceMismatchError(
        f"masks {names} have voxels outside the image's grid (the masks' voxel 0 is the "
        f"image's voxel (z, y, x) {tuple(offset)}); placing them on it would drop those voxels: "
        f"masks {describe_space(grid_of_meta(czyx.transpose(0, 3, 2, 1), meta))}; image "
        f"{describe_space(target)}",
        path=where,
    )


def check_same_grid_as(masks: Any, other: Any, key: str, other_key: str) -> None:
    """Raise unless loaded masks are on the grid of a loaded image (``LoadMaskd``'s check).

    Args:
        masks: The loaded masks (a ``MetaTensor``, ``(C, x, y, z)``).
        other: The image (a tensor with ``affine``).
        key: The masks' key, for the message.
        other_key: The image's key, for the message.

    Raises:
        SpaceMismatchError: Another grid: the message names both, what differs and the fix
            (``like=other_key`` when the grids are one lattice).
    """
    try:
        _, image = image_grid(other, f"d[{other_key!r}]")
    except MaskValidationError:
        return  # not an image (e.g. a vector): nothing to compare
    _, grid = image_grid(masks, f"d[{key!r}]")
    if spaces_match(grid, image):
        return
    try:
        grid_offset(grid, image)
        fix = f"pass like={other_key!r} to place the masks on its grid (exact, no interpolation)"
    except SpaceMismatchError:
        fix = "the grids are not one lattice: resample one of them (nearest neighbour for masks)"
    raise SpaceMismatchError(
        f"the masks of {key!r} are not on the grid of {other_key!r}: "
        f"{'; '.join(grid_differences(image, grid))}; masks {describe_space(grid)}; "
        f"{other_key!r} {describe_space(image)}; {fix}, or check_grid=False if that is intended",
        path=getattr(masks, "meta", {}).get("filename_or_obj"),
    )
