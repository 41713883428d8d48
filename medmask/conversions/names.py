"""File names for masks: names come from files other people wrote and are never trusted
as paths (:func:`safe_filename`), and the mask name of a file name (:func:`strip_suffix`)."""

from __future__ import annotations

import re
import unicodedata

from ..io.formats.builtin import Nifti

__all__ = ["safe_filename", "strip_suffix", "unique_names", "NIFTI_SUFFIXES"]

#: File name endings recognised as NIfTI (the format table's NIfTI entry).
NIFTI_SUFFIXES: tuple[str, ...] = Nifti.suffixes

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{k}" for p in ("COM", "LPT") for k in range(10)}


def safe_filename(name: str, taken: set[str] | None = None, *, max_len: int = 120) -> str:
    """A file name for a mask name that cannot escape its folder.

    Separators, ``..``, NUL, control and other odd characters become ``_``; accents
    are folded to ASCII; leading dots are removed; Windows device names get a ``_``
    prefix; an empty result becomes ``mask``.

    Args:
        name: The mask name.
        taken: Names already used in the folder (lower case); collisions get a
            ``-2``, ``-3`` ... suffix, and the result is added to ``taken``.
        max_len: Longest base name.

    Returns:
        A plain file name (no directory part), without suffix.
    """
    norm = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    base = _UNSAFE.sub("_", norm).strip("._ ")[:max_len] or "mask"
    if base.upper().split(".")[0] in _RESERVED:
        base = f"_{base}"
    if taken is None:
        return base
    cand, k = base, 1
    while cand.lower() in taken:
        k += 1
        cand = f"{base}-{k}"
    taken.add(cand.lower())
    return cand


def strip_suffix(filename: str) -> str:
    """The mask name of a file name: ``liver.nii.gz`` -> ``liver``.

    Args:
        filename: A file name (not a path).

    Returns:
        The name without ``.nii.gz`` / ``.nii``.
    """
    for suffix in NIFTI_SUFFIXES:
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


def unique_names(names: list[str], *, empty: str = "segment") -> tuple[list[str], dict[int, str]]:
    """Make a list of mask names unique, deterministically.

    The first occurrence of a name keeps it; later ones become ``name (2)``,
    ``name (3)`` ... (skipping names already taken). Empty or blank names become
    ``<empty> <position + 1>``.

    Args:
        names: Names in file order (segment labels, ``SegmentN_Name`` values ...).
        empty: The stem used for empty names.

    Returns:
        ``(unique names, {position: original name})`` for every name that was changed,
        so that callers can report them.
    """
    out: list[str] = []
    changed: dict[int, str] = {}
    taken = set(n for n in names if n and n.strip())
    seen: set[str] = set()
    for k, name in enumerate(names):
        cand = name if name and name.strip() else f"{empty} {k + 1}"
        if cand in seen or (cand != name and cand in taken):
            stem, j = cand, 2
            while f"{stem} ({j})" in seen or f"{stem} ({j})" in taken:
                j += 1
            cand = f"{stem} ({j})"
        if cand != name:
            changed[k] = name
        seen.add(cand)
        out.append(cand)
    return out, changed
