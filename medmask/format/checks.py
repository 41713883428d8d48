"""The checks on a file's contents, one small named function each.

Each check takes the values a file declares and the context to name (file, mask) and
raises :class:`~medmask.errors.CorruptFileError` (with ``path``, ``mask`` and ``field``)
when they are not sound; it returns nothing or the value it parsed. Versions 1 and 2
call the same checks on their index rows and headers, and :func:`medmask.format.verify_all`
runs all of them over a file, collecting every problem instead of stopping at the first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..bbox import bbox_shape
from ..codecs import Codec, expansion_plausible
from ..errors import CorruptFileError

__all__ = [
    "is_uint",
    "check_name",
    "check_unique_names",
    "check_uint",
    "check_blob_range",
    "check_bbox",
    "check_voxels",
    "check_blob_holds",
    "check_count",
    "check_labels_fit",
]


def is_uint(v: object, bits: int = 64) -> bool:
    """Whether ``v`` is a (non-bool) integer in ``[0, 2**bits)``."""
    if type(v) is int:  # the common case: JSON integers (bool is its own type)
        return 0 <= v < (1 << bits)
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < (1 << bits)


def check_name(
    name: object, k: int, *, path: object, field: str = "index", row: str = "index entry"
) -> str:
    """A mask name must be a non-empty string.

    Args:
        name: The stored name.
        k: The row's position, for the message.
        path: The file.
        field: The section the name is in.
        row: What the message calls the row.

    Returns:
        The name.
    """
    if not isinstance(name, str) or not name:
        raise CorruptFileError(f"{row} {k} has an invalid name {name!r}", path=path, field=field)
    return name


def check_unique_names(names: Iterable[str], *, path: object, field: str = "index") -> None:
    """No two masks of one archive share a name."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise CorruptFileError(
                f"duplicate name {name!r} in the index", path=path, mask=name, field=field
            )
        seen.add(name)


def check_uint(
    value: object, what: str, *, bits: int = 64, path: object, mask: str | None, field: str
) -> int:
    """An offset, length, count or checksum must be a non-negative integer of ``bits`` bits.

    Returns:
        The value.
    """
    if not is_uint(value, bits):
        raise CorruptFileError(f"invalid {what} {value!r}", path=path, mask=mask, field=field)
    return value  # type: ignore[return-value]


def check_blob_range(
    offset: int, length: int, start: int, end: int, *, path: object, mask: str | None, field: str
) -> None:
    """A blob's bytes ``[offset, offset + length)`` must lie inside ``[start, end)``.

    ``start == 0`` means the whole file (version 1), ``end`` then being its size.
    """
    if offset >= start and offset + length <= end:
        return
    where = (
        f"past the end of the file ({end} bytes)"
        if start == 0
        else f"outside the data region [{start}, {end})"
    )
    raise CorruptFileError(
        f"blob [{offset}, {offset + length}) lies {where}", path=path, mask=mask, field=field
    )


def check_bbox(
    bbox: object, shape: tuple[int, ...], *, path: object, mask: str | None
) -> tuple[int, int, int, int, int, int]:
    """A stored bounding box: six non-negative integers, non-empty, inside the volume.

    Returns:
        The box as a tuple.
    """
    if not (isinstance(bbox, list) and len(bbox) == 6 and all(is_uint(v, 32) for v in bbox)):
        raise CorruptFileError(
            f"bbox {bbox!r} is not six non-negative integers",
            path=path,
            mask=mask,
            field="index.bbox",
        )
    box = tuple(bbox)
    for axis in range(3):
        lo, hi = box[2 * axis], box[2 * axis + 1]
        if not lo < hi <= shape[axis]:
            raise CorruptFileError(
                f"bbox {bbox} lies outside the volume {shape}",
                path=path,
                mask=mask,
                field="index.bbox",
            )
    return box  # type: ignore[return-value]


def check_voxels(voxels: int, box: tuple[int, ...], *, path: object, mask: str | None) -> None:
    """The non-zero voxel count must fit the box."""
    if voxels > math.prod(bbox_shape(box)):
        raise CorruptFileError(
            f"{voxels} voxels do not fit the bbox {list(box)}",
            path=path,
            mask=mask,
            field="index.voxels",
        )


def check_blob_holds(
    codec: Codec,
    dtype: object,
    box: tuple[int, ...],
    length: int,
    *,
    path: object,
    mask: str | None,
) -> None:
    """A blob of ``length`` bytes must be able to decode to the box it declares.

    This runs when the index is read, before anything is allocated for the mask: a
    full-volume read allocates the volume before the codec sees the blob, so a tiny
    blob declaring a huge box is refused here.
    """
    need = codec.payload_nbytes(dtype, bbox_shape(box))
    if not expansion_plausible(length, need):
        raise CorruptFileError(
            f"a blob of {length} bytes cannot hold the {need} bytes its bbox {list(box)} "
            "declares (corrupt or a decompression bomb)",
            path=path,
            mask=mask,
            field="index.length",
        )


def check_count(declared: int, found: int, *, path: object, what: str, field: str) -> None:
    """The mask count a header or commit declares must match the index."""
    if declared != found:
        raise CorruptFileError(
            f"{what} says {declared} masks but the index lists {found}", path=path, field=field
        )


def check_labels_fit(
    labels: Iterable[tuple[str, int]], dtype: object, *, path: object, mask: str | None
) -> None:
    """A mask's mapping must fit its stored dtype: a label no larger than the dtype holds,
    and no label 0 for a boolean mask (its set voxels are label 1). The rule
    :class:`~medmask.SegmentationMask` holds a mask to, checked on the index row itself, so
    that ``info()`` refuses what reading the mask refuses.

    Args:
        labels: The mapping's ``(name, label)`` pairs.
        dtype: The mask's stored numpy dtype.
        path: The file.
        mask: The mask.
    """

    dt = np.dtype(dtype)
    top = 1 if dt == np.bool_ else int(np.iinfo(dt).max)
    for name, label in labels:
        if label > top:
            raise CorruptFileError(
                f"label {label} of {name!r} does not fit the mask's dtype {dt} (largest {top})",
                path=path,
                mask=mask,
                field="mapping",
            )
        if label == 0 and top == 1:
            raise CorruptFileError(
                f"{name!r} has label 0, but the set voxels of a boolean mask are label 1",
                path=path,
                mask=mask,
                field="mapping",
            )
