"""Reading and writing by the version a file declares (or a codec chooses), through the
table of :mod:`medmask.format.versions`: nothing here knows a version number."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..bbox import BBox
from ..codecs import Codec
from ..errors import CorruptFileError, UnsupportedFormatError
from ..io.atomic import atomic_temp
from ..io.source import ByteSource
from ..io.target import Target, open_source
from ..mapping import LabelMapping
from ..spaces import Space
from .backend import ArchiveBackend
from .base import MskRecord
from .sniff import sniff
from .versions import codec_version, version_of

__all__ = [
    "read_msk",
    "read_msk_record",
    "write_msk",
    "open_archive",
    "archive_backend",
    "expect_kind",
]

_OTHER_KIND = {
    "msk": "this is a multi-mask archive (.mska); open it with MaskArchive",
    "mska": "this is a single-mask .msk file; open it with MaskFile or load_mask",
}


def archive_backend(version: int) -> type[ArchiveBackend]:
    """The :class:`ArchiveBackend` class of a format major version.

    Raises:
        UnsupportedFormatError: No such version is registered.
    """
    return version_of(version).archive


def expect_kind(source: ByteSource, kind: str) -> int:
    """The major version of a file that must be of ``kind`` (``"msk"`` or ``"mska"``).

    Raises:
        CorruptFileError: Not a medmask file, or the other kind.
        UnsupportedFormatError: A version this release does not read.
    """
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
    path: str | os.PathLike | Target | ByteSource,
    *,
    cropped: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, LabelMapping, Space, BBox | None, int]:
    """Read a ``.msk`` file of any supported version.

    Args:
        path: The file: a local path, a URL, a :class:`~medmask.io.target.Target` or an
            open :class:`ByteSource`.
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
    path: str | os.PathLike | Target | ByteSource,
    *,
    cropped: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> MskRecord:
    """Read a ``.msk`` file of any supported version, with its stored extras.

    Args:
        path: The file: a local path, a URL, a :class:`~medmask.io.target.Target` or an
            open :class:`ByteSource` (not closed).
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
    version = version_of(expect_kind(source, "msk"), path=source.name)
    if version.read_msk is None:
        raise UnsupportedFormatError(
            f"format version {version.major} has no single-mask layout",
            path=source.name,
            field="version",
        )
    head = _header(source, version.msk_header_size)
    return version.read_msk(source, head, cropped=cropped)


def write_msk(
    path: str | os.PathLike,
    array: np.ndarray,
    mapping: LabelMapping,
    space: Space,
    codec: Codec,
    attrs: dict | None = None,
) -> None:
    """Write a ``.msk`` atomically (temporary sibling + rename) in the codec's version.

    ``attrs`` (validated by :func:`medmask.attrs.validate_attrs`) need a layout with
    :attr:`~medmask.format.layouts.Layout.supports_attrs`.

    Raises:
        MaskValidationError: ``attrs`` given with a codec of a version without attributes.
    """
    encode = version_of(codec_version(codec)).encode_msk
    data = encode(array, mapping, space, codec, attrs, path=path)
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
    return version_of(expect_kind(source, "mska"), path=source.name).archive.open(source, fd=fd)
