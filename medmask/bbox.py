"""Bounding boxes: the region of a ``(z, y, x)`` volume a mask occupies.

A :data:`BBox` is a plain tuple ``(z0, z1, y0, y1, x0, x1)`` of half-open voxel index
ranges, the form files store and :class:`~medmask.MaskInfo` reports. The helpers here are
the one implementation of finding, slicing and measuring boxes that the format layer, the
pictures and the statistics share.

Example:
    >>> import numpy as np
    >>> a = np.zeros((4, 5, 6), bool); a[1:3, 2, 3:5] = True
    >>> box = bounding_box(a); box
    (1, 3, 2, 3, 3, 5)
    >>> bbox_shape(box), box_voxels(box)
    ((2, 1, 2), 4)
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BBox",
    "bounding_box",
    "crop_to_bbox",
    "bbox_slices",
    "bbox_shape",
    "box_voxels",
    "full_bbox",
]

#: A bounding box as ``(z0, z1, y0, y1, x0, x1)``, half-open voxel index ranges.
BBox = tuple[int, int, int, int, int, int]


def bounding_box(array: np.ndarray) -> BBox | None:
    """Half-open bounding box of the non-zero voxels of a 3-D array.

    Args:
        array: A ``(z, y, x)`` array (any dtype; non-zero means inside).

    Returns:
        The box, or ``None`` when no voxel is set.
    """
    zs = np.flatnonzero(array.any(axis=(1, 2)))
    if zs.size == 0:
        return None
    z0, z1 = int(zs[0]), int(zs[-1]) + 1
    sub = array[z0:z1]
    ys = np.flatnonzero(sub.any(axis=(0, 2)))
    xs = np.flatnonzero(sub.any(axis=(0, 1)))
    return z0, z1, int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1


def crop_to_bbox(array: np.ndarray) -> tuple[np.ndarray, BBox | None]:
    """The bounding-box region of a 3-D array, copied, with its box.

    Args:
        array: A ``(z, y, x)`` array.

    Returns:
        ``(copy of the region, bbox)``; ``((0, 0, 0) array, None)`` when no voxel is set.
    """
    box = bounding_box(array)
    if box is None:
        return array[:0, :0, :0].copy(), None
    return array[bbox_slices(box)].copy(), box


def bbox_slices(bbox: BBox) -> tuple[slice, slice, slice]:
    """``(z, y, x)`` slices selecting a box's region of a volume."""
    return slice(bbox[0], bbox[1]), slice(bbox[2], bbox[3]), slice(bbox[4], bbox[5])


def bbox_shape(bbox: BBox) -> tuple[int, int, int]:
    """Shape ``(z, y, x)`` of the region a box covers."""
    return bbox[1] - bbox[0], bbox[3] - bbox[2], bbox[5] - bbox[4]


def box_voxels(bbox: BBox) -> int:
    """Number of voxels of the region a box covers."""
    return (bbox[1] - bbox[0]) * (bbox[3] - bbox[2]) * (bbox[5] - bbox[4])


def full_bbox(shape: tuple[int, ...]) -> BBox:
    """The box covering a whole ``(z, y, x)`` volume of ``shape``."""
    return 0, int(shape[0]), 0, int(shape[1]), 0, int(shape[2])
