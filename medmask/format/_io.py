"""Low-level helpers shared by the format modules: verified reads, advisory locks,
checksums and bounding boxes (atomic writes are :mod:`medmask.io.atomic`)."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import ArchiveLockedError, CorruptFileError
from ..io.source import ByteSource

try:  # POSIX advisory locks; absent on Windows, where locking is a no-op
    import fcntl
except ImportError:  # pragma: no cover - not on Linux
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "crc32",
    "read_verified",
    "lock_exclusive",
    "open_locked",
    "bounding_box",
    "crop_to_bbox",
    "bbox_slices",
    "bbox_shape",
    "BBox",
]

#: A bounding box as ``(z0, z1, y0, y1, x0, x1)``, half-open.
BBox = tuple[int, int, int, int, int, int]


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


def bounding_box(array: np.ndarray) -> BBox | None:
    """Half-open bounding box ``(z0, z1, y0, y1, x0, x1)`` of the non-zero voxels, or None."""
    zs = np.flatnonzero(array.any(axis=(1, 2)))
    if zs.size == 0:
        return None
    z0, z1 = int(zs[0]), int(zs[-1]) + 1
    sub = array[z0:z1]
    ys = np.flatnonzero(sub.any(axis=(0, 2)))
    xs = np.flatnonzero(sub.any(axis=(0, 1)))
    return z0, z1, int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1


def crop_to_bbox(array: np.ndarray) -> tuple[np.ndarray, BBox | None]:
    """``(copy of the bounding-box region, bbox)``; ``((0, 0, 0) array, None)`` when empty."""
    box = bounding_box(array)
    if box is None:
        return array[:0, :0, :0].copy(), None
    return array[bbox_slices(box)].copy(), box


def bbox_slices(bbox: BBox) -> tuple[slice, slice, slice]:
    """``(z, y, x)`` slices of a half-open bounding box."""
    return slice(bbox[0], bbox[1]), slice(bbox[2], bbox[3]), slice(bbox[4], bbox[5])


def bbox_shape(bbox: BBox) -> tuple[int, int, int]:
    """Shape ``(z, y, x)`` of the region a half-open bounding box covers."""
    return bbox[1] - bbox[0], bbox[3] - bbox[2], bbox[5] - bbox[4]
