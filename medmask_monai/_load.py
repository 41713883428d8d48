"""Shared loading logic: a ``.msk``/``.mska`` path -> channel-first array + MONAI meta."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medmask import MaskArchive, MaskFile
from medmask.errors import MaskNotFoundError, MaskValidationError, close_matches
from medmask.nifti import space_to_affine
from medmask.ops import match_allowed_values, smallest_uint_dtype
from medmask.spaces import Space

__all__ = ["Names", "resolve_names", "load_mask_array", "mask_meta"]

#: ``None`` (all), a list of names (labelled 1..N in order) or ``{name: label}``.
Names = Sequence[str] | Mapping[str, int] | None


def resolve_names(names: Names, available: Sequence[str]) -> dict[str, int] | None:
    """Normalise the ``names`` argument to ``{name: output label}`` (``None``: keep all)."""
    if names is None:
        return None
    if isinstance(names, str):
        names = [names]
    if isinstance(names, Mapping):
        out = {}
        for n, label in names.items():
            if isinstance(label, bool) or not isinstance(label, int | np.integer) or label < 1:
                raise MaskValidationError(
                    f"output label of {n!r} must be a positive integer, got {label!r}"
                )
            out[str(n)] = int(label)
        return out
    names = list(names)
    if len(set(names)) != len(names):
        raise MaskValidationError(f"names contain duplicates: {names}")
    return {str(n): k for k, n in enumerate(names, start=1)}


def _missing(path: object, name: str, available: Sequence[str]) -> MaskNotFoundError:
    return MaskNotFoundError(
        f"{path}: no mask named {name!r} ({len(available)} available)"
        + close_matches(name, available)
        + "; pass missing='empty' to get an empty mask for absent organs"
    )


def mask_meta(path: object, space: Space, labels: Mapping[str, int], mode: str) -> dict:
    """The metadata MONAI readers provide, for a ``(z, y, x)`` space."""
    affine = space_to_affine(space)
    return {
        "affine": affine,
        "original_affine": affine.copy(),
        "spatial_shape": np.array(space.shape[::-1], dtype=np.int64),
        "space": "RAS",
        "original_channel_dim": 0,
        "filename_or_obj": str(path),
        "labels": dict(labels),
        "label_names": list(labels),
        "mask_mode": mode,
    }


def _paint(out: np.ndarray, crop: np.ndarray, box, value) -> None:
    if box is None:
        return
    z0, z1, y0, y1, x0, x1 = box
    region = out[z0:z1, y0:y1, x0:x1]
    np.putmask(region, crop != 0, value)


def load_mask_array(
    path: str | os.PathLike,
    names: Names = None,
    *,
    mode: str = "labelmap",
    dtype: np.dtype | type | None = None,
    missing: str = "raise",
    archive: MaskArchive | None = None,
) -> tuple[np.ndarray, dict]:
    """Load masks from a ``.msk`` or ``.mska`` as a channel-first ``(C, x, y, z)`` array.

    Args:
        path: The file.
        names: ``None``: every mask (archive; labels 1..N in archive order) or every
            label (``.msk``, original labels); a list: those names labelled 1..N; a dict
            ``{name: label}``: those names with those labels (labels may repeat).
        mode: ``"labelmap"`` (one channel of labels; where masks overlap the later name
            wins) or ``"channels"`` (one binary channel per distinct output label, in
            increasing label order; overlaps kept).
        dtype: Output dtype (default: the smallest unsigned type holding the labels).
        missing: ``"raise"`` or ``"empty"`` (absent names give empty masks).
        archive: An already open archive for ``path`` (reused, not closed).

    Returns:
        ``(array, meta)``; ``array`` is a view in ``(x, y, z)`` order of a ``(z, y, x)``
        C-order buffer (Fortran order, as nibabel returns NIfTI data).

    Raises:
        MaskNotFoundError: A name is absent and ``missing="raise"``.
        MaskValidationError: Bad ``mode``, ``missing`` or labels.
        CorruptFileError: The file is damaged.
    """
    if mode not in ("labelmap", "channels"):
        raise MaskValidationError(f"mode must be 'labelmap' or 'channels', got {mode!r}")
    if missing not in ("raise", "empty"):
        raise MaskValidationError(f"missing must be 'raise' or 'empty', got {missing!r}")
    path = Path(path)
    with open(path, "rb") as fh:
        is_archive = fh.read(4) == b"MSKA"
    if is_archive:
        own = archive is None
        ar = MaskArchive(path) if own else archive
        try:
            available = ar.all_names()
            wanted = resolve_names(names, available)
            if wanted is None:
                wanted = {n: k for k, n in enumerate(available, start=1)}
            for n in wanted:
                if n not in ar and missing == "raise":
                    raise _missing(path, n, available)
            space = ar.space
            if space is None:
                raise MaskValidationError(f"{path}: the archive holds no mask yet")
            shape = tuple(int(s) for s in space.shape)
            if mode == "labelmap":
                out_dtype = (
                    np.dtype(dtype)
                    if dtype is not None
                    else smallest_uint_dtype(max(wanted.values(), default=1))
                )
                out = np.zeros(shape, out_dtype)
                for n, label in wanted.items():
                    if n in ar:
                        crop, box = ar.read_cropped(n)
                        _paint(out, crop, box, label)
                data = out[None]
            else:
                levels = sorted(set(wanted.values()))
                out_dtype = np.dtype(dtype) if dtype is not None else np.dtype(np.uint8)
                data = np.zeros((len(levels), *shape), out_dtype)
                for n, label in wanted.items():
                    if n in ar:
                        crop, box = ar.read_cropped(n)
                        _paint(data[levels.index(label)], crop, box, 1)
        finally:
            if own:
                ar.close()
    else:
        seg = MaskFile(path).read()
        space = seg.space
        available = seg.mapping.names()
        wanted = resolve_names(names, available)
        lab = seg.data
        if wanted is None:
            wanted = dict(seg.mapping.items())
            identity = True
        else:
            identity = False
            for n in wanted:
                if n not in seg.mapping and missing == "raise":
                    raise _missing(path, n, available)
        if mode == "labelmap":
            top = max(wanted.values(), default=1)
            out_dtype = np.dtype(dtype) if dtype is not None else smallest_uint_dtype(top)
            if identity:
                out = lab.astype(out_dtype)
            else:
                out = np.zeros(lab.shape, out_dtype)
                for n, label in wanted.items():
                    if n in seg.mapping:
                        np.putmask(out, match_allowed_values(lab, [seg.mapping[n]]), label)
            data = out[None]
        else:
            levels = sorted(set(wanted.values()))
            out_dtype = np.dtype(dtype) if dtype is not None else np.dtype(np.uint8)
            data = np.zeros((len(levels), *lab.shape), out_dtype)
            for n, label in wanted.items():
                if n in seg.mapping:
                    np.putmask(
                        data[levels.index(label)], match_allowed_values(lab, [seg.mapping[n]]), 1
                    )
    meta = mask_meta(path, space, wanted, mode)
    return data.transpose(0, 3, 2, 1), meta
