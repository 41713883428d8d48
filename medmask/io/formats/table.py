"""The table of formats (:func:`register_format`, :func:`formats`...) and the one answer to
"what kind of file is this?" (:func:`identify`, :func:`identify_target`)."""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from .base import FileFormat

__all__ = [
    "register_format",
    "unregister_format",
    "get_format",
    "formats",
    "suffix_table",
    "suffixes_longest_first",
    "kind_of_suffix",
    "identify",
    "identify_target",
    "HEAD_BYTES",
]

#: Bytes read from the start of a file to identify it.
HEAD_BYTES = 64 * 1024
#: Bytes of a gzip stream's content inflated to identify what it holds.
_INNER_BYTES = 4096
_GZIP_MAGIC = b"\x1f\x8b"


class _Target(Protocol):
    """What :func:`identify_target` needs of a :class:`medmask.io.Target`."""

    path: str
    is_url: bool

    def read_head(self, n: int = ...) -> bytes: ...


# -- the table ----------------------------------------------------------------------------------
_TABLE: dict[str, FileFormat] = {}
#: Views of the table computed once per change of it (names are looked up per file).
_VIEWS: dict[str, object] = {}


def register_format(fmt: FileFormat, *, replace: bool = False) -> FileFormat:
    """Add a format to the table (after the formats already there).

    Args:
        fmt: An instance of a :class:`FileFormat` subclass.
        replace: Replace the entry of the same ``kind`` (keeping its place in the table):
            how :mod:`medmask.conversions` supplies the built-in entries' ``read`` and
            ``write``.

    Returns:
        ``fmt``.

    Raises:
        TypeError: ``fmt`` is not a :class:`FileFormat` instance.
        ValueError: No ``kind``, a suffix that is not lower case with a leading dot, or a
            ``kind`` already in the table (without ``replace``).
    """
    if not isinstance(fmt, FileFormat):
        raise TypeError(f"register_format takes a FileFormat instance, not {type(fmt).__name__}")
    if not fmt.kind or not isinstance(fmt.kind, str):
        raise ValueError(f"{type(fmt).__name__}: a format needs a kind (a non-empty string)")
    bad = [s for s in fmt.suffixes if not (s.startswith(".") and s == s.lower() and len(s) > 1)]
    if bad:
        raise ValueError(f"{fmt.kind}: suffixes must be lower case and start with '.', got {bad}")
    if fmt.kind in _TABLE and not replace:
        raise ValueError(
            f"{fmt.kind}: already registered ({_TABLE[fmt.kind]!r}); pass replace=True to "
            "replace it"
        )
    _TABLE[fmt.kind] = fmt
    _VIEWS.clear()
    return fmt


def unregister_format(kind: str) -> FileFormat:
    """Remove a format from the table.

    Args:
        kind: Its ``kind``.

    Returns:
        The entry removed.

    Raises:
        KeyError: No such kind.
    """
    fmt = _TABLE.pop(kind)
    _VIEWS.clear()
    return fmt


def get_format(kind: str) -> FileFormat:
    """The table's entry for ``kind``.

    Raises:
        KeyError: No such kind (the message lists the kinds there are).
    """
    try:
        return _TABLE[kind]
    except KeyError:
        raise KeyError(f"no file format {kind!r}; known: {', '.join(_TABLE)}") from None


def formats() -> tuple[FileFormat, ...]:
    """Every format, in lookup order: the specific ones in registration order, then the
    ``fallback`` ones (generic containers), in registration order."""
    found = _VIEWS.get("formats")
    if found is None:
        entries = list(_TABLE.values())
        found = _VIEWS["formats"] = tuple(
            [f for f in entries if not f.fallback] + [f for f in entries if f.fallback]
        )
    return found  # type: ignore[return-value]


def suffixes_longest_first() -> tuple[str, ...]:
    """Every suffix of the table, compound ones (``.seg.nrrd``, ``.nii.gz``) before the
    plain ones they end with (``.nrrd``, ``.gz``)."""
    found = _VIEWS.get("suffixes")
    if found is None:
        every = {suf for fmt in formats() for suf in fmt.suffixes}
        found = _VIEWS["suffixes"] = tuple(sorted(every, key=lambda s: (-len(s), s)))
    return found  # type: ignore[return-value]


def kind_of_suffix(suffix: str) -> str | None:
    """The kind a suffix (``".nii.gz"``, any case) names: the first format in lookup order
    that claims it, or ``None``."""
    found = _VIEWS.get("by_suffix")
    if found is None:
        by: dict[str, str] = {}
        for fmt in formats():
            for suf in fmt.suffixes:
                by.setdefault(suf, fmt.kind)
        found = _VIEWS["by_suffix"] = by
    return found.get(suffix.lower())  # type: ignore[attr-defined]


# -- identification -----------------------------------------------------------------------------
def _inflated(head: bytes) -> bytes:
    """The first inflated bytes of a gzip stream (empty when it is not one)."""
    try:
        return zlib.decompressobj(wbits=31).decompress(head, _INNER_BYTES)
    except zlib.error:
        return b""


def identify(head: bytes) -> FileFormat | None:
    """What kind of file starts with ``head``: the one answer, from the table.

    A gzip stream is looked into: a ``gzipped`` format whose ``sniff`` accepts its first
    inflated bytes wins (a ``.nii.gz``); otherwise it is plain gzip.

    Args:
        head: The first bytes of the file (:data:`HEAD_BYTES` are enough for every
            built-in format).

    Returns:
        The format, or ``None`` when no entry recognises the bytes.
    """
    table = [f for f in formats() if not f.folder]
    if head[:2] == _GZIP_MAGIC:
        inner = _inflated(head)
        for fmt in table:
            if fmt.gzipped and inner and fmt.sniff(inner):
                return fmt
    for fmt in table:
        if fmt.sniff(head):
            return fmt
    return None


def identify_target(target: str | os.PathLike[str] | _Target) -> FileFormat | None:
    """What kind of file (or folder) ``target`` is, by its content.

    Args:
        target: A local path, or a :class:`medmask.io.Target` (a URL is read through its
            byte source: only its first :data:`HEAD_BYTES`).

    Returns:
        The format; for a local folder the first ``folder`` format whose ``sniff_folder``
        accepts it. ``None`` when nothing recognises it (a URL prefix is not looked into).

    Raises:
        FileNotFoundError: No such file or folder.
        ValueError: A URL given as a string (give ``Target.of(url, storage_options)``).
        OSError: It cannot be read.
    """
    if hasattr(target, "read_head"):
        if target.is_url:  # type: ignore[union-attr]
            if target.path.endswith("/"):  # type: ignore[union-attr]
                return None
            return identify(target.read_head(HEAD_BYTES))  # type: ignore[union-attr]
        text = target.path  # type: ignore[union-attr]
    else:
        text = os.fspath(target)  # type: ignore[arg-type]
        if "://" in text and not os.path.exists(text):
            raise ValueError(f"{text}: a URL; identify medmask.io.Target.of(url, options)")
    local = Path(text)
    if local.is_dir():
        return next((f for f in formats() if f.folder and f.sniff_folder(local)), None)
    if not local.exists():
        raise FileNotFoundError(f"{local}: no such file or folder")
    with open(local, "rb") as fh:
        return identify(fh.read(HEAD_BYTES))


def suffix_table() -> Mapping[str, tuple[str, ...]]:
    """``{kind: suffixes}`` of the formats that have suffixes, in lookup order."""
    return {f.kind: f.suffixes for f in formats() if f.suffixes}
