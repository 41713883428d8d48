"""What a medmask file is, told by its first bytes: the one sniff.

:func:`read_signature` reads the magic (``MSK1``: one mask, ``MSKA``: an archive) and the
version bytes from a file's head. Everything that asks "which medmask file is this?"
(the readers, ``medmask.inspect``, ``medmask.stats``, the pictures, the MONAI loaders)
goes through it. A file that is not a medmask file is told by the format table
(:func:`medmask.io.formats.identify`, the one answer to "what kind of file is this?") from
the same head bytes: a NIfTI, NRRD, DICOM... file raises :class:`ForeignFileError` saying
what it is and how to convert it; bytes no format knows raise :class:`CorruptFileError`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from ..errors import CorruptFileError, ForeignFileError
from ..io.formats import HEAD_BYTES, identify
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
        head: The file's first bytes (at least six for a medmask file; a foreign format is
            recognised from up to :data:`~medmask.io.formats.HEAD_BYTES`).
        path: The file, for messages.

    Returns:
        The :class:`Signature`.

    Raises:
        ForeignFileError: A file of another format the format table recognises.
        CorruptFileError: Too short, or bytes no format knows (field ``header``/``magic``).
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
        foreign = identify(bytes(head))
        if foreign is not None and foreign.kind not in KINDS.values():
            raise _foreign(foreign, path)
        raise CorruptFileError(
            f"not a medmask file (magic {magic!r}, expected b'MSK1' or b'MSKA')",
            path=path,
            field="magic",
        )
    version_of(major, minor=minor, path=path)
    return Signature(kind, major, minor)


def _foreign(fmt, path: object) -> ForeignFileError:
    """The error for a file of format ``fmt`` (an entry of the format table)."""
    if fmt.capabilities.pack:
        todo = f"convert it with `medmask pack {path or 'FILE'} -o OUT.mska`"
    else:
        todo = fmt.hint or "medmask does not convert it"
    return ForeignFileError(
        f"this is a {fmt.title}, not a medmask file; {todo}", kind=fmt.kind, path=path
    )


def sniff(source: ByteSource) -> tuple[str, int]:
    """``(kind, major)`` of the medmask file read through ``source`` (see
    :func:`read_signature`, which also gives the minor version).

    Raises:
        ForeignFileError: A file of another format (NIfTI, NRRD, DICOM...).
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
        ForeignFileError: A file of another format (NIfTI, NRRD, DICOM...).
        CorruptFileError: Too short, or not a medmask file.
        UnsupportedFormatError: A major version this release does not read.
        FileNotFoundError: No such file or object.
    """
    with open_source(target, storage_options=storage_options) as source:
        return read_signature(_head(source), path=source.name)


def _head(source: ByteSource) -> bytes:
    """The signature bytes; more of the head when they are not a medmask magic (to tell
    which foreign format the file is: one more read, on the failure path only)."""
    size = source.size()
    head = source.read(0, min(size, SIGNATURE_SIZE), field="header") if size else b""
    if bytes(head[:4]) not in KINDS and size > len(head):
        head = source.read(0, min(size, HEAD_BYTES), field="header")
    return head
