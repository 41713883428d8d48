"""Shared loading logic: a ``.msk``/``.mska`` path -> channel-first array + MONAI meta.

Everything here is NumPy; the transforms wrap the result as a ``MetaTensor``.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from medmask import MaskArchive, MaskFile
from medmask.errors import (
    CorruptFileError,
    ForeignFileError,
    MaskNotFoundError,
    MaskValidationError,
    UnsupportedFormatError,
    close_matches,
)
from medmask.format import sniff_target
from medmask.geometry import space_to_affine
from medmask.io import Target
from medmask.labeltable import LabelTable
from medmask.ops import match_allowed_values, smallest_int_dtype
from medmask.spaces import Space

__all__ = [
    "Names",
    "MODES",
    "MISSING",
    "resolve_names",
    "load_mask_array",
    "mask_meta",
    "as_numpy_dtype",
    "is_archive",
    "file_kind",
    "medmask_kind",
    "label_dtype",
    "MissingNameWarning",
]

#: ``None`` (all), a list of names (labelled 1..N in order) or ``{name: label}``.
Names = Sequence[str] | Mapping[str, int] | str | None

MODES = ("labelmap", "channels")
MISSING = ("raise", "empty")


def as_numpy_dtype(dtype: Any) -> np.dtype | None:
    """A NumPy dtype for ``dtype`` given as NumPy dtype, type, string or ``torch.dtype``."""
    if dtype is None:
        return None
    if type(dtype).__module__ == "torch" and type(dtype).__name__ == "dtype":
        import torch

        return torch.empty(0, dtype=dtype).numpy().dtype
    try:
        return np.dtype(dtype)
    except TypeError:
        raise MaskValidationError(f"not a NumPy or torch dtype: {dtype!r}") from None


def check_options(mode: str, missing: str) -> None:
    """Validate the ``mode`` and ``missing`` arguments."""
    if mode not in MODES:
        raise MaskValidationError(f"mode must be 'labelmap' or 'channels', got {mode!r}")
    if missing not in MISSING:
        raise MaskValidationError(f"missing must be 'raise' or 'empty', got {missing!r}")


def resolve_names(names: Names) -> dict[str, int] | None:
    """Normalise the ``names`` argument to ``{name: output label}`` (``None``: keep all).

    The table follows the one rule of :class:`medmask.labeltable.LabelTable` (a list is
    labelled 1..N in order; names may share a label: a merge); a single name is a list of
    one.

    Raises:
        MaskValidationError: A name listed twice, or a label that is not a positive integer.
    """
    if names is None:
        return None
    if isinstance(names, str):
        names = [names]
    return LabelTable(names).to_dict()


class MissingNameWarning(UserWarning):
    """A requested mask name is absent and looks like a misspelling of one that is there
    (``LoadMask(d)`` with ``missing="empty"``), or is in none of a dataset's archives."""


def _warn_misspelt(names: Sequence[str], available: Sequence[str], what: str) -> None:
    """Warn for absent names very close to a present one: most likely misspelt.

    Organs absent from some cases are normal with ``missing="empty"``; a name one letter
    off a stored one (``"lver"``, ``"Liver"``) is a typo that would silently give empty
    labels in every case. The message names no file, so Python shows it once per name.
    """
    for n in names:
        near = difflib.get_close_matches(n, list(available), n=1, cutoff=0.8)
        if near:
            warnings.warn(
                f"no {what} named {n!r} (did you mean: {near[0]!r}?); it is loaded as empty "
                "(missing='empty')",
                MissingNameWarning,
                stacklevel=5,
            )


def _missing(path: object, name: str, available: Sequence[str], what: str) -> MaskNotFoundError:
    return MaskNotFoundError(
        f"{path}: no {what} named {name!r} ({len(available)} available)"
        + close_matches(name, available)
        + "; pass missing='empty' to get an empty mask for absent organs"
    )


def mask_meta(path: object, space: Space, labels: Mapping[str, int] | None, mode: str) -> dict:
    """The metadata MONAI readers provide, for a ``(z, y, x)`` medmask space.

    Args:
        path: The file (``filename_or_obj``).
        space: The ``(z, y, x)`` space of the masks.
        labels: ``{name: output label}``; ``None`` leaves out ``labels``.
        mode: ``"labelmap"`` or ``"channels"`` (recorded as ``mask_mode``).

    Returns:
        ``affine`` and ``original_affine`` (4x4 RAS, as ``LoadImage`` reports for the
        NIfTI the masks came from), ``spatial_shape`` (``(x, y, z)``), ``space``
        (``"RAS"``), ``original_channel_dim`` (0), ``filename_or_obj``, and
        ``labels`` (``{name: label}``) and ``mask_mode``.
    """
    affine = space_to_affine(space)
    meta: dict = {
        "affine": affine,
        "original_affine": affine.copy(),
        "spatial_shape": np.array(space.shape[::-1], dtype=np.int64),
        "space": "RAS",
        "original_channel_dim": 0,
        "filename_or_obj": str(path),
    }
    if labels is not None:
        meta["labels"] = dict(labels)
    meta["mask_mode"] = mode
    return meta


def file_kind(
    path: str | os.PathLike | Target, storage_options: Mapping[str, Any] | None = None
) -> str | None:
    """``"mska"``, ``"msk"`` or ``None`` (not a medmask file), by the magic bytes.

    A URL is told by its name when the name says ``.mska``/``.msk`` (no extra request; a
    file whose content contradicts its name is refused by the reader), else by its bytes
    (:func:`medmask.format.sniff_target`, the one medmask sniff; foreign formats are told
    by ``medmask.io.formats.identify`` from the same first bytes).

    Raises:
        FileNotFoundError: No such file or object.
        UnsupportedFormatError: A medmask file of a format version this release does not read.
    """
    try:
        return medmask_kind(path, storage_options)
    except UnsupportedFormatError:  # a medmask file, but a newer one: say so, not "not medmask"
        raise
    except (CorruptFileError, ForeignFileError):  # damaged, or another format
        return None


def medmask_kind(
    path: str | os.PathLike | Target, storage_options: Mapping[str, Any] | None = None
) -> str:
    """``"mska"`` or ``"msk"``, as :func:`file_kind`, raising what the sniff says otherwise.

    Raises:
        ForeignFileError: Another format (the message names it and how to convert it).
        CorruptFileError: Too short, or bytes no format knows.
        UnsupportedFormatError: A format version this release does not read.
        FileNotFoundError: No such file or object.
    """
    target = Target.of(path, storage_options)
    if target.is_url and target.format_name in ("mska", "msk"):
        return target.format_name
    return sniff_target(target).kind


def is_archive(
    path: str | os.PathLike | Target, storage_options: Mapping[str, Any] | None = None
) -> bool:
    """Whether ``path`` is a ``.mska`` (by its magic bytes, not its name)."""
    return file_kind(path, storage_options) == "mska"


def label_dtype(top: int) -> np.dtype:
    """The default dtype of a label map whose largest label is ``top``.

    ``uint8`` up to 255, then ``int16`` up to 32,767, ``int32``, ``int64``: types torch
    supports in its ordinary kernels (:func:`medmask.ops.smallest_int_dtype` with
    ``torch_safe``; torch implements few kernels for ``uint16``/``uint32``: no ``flip``, so
    ``Orientationd`` would fail).
    """
    return smallest_int_dtype(0, top, torch_safe=True)


def _output_dtype(dtype: Any, top: int, mode: str) -> np.dtype:
    """The output dtype: the caller's (checked to hold ``top``) or :func:`label_dtype`."""
    if mode == "channels":
        dt = as_numpy_dtype(dtype)
        return np.dtype(np.uint8) if dt is None else dt
    dt = as_numpy_dtype(dtype)
    if dt is None:
        return label_dtype(max(top, 1))
    if dt.kind == "b" and top > 1:
        raise MaskValidationError(f"dtype bool cannot hold label {top}")
    if dt.kind in "iu" and top > np.iinfo(dt).max:
        raise MaskValidationError(f"dtype {dt} cannot hold label {top}")
    if dt.kind not in "biuf":
        raise MaskValidationError(f"dtype {dt} is not a numeric type")
    return dt


def _fill(target: np.ndarray, where: np.ndarray, value) -> None:
    """``target[where] = value`` (``copyto`` is several times faster than ``putmask``)."""
    np.copyto(target, target.dtype.type(value), where=where)


def _from_archive(
    ar: MaskArchive, path: object, wanted: dict[str, int] | None, mode: str, dtype, missing: str
) -> tuple[np.ndarray, dict[str, int], Space]:
    """The masks of an archive, painted by medmask's one label-map painter
    (:meth:`MaskArchive.read_window` over the whole volume: a later name wins an overlap;
    ``"channels"`` is its stack, one channel per distinct label)."""
    available = ar.all_names()
    if wanted is None:
        wanted = {n: k for k, n in enumerate(available, start=1)}
    elif missing == "raise":
        for n in wanted:
            if n not in ar:
                raise _missing(path, n, available, "mask")
    else:
        _warn_misspelt([n for n in wanted if n not in ar], available, "mask")
    space = ar.space
    if space is None:
        raise MaskValidationError(f"{path}: the archive holds no mask yet")
    shape = tuple(int(s) for s in space.shape)
    out_dtype = _output_dtype(dtype, max(wanted.values(), default=1), mode)
    levels = sorted(set(wanted.values()))
    present = {n: v for n, v in wanted.items() if n in ar}
    whole = (slice(None),) * 3
    if mode == "labelmap":
        if not present:
            return np.zeros((1, *shape), out_dtype), wanted, space
        return ar.read_window(whole, present, dtype=out_dtype)[None], wanted, space
    data = np.zeros((len(levels), *shape), out_dtype)
    if present:
        stack = ar.read_window(whole, present, "stack", dtype=out_dtype)
        if len(stack) == len(levels):
            return stack, wanted, space
        for k, label in enumerate(sorted(set(present.values()))):
            data[levels.index(label)] = stack[k]
    return data, wanted, space


def _from_msk(
    target: Target,
    wanted: dict[str, int] | None,
    mode: str,
    dtype,
    missing: str,
) -> tuple[np.ndarray, dict[str, int], Space]:
    path = target.path
    crop, box, stored, space = MaskFile(target).read_cropped()
    mapping = stored.to_dict()
    shape = tuple(int(s) for s in space.shape)
    if wanted is None:
        wanted = dict(mapping)
    elif missing == "raise":
        for n in wanted:
            if n not in mapping:
                raise _missing(path, n, list(mapping), "label")
    else:
        _warn_misspelt([n for n in wanted if n not in mapping], list(mapping), "label")
    out_dtype = _output_dtype(dtype, max(wanted.values(), default=1), mode)
    levels = sorted(set(wanted.values()))
    n_channels = 1 if mode == "labelmap" else len(levels)
    data = np.zeros((n_channels, *shape), out_dtype)
    if box is None:
        return data, wanted, space
    z0, z1, y0, y1, x0, x1 = box
    region = data[:, z0:z1, y0:y1, x0:x1]
    if crop.dtype == np.bool_:
        crop = crop.view(np.uint8)
    if mode == "labelmap" and all(mapping.get(n) == v for n, v in wanted.items()):
        # the stored labels are the wanted ones: keep exactly those voxels, as they are
        keep = match_allowed_values(crop, list(wanted.values()))
        np.copyto(region[0], crop, where=keep, casting="unsafe")
        return data, wanted, space
    for n, label in wanted.items():
        if n not in mapping:
            continue
        hit = match_allowed_values(crop, [mapping[n]])
        _fill(
            region[0] if mode == "labelmap" else region[levels.index(label)],
            hit,
            label if mode == "labelmap" else 1,
        )
    return data, wanted, space


def load_mask_array(
    path: str | os.PathLike,
    names: Names = None,
    *,
    mode: str = "labelmap",
    dtype: Any = None,
    missing: str = "raise",
    archive: MaskArchive | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, dict]:
    """Load masks from a ``.msk`` or ``.mska`` as a channel-first ``(C, x, y, z)`` array.

    Args:
        path: The file (the kind is told by its magic bytes, not its suffix).
        names: ``None``: every mask of an archive (labels 1..N in archive order) or
            every label of a ``.msk`` (its own labels); a list: those names labelled
            1..N; a dict ``{name: label}``: those names with those labels (labels may
            repeat). In an archive a name is a mask (an entry holding several labels
            counts as one binary mask: its non-zero voxels); in a ``.msk`` it is a label
            name of its mapping.
        mode: ``"labelmap"`` (one channel of labels; where masks overlap the later name
            wins) or ``"channels"`` (one binary channel per distinct output label, in
            increasing label order; overlaps kept).
        dtype: Output dtype (NumPy or torch). Default: :func:`label_dtype` of the
            largest label (``uint8`` up to 255, then ``int16``, ``int32``: types torch's
            ordinary operations support); ``uint8`` for ``"channels"``.
        missing: ``"raise"`` or ``"empty"`` (absent names give empty masks).
        archive: An already open archive for ``path`` (reused, not closed).
        storage_options: fsspec options for a URL (credentials, endpoint...).

    Returns:
        ``(array, meta)``; ``array`` is the ``(x, y, z)`` view of a C-order
        ``(C, z, y, x)`` buffer (Fortran order in space, as nibabel returns NIfTI data).

    Raises:
        MaskNotFoundError: A name is absent and ``missing="raise"``.
        MaskValidationError: Bad ``mode``, ``missing``, ``dtype`` or labels.
        CorruptFileError: The file is damaged or not a medmask file.
        FileNotFoundError: No such file.
    """
    check_options(mode, missing)
    wanted = resolve_names(names)
    target = Target.of(path, storage_options)  # made once: the file and its options
    path = target.local or target.path  # the name in messages and meta
    if archive is not None or is_archive(target):
        if archive is not None:
            data, labels, space = _from_archive(archive, path, wanted, mode, dtype, missing)
        else:
            with MaskArchive(target) as ar:
                data, labels, space = _from_archive(ar, path, wanted, mode, dtype, missing)
    else:
        data, labels, space = _from_msk(target, wanted, mode, dtype, missing)
    meta = mask_meta(path, space, labels, mode)
    return data.transpose(0, 3, 2, 1), meta
