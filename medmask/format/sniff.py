"""What a medmask file is, told by its first bytes: the one sniff.

:func:`read_signature` reads the magic (``MSK1``: one mask, ``MSKA``: an archive) and the
version bytes from a file's head. Everything that asks "which medmask file is this?"
(the readers, ``medmask.inspect``, ``medmask.stats``, the pictures, the MONAI loaders)
goes through it. Foreign formats (NIfTI, DICOM SEG, NRRD...) are told by
:mod:`medmask.io.formats` from the same head bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from ..errors import CorruptFileError
from ..io.source import ByteSource
from ..io.target import Target, open_source
from .layouts import LAYOUTS, Layout
from .versions import version_of

__all__ = ["Signature", "SIGNATURE_SIZE", "KINDS", "read_signature", "sniff", "sniff_target"]

#: Bytes of the head that :func:`read_signature` needs.
SIGNATURE_SIZE = 6
#: Magic -> kind of medmask file.
KINDS = {b"MSK1": "msk", b"MSKA": "mska"}


class Signature(NamedTuple):
    """What a medmask file's first bytes say.

    Attributes:
        kind: ``"msk"`` (one mask) or ``"mska"`` (an archive).
        major: The format major version.
        minor: The format minor version the file declares.
    """

    kind: str
    major: int
    minor: int

    @property
    def layout(self) -> Layout:
        """The layout's row of the compatibility table (its capabilities)."""
        return LAYOUTS.of(self.major, self.minor)


def read_signature(head: bytes | memoryview, *, path: object = None) -> Signature:
    """Tell a medmask file by its first :data:`SIGNATURE_SIZE` bytes.

    Args:
        head: The file's first bytes (at least six for a medmask file).
        path: The file, for messages.

    Returns:
        The :class:`Signature`.

    Raises:
        CorruptFileError: Too short, or not a medmask file (field ``header``/``magic``).
        UnsupportedFormatError: A major version this release does not read.
    """
    if len(head) < SIGNATURE_SIZE:
        raise CorruptFileError(
            f"file has {len(head)} bytes, too short for a medmask header",
            path=path,
            field="header",
        )
    magic, major, minor = bytes(head[:4]), head[4], head[5]
    kind = KINDS.get(magic)
    if kind is None:
        raise CorruptFileError(
            f"not a medmask file (magic {magic!r}, expected b'MSK1' or b'MSKA')",
            path=path,
            field="magic",
        )
    version_of(major, minor=minor, path=path)
    return Signature(kind, major, minor)


def sniff(source: ByteSource) -> tuple[str, int]:
    """``(kind, major)`` of the medmask file read through ``source`` (see
    :func:`read_signature`, which also gives the minor version).

    Raises:
        CorruptFileError: The file is too short or not a medmask file.
        UnsupportedFormatError: The major version is not one this release reads.
    """
    return read_signature(_head(source), path=source.name)[:2]


def sniff_target(
    target: str | os.PathLike | Target, *, storage_options: Mapping[str, Any] | None = None
) -> Signature:
    """The :class:`Signature` of a file or object (its first bytes are read).

    Args:
        target: A local path, a URL or a :class:`~medmask.io.target.Target`.
        storage_options: For a URL: options of its filesystem.

    Raises:
        CorruptFileError: Too short, or not a medmask file.
        UnsupportedFormatError: A major version this release does not read.
        FileNotFoundError: No such file or object.
    """
    with open_source(target, storage_options=storage_options) as source:
        return read_signature(_head(source), path=source.name)


def _head(source: ByteSource) -> bytes:
    size = source.size()
    return source.read(0, min(size, SIGNATURE_SIZE), field="header") if size else b""
