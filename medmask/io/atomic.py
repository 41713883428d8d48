"""Atomic, durable file writes: the one way medmask puts a whole file in place.

Every writer of a whole file (``.msk``, a version-1 archive rewrite, a new version-2
archive, NIfTI / NRRD / DICOM / JSON outputs) writes a temporary sibling made here, fsyncs
it, renames it over the target and fsyncs the folder, so that a crash leaves the old file or
the new one, never a part, and the new one is on disk when the call returns. Temporary files
get the permissions a plain ``open(path, "w")`` would give (``0666 & ~umask``), read at the
time of the write, so files packed into a shared dataset stay readable by its other users.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["file_mode", "make_temp", "fsync_dir", "atomic_temp", "write_atomic"]


def _umask() -> int:
    """The process umask, read without changing it where the system tells it (Linux), so
    that no other thread ever sees a temporarily changed umask."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # pragma: no cover - systems without /proc
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


def file_mode() -> int:
    """The permission bits of a file created now by ``open(path, "w")`` (``0666 & ~umask``)."""
    return 0o666 & ~_umask()


def make_temp(target: Path) -> tuple[int, str]:
    """``mkstemp`` beside ``target`` (``O_EXCL``: never a link planted there) with the usual
    file permissions instead of 0600.

    Returns:
        ``(descriptor, temporary path)``.
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    with contextlib.suppress(OSError, AttributeError):  # no fchmod on Windows
        os.fchmod(fd, file_mode())
    return fd, tmp


def fsync_dir(path: Path) -> None:
    """fsync a folder so that a file created or renamed inside it is durable (a no-op where
    folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_temp(target: Path, *, replace: bool = True) -> Iterator[tuple[BinaryIO, Path]]:
    """Yield ``(file, temp_path)`` for a temporary sibling of ``target``.

    On normal exit the temporary file is flushed, fsynced and renamed over ``target``
    (atomic on POSIX), then the folder is fsynced. On an exception the temporary file is
    removed and ``target`` is left untouched.

    Args:
        target: The file to write.
        replace: With ``False`` the file is created only if ``target`` does not exist
            (``FileExistsError`` otherwise), atomically: of two writers creating the same
            file at once, exactly one creates it, and a file another writer may already
            have locked and be appending to is never replaced.

    Raises:
        FileExistsError: ``replace=False`` and ``target`` exists.
        OSError: The write, fsync or rename failed (nothing is left behind).
    """
    target = Path(target)
    fd, tmp = make_temp(target)
    fh = os.fdopen(fd, "w+b")
    try:
        yield fh, Path(tmp)
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        if replace:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # atomic, and fails if target exists
            except FileExistsError:
                raise
            except OSError:  # pragma: no cover - a filesystem without hard links
                os.replace(tmp, target)
            else:
                os.unlink(tmp)
        fsync_dir(target.parent)
    except BaseException:
        # A failed write never leaves its temporary file behind: closing flushes what is
        # still buffered, which fails again on a full disk (ENOSPC/EFBIG), so each step is
        # attempted on its own.
        with contextlib.suppress(OSError):
            fh.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` whole through ``write(binary file)``, atomically and durably.

    Args:
        path: Destination.
        write: Called with the open temporary file (a seekable binary file).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        OSError: The write failed; ``path`` is unchanged and no temporary file remains.
    """
    path = Path(path)
    with atomic_temp(path) as (fh, _tmp):
        write(fh)
    return path
