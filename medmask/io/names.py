"""What a path or URL is, by its name: URL or local path, and the format its suffix names.

The rule every writer follows: *an output's name says its format*. A writer either writes
the format its target's name names or refuses with :func:`expect_name`'s error, which says
what the name should be.
"""

from __future__ import annotations

import os
import re

from ..errors import MaskValidationError

__all__ = ["is_url", "format_from_name", "split_suffix", "expect_name", "FORMAT_SUFFIXES"]

#: Formats medmask knows by name, each with its suffixes (the first one is the canonical one).
FORMAT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "mska": (".mska",),
    "msk": (".msk",),
    "nifti": (".nii.gz", ".nii"),
    "seg.nrrd": (".seg.nrrd",),
    "nrrd": (".nrrd", ".nhdr"),
    "dicom": (".dcm", ".dicom"),
    "json": (".json",),
    "csv": (".csv",),
    "parquet": (".parquet",),
    "png": (".png",),
}

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
    for suffixes in FORMAT_SUFFIXES.values():
        for suf in suffixes:
            if low.endswith(suf) and len(name) > len(suf):
                return name[: -len(suf)], name[-len(suf) :]
    stem, dot, ext = name.rpartition(".")
    if dot and stem:
        return stem, "." + ext
    return name, ""


def format_from_name(target: str | os.PathLike) -> str | None:
    """The format a file name names (a key of :data:`FORMAT_SUFFIXES`), or ``None``.

    Example:
        >>> format_from_name("case.mska"), format_from_name("labels.nii.gz"), format_from_name("x")
        ('mska', 'nifti', None)
    """
    suffix = split_suffix(target)[1].lower()
    for kind, suffixes in FORMAT_SUFFIXES.items():
        if suffix in suffixes:
            return kind
    return None


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
