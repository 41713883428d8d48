"""Finding the ``.mska``/``.msk`` files of a dataset: folders, files and URL prefixes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from ..errors import MaskValidationError
from ..io.names import is_url

__all__ = ["find_mask_files", "progress_wrapper", "MASK_SUFFIXES", "PathArg"]

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


def progress_wrapper(
    progress: bool | Callable[[Iterable], Iterable] | None, total: int, desc: str
) -> Callable[[Iterable], Iterable]:
    """What wraps the iterable of files read: the caller's wrapper (e.g. ``tqdm.tqdm``), a
    tqdm bar on stderr (``True``; ``None``: on a terminal, for more than 20 files), or none.

    Args:
        progress: ``True``, ``False``, ``None`` or a wrapper.
        total: The number of files.
        desc: The bar's label.
    """
    if callable(progress):
        return progress
    show = progress if progress is not None else (total > 20 and sys.stderr.isatty())
    if not show:
        return lambda it: it
    try:
        from tqdm import tqdm
    except ImportError:  # the ``cli`` extra is optional
        return lambda it: it
    return lambda it: tqdm(it, total=total, desc=desc, unit="file", leave=False, file=sys.stderr)
