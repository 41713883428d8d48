"""Low-level helpers shared by the format modules: verified reads, advisory locks and
checksums (atomic writes are :mod:`medmask.io.atomic`, bounding boxes :mod:`medmask.bbox`)."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from ..errors import ArchiveLockedError, CorruptFileError
from ..io.source import ByteSource

try:  # POSIX advisory locks; absent on Windows, where locking is a no-op
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None  # type: ignore[assignment]

__all__ = ["crc32", "read_verified", "lock_exclusive", "open_locked"]


def crc32(data: bytes | memoryview) -> int:
    """CRC-32 (zlib polynomial) of ``data`` as an unsigned 32-bit integer."""
    return zlib.crc32(data) & 0xFFFFFFFF


def read_verified(
    source: ByteSource,
    offset: int,
    length: int,
    crc: int,
    *,
    field: str,
    mask: str | None = None,
    what: str = "checksum mismatch",
    crc_field: str | None = None,
) -> bytes:
    """Read a range whose CRC-32 is known, or raise :class:`CorruptFileError`.

    On a remote source a mismatch is read once more (a byte damaged in transit or a stale
    cache is fetched again, see :func:`medmask.io.remote.read_checked`); a local file is
    read once.
    """
    raw = source.read(offset, length, field=field, mask=mask)
    if crc32(raw) == crc:
        return raw
    if not source.is_local:
        from ..io.remote import read_checked

        raw = read_checked(
            source, offset, length, lambda b: crc32(b) == crc, field=field, mask=mask
        )
        if crc32(raw) == crc:
            return raw
    raise CorruptFileError(what, path=source.name, mask=mask, field=crc_field or field)


def lock_exclusive(fd: int, path: object) -> None:
    """Take a non-blocking exclusive advisory lock on ``fd``.

    Raises:
        ArchiveLockedError: Another process (or another open handle) holds it.
    """
    if fcntl is None:  # pragma: no cover
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ArchiveLockedError(
            "another writer holds this archive (advisory lock); wait for it to "
            "close the archive, or open it read-only",
            path=path,
        ) from None


def open_locked(path: Path, flags: int) -> int:
    """Open ``path`` and take its exclusive advisory lock, on the file the path names.

    The lock is held on the file ``path`` names once it is locked, never on a file another
    writer has since renamed a replacement over (mode ``"w"`` and version-1 appends do),
    whose appends would be lost with the orphan: after locking, the descriptor must still
    be the file at ``path``; if not, the new file is opened and locked instead.

    Raises:
        ArchiveLockedError: Another writer holds the lock.
        OSError: The file cannot be opened.
    """
    for _ in range(100):
        fd = os.open(path, flags)
        try:
            lock_exclusive(fd, path)
            held = os.fstat(fd)
            try:
                now = os.stat(path)
            except FileNotFoundError:
                now = None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (held.st_dev, held.st_ino) == (now.st_dev, now.st_ino):
            return fd
        os.close(fd)  # replaced between open and lock: lock the file the path names now
    raise ArchiveLockedError("the file keeps being replaced by another writer", path=path)
