"""What a path or URL is, by its name: URL or local path, and the format its suffix names.

The rule every writer follows: *an output's name says its format*. A writer either writes
the format its target's name names or refuses with :func:`expect_name`'s error, which says
what the name should be. The suffixes come from the format table
(:mod:`medmask.io.formats`): a format registered there is known here by its name too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping

from ..errors import MaskValidationError
from .formats import kind_of_suffix, suffix_table, suffixes_longest_first

__all__ = ["is_url", "format_from_name", "split_suffix", "expect_name", "FORMAT_SUFFIXES"]


class _SuffixView(Mapping[str, tuple[str, ...]]):
    """``{kind: suffixes}`` of the format table as it is now (a read-only live view)."""

    def __getitem__(self, kind: str) -> tuple[str, ...]:
        return suffix_table()[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(suffix_table())

    def __len__(self) -> int:
        return len(suffix_table())

    def __repr__(self) -> str:
        return f"FORMAT_SUFFIXES({dict(suffix_table())!r})"


#: Formats medmask knows by name, each with its suffixes (the first one is the canonical
#: one): a live view of the format table (:func:`medmask.io.formats.formats`).
FORMAT_SUFFIXES: Mapping[str, tuple[str, ...]] = _SuffixView()

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(target: object) -> bool:
    """Whether ``target`` is a URL (``scheme://...``) rather than a local path.

    ``file://`` URLs count as URLs (they are read through fsspec like any other).
    """
    return isinstance(target, str) and bool(_URL.match(target))


def _basename(target: str | os.PathLike) -> str:
    s = os.fspath(target)
    if is_url(s):
        s = s.split("?", 1)[0].split("#", 1)[0]
    return s.rstrip("/").rsplit("/", 1)[-1]


def split_suffix(target: str | os.PathLike) -> tuple[str, str]:
    """``(stem, suffix)`` of a file name, with the compound suffixes medmask knows kept whole.

    Example:
        >>> split_suffix("/data/s0000_ml.nii.gz")
        ('s0000_ml', '.nii.gz')
        >>> split_suffix("s3://bucket/case.seg.nrrd")
        ('case', '.seg.nrrd')
    """
    name = _basename(target)
    low = name.lower()
    for suf in suffixes_longest_first():
        if low.endswith(suf) and len(name) > len(suf):
            return name[: -len(suf)], name[-len(suf) :]
    stem, dot, ext = name.rpartition(".")
    if dot and stem:
        return stem, "." + ext
    return name, ""


def format_from_name(target: str | os.PathLike) -> str | None:
    """The format a file name names (a key of :data:`FORMAT_SUFFIXES`), or ``None``.

    Where two formats share a suffix (``.dcm``: DICOM SEG and DICOM images), the first in
    the table's lookup order is the one the name says.

    Example:
        >>> format_from_name("case.mska"), format_from_name("labels.nii.gz"), format_from_name("x")
        ('mska', 'nifti', None)
    """
    suffix = split_suffix(target)[1].lower()
    return kind_of_suffix(suffix) if suffix else None


def expect_name(target: str | os.PathLike, kind: str, *, what: str = "output") -> None:
    """Refuse a target whose name does not say ``kind``.

    Args:
        target: The path or URL about to be written.
        kind: A key of :data:`FORMAT_SUFFIXES` (``"mska"``, ``"msk"``, ``"nifti"``, ...).
        what: How to call the target in the message (``"output"``, ``"archive"``...).

    Raises:
        MaskValidationError: The name has another format's suffix, or none; the message
            says which name would be right.
    """
    if format_from_name(target) == kind:
        return
    stem, suffix = split_suffix(target)
    right = stem + FORMAT_SUFFIXES[kind][0]
    said = (
        f"names a {format_from_name(target)} file"
        if format_from_name(target)
        else (f"has the unknown suffix {suffix!r}" if suffix else "has no suffix")
    )
    raise MaskValidationError(
        f"{os.fspath(target)}: the {what} would be a {kind} file but its name {said}; "
        f"name it like {right!r}"
    )
