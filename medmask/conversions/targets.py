"""Foreign files are read and written by libraries that want local paths (nibabel, pynrrd,
pydicom): :func:`local_copy` gives one for any :class:`~medmask.io.Target` (a URL is
downloaded to a temporary folder), :meth:`Target.writing` gives one to write to (a URL is
uploaded whole when the block ends), and :func:`local_folder` refuses URL folders."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import MaskValidationError
from ..io.target import Target

__all__ = ["local_copy", "local_folder"]


@contextlib.contextmanager
def local_copy(target: Target) -> Iterator[Path]:
    """A local path holding the bytes of ``target``.

    Args:
        target: A local file, or a URL (downloaded whole, under its own name so that its
            suffix still says its format).

    Yields:
        The local path (the file itself for a local target); a downloaded copy is removed
        when the block ends.

    Raises:
        FileNotFoundError: No such file or object.
        RemoteReadError: The download failed after the retries.
    """
    if not target.is_url:
        yield Path(target.path)
        return
    from ..io.remote import download

    tmpdir = Path(tempfile.mkdtemp(prefix="medmask-fetch-"))
    try:
        local = tmpdir / (target.name or "object")
        download(target.path, local, storage_options=target.storage_options)
        yield local
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def local_folder(target: Target, what: str) -> Path:
    """``target`` as a local folder path (folders of foreign files are local only).

    Args:
        target: The folder.
        what: Words for the message (``"a folder of masks"``).

    Returns:
        The path.

    Raises:
        MaskValidationError: ``target`` is a URL.
    """
    if target.is_url:
        raise MaskValidationError(
            f"{what} is read and written on the local file system; copy it from or to "
            f"{target.scheme}:// separately",
            path=target,
        )
    return Path(target.path)
