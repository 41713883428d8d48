"""What a source is, by its content (not by its name): :func:`detect` asks the format table
(:func:`medmask.io.formats.identify_target`), and says clearly what it cannot recognise."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import MaskValidationError
from ..io.formats import formats, identify_target
from ..io.target import Target

__all__ = ["detect"]


def detect(
    src: str | os.PathLike | Target, *, storage_options: Mapping[str, Any] | None = None
) -> str:
    """The kind of a source file or folder, by content.

    Args:
        src: A file or folder (a local path, a URL or a :class:`~medmask.io.Target`).
        storage_options: fsspec options for a URL given as a string.

    Returns:
        The ``kind`` of its entry in the format table (``"nifti"``, ``"seg.nrrd"``,
        ``"dicom-seg"``, ``"folder"``, ``"mska"``, ``"dicom"``, ``"gzip"``...).

    Raises:
        FileNotFoundError: No such file or folder.
        MaskValidationError: Nothing in the table recognises it (the message says what its
            first bytes look like and which formats medmask reads).
    """
    t = Target.of(src, storage_options)
    if t.is_url and t.is_dir():
        raise MaskValidationError(
            "a folder URL: folders of masks are read on the local file system", path=t
        )
    fmt = identify_target(t)
    if fmt is not None:
        return fmt.kind
    readable = [f.title for f in formats() if f.capabilities.pack]
    raise MaskValidationError(
        f"not a format medmask recognises (first bytes {t.read_head(8)!r}); it reads "
        f"{', '.join(readable[:-1])} and {readable[-1]}",
        path=t,
    )
