"""Between what callers hand an archive and what it stores: arrays and SegmentationMasks in,
stored entries out."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import CorruptFileError, MaskValidationError
from ..format.base import Entry
from ..mapping import LabelMapping
from ..ops import smallest_uint_dtype
from ..segmask import SegmentationMask
from ..spaces import Space

__all__ = ["as_segmask", "check_mask_name", "stored_segmask"]


def check_mask_name(name: object) -> str:
    """A mask name: a non-empty string without NUL.

    Raises:
        MaskValidationError: Anything else.
    """
    if not isinstance(name, str) or not name or "\0" in name:
        raise MaskValidationError(f"mask name must be a non-empty string without NUL, got {name!r}")
    return name


def as_segmask(
    name: str,
    mask: SegmentationMask | np.ndarray,
    space: Space | None,
    *,
    label: int = 1,
    mapping: Mapping[str, int] | None = None,
    path: object = None,
) -> SegmentationMask:
    """The SegmentationMask to store under ``name``.

    A SegmentationMask is taken as it is. An array must lie on ``space``'s grid: a
    boolean array, or one holding only 0 and 1, is the binary mask ``{name: label}``; a
    label map needs ``mapping``.

    Args:
        name: The mask's name (for the mapping and messages).
        mask: A SegmentationMask or a ``(z, y, x)`` array.
        space: The archive's space (``None``: not known yet).
        label: The label of a binary array.
        mapping: ``{name: label}`` of a label-map array.
        path: The archive, for messages.

    Raises:
        MaskValidationError: No space for an array, another shape, a label map without
            ``mapping``, a bad label, or something that is not a mask.
    """
    if isinstance(mask, SegmentationMask):
        if mapping is not None:
            raise MaskValidationError("mapping= applies to arrays; a SegmentationMask has one")
        return mask
    if not isinstance(mask, np.ndarray):
        raise MaskValidationError(
            f"mask {name!r}: expected a numpy array or a SegmentationMask, "
            f"got {type(mask).__name__}"
        )
    _check_on_grid(name, mask, space, path)
    if mapping is not None:
        return SegmentationMask(mask, dict(mapping), space)
    if isinstance(label, bool) or not isinstance(label, int | np.integer) or label <= 0:
        raise MaskValidationError(f"label must be a positive integer, got {label!r}")
    binary = _binary(name, mask)
    if label == 1:
        return SegmentationMask(binary, {name: 1}, space)
    dtype = smallest_uint_dtype(int(label))
    return SegmentationMask(binary.astype(dtype) * dtype.type(label), {name: int(label)}, space)


def _check_on_grid(name: str, array: np.ndarray, space: Space | None, path: object) -> None:
    """An array can be stored only on a known grid, with its shape."""
    if space is None:
        raise MaskValidationError(
            "the archive has no space yet, so an array has no grid; pass "
            "space= when creating the archive, or add a SegmentationMask first",
            path=path,
        )
    shape = tuple(int(s) for s in space.shape)
    if array.shape != shape:
        raise MaskValidationError(
            f"mask {name!r} has shape {array.shape}, but the archive's grid is "
            f"{shape} (z, y, x); transpose (x, y, z) arrays with array.transpose(2, 1, 0)",
            path=path,
        )


def _binary(name: str, array: np.ndarray) -> np.ndarray:
    """A boolean array, or an integer one holding only 0 and 1, as booleans."""
    if array.dtype == np.bool_:
        return array
    if not np.issubdtype(array.dtype, np.integer):
        raise MaskValidationError(
            f"mask {name!r}: dtype {array.dtype} is not a mask dtype; give a boolean or "
            "integer array"
        )
    values = np.unique(array)
    if not set(values.tolist()) <= {0, 1}:
        shown = ", ".join(map(str, values[:8].tolist()))
        raise MaskValidationError(
            f"mask {name!r} holds the values {shown}{' ...' if values.size > 8 else ''}: "
            "a label map needs mapping={name: label, ...}; a binary mask holds only 0 "
            "and 1 (or is boolean)"
        )
    return array.astype(bool)


def stored_segmask(entry: Entry, array: np.ndarray, space: Space, path: object) -> SegmentationMask:
    """The SegmentationMask of a stored entry and its decoded array (taken, not copied).

    Raises:
        CorruptFileError: The stored mapping does not fit the stored array.
    """
    mapping: LabelMapping = entry.mapping(path)
    try:
        return SegmentationMask(array, mapping, space, copy=False)
    except MaskValidationError as exc:  # stored parts that do not fit together
        raise CorruptFileError(str(exc), path=path, mask=entry.name, field="mapping") from exc
