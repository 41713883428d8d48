"""On-disk layouts (versions 1 and 2) of ``.msk`` and ``.mska`` files.

This layer works on plain records (array, :class:`~medmask.mapping.LabelMapping`,
:class:`~spacetransformer.Space`) and never imports :class:`~medmask.SegmentationMask`,
so that the object model can depend on it without an import cycle.

Every version lives in its own module (:mod:`.v1`, :mod:`.v2`): its ``.msk`` reader and
writer (``read_msk``, ``encode_msk``) and its archive backend, an implementation of
:class:`~medmask.format.backend.ArchiveBackend`. Readers read through a
:class:`~medmask.io.source.ByteSource` (a local file or a URL); writers work on local
descriptors. A new version is a new module registered in ``_ARCHIVES`` and ``_MSK`` below;
nothing above this package branches on versions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..codecs import Codec
from ..errors import CorruptFileError, UnsupportedFormatError
from ..io.atomic import atomic_temp
from ..io.source import ByteSource, LocalFileSource
from ..io.target import open_source
from ..mapping import LabelMapping
from ..spaces import Space
from . import v1, v2
from ._io import BBox
from .backend import ArchiveBackend
from .base import Entry, MskRecord, bbox_slices
from .verify import Problem, verify_all

__all__ = [
    "SUPPORTED_VERSIONS",
    "sniff",
    "read_msk",
    "read_msk_record",
    "MskRecord",
    "write_msk",
    "open_archive",
    "archive_backend",
    "ArchiveBackend",
    "Entry",
    "bbox_slices",
    "codec_version",
    "verify_all",
    "Problem",
]

#: Major versions this release reads and writes.
SUPPORTED_VERSIONS = (1, 2)

_KIND = {b"MSK1": "msk", b"MSKA": "mska"}
_ARCHIVES: dict[int, type[ArchiveBackend]] = {1: v1.V1Archive, 2: v2.V2Archive}
_MSK = {1: v1, 2: v2}  # modules with MSK_HEADER, read_msk and encode_msk


def codec_version(codec: Codec) -> int:
    """The format major version a codec's blobs belong to (which layout choosing it writes).

    Version 1 holds only its own codec ids (:data:`medmask.format.v1.CODEC_IDS`); every
    other registered codec is stored in version 2, whose index names each mask's codec.
    """
    return 1 if codec.codec_id in v1.CODEC_IDS else 2


def archive_backend(version: int) -> type[ArchiveBackend]:
    """The :class:`ArchiveBackend` class of a format major version (1 or 2)."""
    return _ARCHIVES[version]


def sniff(source: ByteSource | int, path: object = None) -> tuple[str, int]:
    """Return ``(kind, major)`` of a medmask file, kind being ``"msk"`` or ``"mska"``.

    Args:
        source: A :class:`~medmask.io.source.ByteSource` (or, for compatibility, an open
            file descriptor).
        path: The file, for messages (with a descriptor).

    Raises:
        CorruptFileError: The file is too short or not a medmask file.
        UnsupportedFormatError: The major version is not one this release reads.
    """
    if isinstance(source, int):
        with LocalFileSource(path if path is not None else "<fd>", fd=source, own_fd=False) as src:
            return sniff(src)
    path = source.name
    size = source.size()
    if size < 6:
        raise CorruptFileError(
            f"file has {size} bytes, too short for a medmask header",
            path=path,
            field="header",
        )
    head = source.read(0, 6, field="header")
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


_OTHER_KIND = {
    "msk": "this is a multi-mask archive (.mska); open it with MaskArchive",
    "mska": "this is a single-mask .msk file; open it with MaskFile or load_mask",
}


def _expect_kind(source: ByteSource, kind: str) -> int:
    """The major version of a file that must be of ``kind`` (``"msk"`` or ``"mska"``)."""
    found, major = sniff(source)
    if found != kind:
        raise CorruptFileError(_OTHER_KIND[kind], path=source.name, field="magic")
    return major


def _header(source: ByteSource, size: int) -> bytes:
    if source.size() < size:
        raise CorruptFileError(
            f"header truncated ({source.size()} of {size} bytes)", path=source.name, field="header"
        )
    return source.read(0, size, field="header")


def read_msk(
    path: str | os.PathLike | ByteSource,
    *,
    cropped: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, LabelMapping, Space, BBox | None, int]:
    """Read a ``.msk`` file of either version.

    Args:
        path: The file: a local path, a URL or an open :class:`ByteSource`.
        cropped: Return only the stored bounding-box region instead of the full volume.
        storage_options: For a URL: options of its fsspec filesystem.

    Returns:
        ``(array, mapping, space, bbox, version)``; ``bbox`` is the region of the
        volume ``array`` covers when ``cropped`` (``None`` for an empty mask, then
        ``array`` has shape ``(0, 0, 0)``), else the mask's bounding box as stored.

    Raises:
        CorruptFileError: The file is damaged; UnsupportedFormatError: unknown version.
        OSError: The file cannot be opened.
    """
    r = read_msk_record(path, cropped=cropped, storage_options=storage_options)
    return r.array, r.mapping, r.space, r.bbox, r.version


def read_msk_record(
    path: str | os.PathLike | ByteSource,
    *,
    cropped: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> MskRecord:
    """Read a ``.msk`` file of either version, with its stored extras.

    Args:
        path: The file: a local path, a URL or an open :class:`ByteSource` (not closed).
        cropped: Return only the stored bounding-box region instead of the full volume.
        storage_options: For a URL: options of its fsspec filesystem.

    Returns:
        A :class:`MskRecord`.

    Raises:
        CorruptFileError: The file is damaged; UnsupportedFormatError: unknown version.
        OSError: The file cannot be opened.
    """
    if isinstance(path, ByteSource):
        return _read_msk(path, cropped)
    with open_source(path, storage_options=storage_options) as source:
        return _read_msk(source, cropped)


def _read_msk(source: ByteSource, cropped: bool) -> MskRecord:
    major = _expect_kind(source, "msk")
    size = _MSK[major].MSK_HEADER.size
    return _MSK[major].read_msk(source, _header(source, size), cropped=cropped)


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
    data = _MSK[codec_version(codec)].encode_msk(array, mapping, space, codec, attrs, path=path)
    with atomic_temp(Path(path)) as (fh, _tmp):
        fh.write(data)


def open_archive(source: ByteSource, *, fd: int | None = None) -> ArchiveBackend:
    """Open the archive read through ``source`` with the backend of its version.

    Args:
        source: The archive's bytes.
        fd: A read-write descriptor of the same local, locked file, to append to it.

    Raises:
        CorruptFileError: Not an archive, or damaged. UnsupportedFormatError: unknown version.
    """
    return _ARCHIVES[_expect_kind(source, "mska")].open(source, fd=fd)
