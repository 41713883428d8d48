"""On-disk layouts (versions 1 and 2) of ``.msk`` and ``.mska`` files.

This layer works on plain records (array, :class:`~medmask.mapping.LabelMapping`,
:class:`~spacetransformer.Space`) and never imports :class:`~medmask.SegmentationMask`,
so that the object model can depend on it without an import cycle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codecs import Codec
from ..errors import CorruptFileError, MaskValidationError, UnsupportedFormatError
from ..mapping import LabelMapping
from ..spaces import Space
from . import v1, v2
from ._io import BBox, atomic_temp, crop_to_bbox, file_size
from .base import Entry, bbox_slices

__all__ = [
    "SUPPORTED_VERSIONS",
    "sniff",
    "read_msk",
    "read_msk_record",
    "MskRecord",
    "write_msk",
    "open_archive",
    "Entry",
    "bbox_slices",
]

#: Major versions this release reads and writes.
SUPPORTED_VERSIONS = (1, 2)

_KIND = {b"MSK1": "msk", b"MSKA": "mska"}


def sniff(fd: int, path: object) -> tuple[str, int]:
    """Return ``(kind, major)`` of an open medmask file, kind being ``"msk"`` or ``"mska"``.

    Raises:
        CorruptFileError: The file is too short or not a medmask file.
        UnsupportedFormatError: The major version is not one this release reads.
    """
    head = os.pread(fd, 6, 0)
    if len(head) < 6:
        raise CorruptFileError(
            f"file has {file_size(fd)} bytes, too short for a medmask header",
            path=path,
            field="header",
        )
    magic, major = head[:4], head[4]
    if magic not in _KIND:
        raise CorruptFileError(
            f"not a medmask file (magic {magic!r}, expected b'MSK1' or b'MSKA')",
            path=path,
            field="magic",
        )
    if major not in SUPPORTED_VERSIONS:
        raise UnsupportedFormatError(
            f"format version {major}.{head[5]} is not supported; this release reads versions "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))} (upgrade medmask to open it)",
            path=path,
            field="version",
        )
    return _KIND[magic], major


def _header(fd: int, path: object, size: int) -> bytes:
    head = os.pread(fd, size, 0)
    if len(head) < size:
        raise CorruptFileError(
            f"header truncated ({len(head)} of {size} bytes)", path=path, field="header"
        )
    return head


@dataclass
class MskRecord:
    """What a ``.msk`` file holds.

    Attributes:
        array: The full volume, or the bounding-box region when read ``cropped``.
        mapping: The ``{name: label}`` mapping.
        space: The ``(z, y, x)`` space.
        bbox: See :func:`read_msk`.
        version: The format major version.
        minor: The format minor version.
        voxels: Number of non-zero voxels (from the header for version 2).
        centroid: Stored centroid (format 2.1 files with attributes), else ``None``.
        attrs: Stored attributes (``{}`` when none).
    """

    array: np.ndarray
    mapping: LabelMapping
    space: Space
    bbox: BBox | None
    version: int
    minor: int
    voxels: int
    centroid: tuple[float, float, float] | None
    attrs: dict


def read_msk(
    path: str | os.PathLike, *, cropped: bool = False
) -> tuple[np.ndarray, LabelMapping, Space, BBox | None, int]:
    """Read a ``.msk`` file of either version.

    Args:
        path: The file.
        cropped: Return only the stored bounding-box region instead of the full volume.

    Returns:
        ``(array, mapping, space, bbox, version)``; ``bbox`` is the region of the
        volume ``array`` covers when ``cropped`` (``None`` for an empty mask, then
        ``array`` has shape ``(0, 0, 0)``), else the mask's bounding box as stored.

    Raises:
        CorruptFileError: The file is damaged; UnsupportedFormatError: unknown version.
        OSError: The file cannot be opened.
    """
    r = read_msk_record(path, cropped=cropped)
    return r.array, r.mapping, r.space, r.bbox, r.version


def read_msk_record(path: str | os.PathLike, *, cropped: bool = False) -> MskRecord:
    """Read a ``.msk`` file of either version, with its stored extras.

    Args:
        path: The file.
        cropped: Return only the stored bounding-box region instead of the full volume.

    Returns:
        A :class:`MskRecord`.

    Raises:
        CorruptFileError: The file is damaged; UnsupportedFormatError: unknown version.
        OSError: The file cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        kind, major = sniff(fd, path)
        if kind != "msk":
            raise CorruptFileError(
                "this is a multi-mask archive (.mska); open it with MaskArchive",
                path=path,
                field="magic",
            )
        if major == 1:
            array, mapping, space = v1.decode_msk(fd, path, _header(fd, path, v1.MSK_HEADER.size))
            box = None
            if cropped:
                array, box = crop_to_bbox(array)
            voxels = int(np.count_nonzero(array))
            return MskRecord(array, mapping, space, box, 1, 0, voxels, None, {})
        header = _header(fd, path, v2.MSK_HEADER.size)
        entry, space, box_arr = v2.decode_msk(fd, path, header)
        mapping = entry.mapping(path)
        dtype = entry.dtype
        if cropped:
            if box_arr is None:
                array = np.zeros((0, 0, 0), dtype)
            else:
                array = np.ascontiguousarray(box_arr)
        else:
            array = np.zeros(tuple(space.shape), dtype)
            if box_arr is not None:
                array[bbox_slices(entry.bbox)] = box_arr
        return MskRecord(
            array,
            mapping,
            space,
            entry.bbox,
            2,
            header[5],
            entry.voxels,
            entry.centroid,
            entry.attrs,
        )
    finally:
        os.close(fd)


def write_msk(
    path: str | os.PathLike,
    array: np.ndarray,
    mapping: LabelMapping,
    space: Space,
    codec: Codec,
    attrs: dict | None = None,
) -> None:
    """Write a ``.msk`` atomically (temporary sibling + rename) in the codec's version.

    ``attrs`` (validated by :func:`medmask.attrs.validate_attrs`) need version 2; the file
    is then format 2.1.

    Raises:
        MaskValidationError: ``attrs`` given with a version-1 codec.
    """
    if codec.format_version == 1:
        if attrs:
            raise MaskValidationError(
                f"{path}: a version-1 file (codec {codec.name!r}) cannot hold attributes; "
                "write version 2 (the default codec) or drop attrs="
            )
        data = v1.encode_msk(array, mapping, space)
    else:
        data = v2.encode_msk(array, mapping, space, codec, attrs)
    with atomic_temp(Path(path)) as (fh, _tmp):
        fh.write(data)


def open_archive(fd: int, path: object) -> v1.MskaV1Reader | v2.MskaV2:
    """Open the archive on ``fd`` with the reader of its version."""
    kind, major = sniff(fd, path)
    if kind != "mska":
        raise CorruptFileError(
            "this is a single-mask .msk file; open it with MaskFile or load_mask",
            path=path,
            field="magic",
        )
    if major == 1:
        return v1.MskaV1Reader(fd, path, _header(fd, path, v1.MSKA_HEADER.size), file_size(fd))
    return v2.MskaV2.open(fd, path)
