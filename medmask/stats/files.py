"""Finding the ``.mska``/``.msk`` files of a dataset: folders, files and URL prefixes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import MaskValidationError
from ..io.names import is_url

__all__ = ["find_mask_files", "MASK_SUFFIXES", "PathArg"]

#: File name endings of medmask files.
MASK_SUFFIXES = (".mska", ".msk")
PathArg = str | os.PathLike


def _list_url(url: str, storage_options: dict | None) -> list[str]:
    try:
        from ..io.remote import list_files
    except ImportError:  # pragma: no cover - a build without remote support
        raise MaskValidationError(
            f"{url}: this medmask build reads local files only; copy the files locally"
        ) from None
    return list_files(url, MASK_SUFFIXES, storage_options=storage_options)


def find_mask_files(
    paths: PathArg | Sequence[PathArg], *, storage_options: dict | None = None
) -> list[str]:
    """The ``.mska``/``.msk`` files named by ``paths``, folders expanded recursively.

    Args:
        paths: Files, folders and URLs (``s3://bucket/prefix/`` expands like a folder,
            through fsspec), one or a sequence.
        storage_options: fsspec options for URLs.

    Returns:
        Paths and URLs, folders' contents sorted, in the order given, without duplicates.

    Raises:
        FileNotFoundError: A local path that does not exist.
        RemoteReadError: A URL prefix could not be listed.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    out: list[str] = []
    seen: set[str] = set()

    def keep(p: str) -> None:
        if p not in seen:
            seen.add(p)
            out.append(p)

    for p in paths:
        s = os.fspath(p)
        if is_url(s):
            if s.lower().endswith(MASK_SUFFIXES):
                keep(s)
            else:  # a "folder" (prefix): the objects below it
                for f in _list_url(s, storage_options):
                    keep(f)
            continue
        path = Path(s)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if (
                    f.name.lower().endswith(MASK_SUFFIXES)
                    and not f.name.startswith(".")
                    and f.is_file()
                ):
                    keep(str(f))
        elif path.is_file():
            keep(str(path))
        else:
            raise FileNotFoundError(f"{s}: no such file or folder")
    return out
