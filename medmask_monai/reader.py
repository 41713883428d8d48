"""A MONAI ``ImageReader`` for medmask files: the one place where ``medmask_monai`` decodes.

As in MONAI, the transforms build on the reader: :class:`~medmask_monai.LoadMask` wraps a
:class:`MaskReader`, which decodes through :func:`medmask_monai._load.load_mask_array`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.utils import ensure_tuple

from medmask.errors import MaskValidationError
from medmask.io.names import is_url

from ._load import Names, as_numpy_dtype, check_options, load_mask_array, medmask_kind

__all__ = ["MaskReader", "SUFFIXES", "load_paths"]

PathLike = str | os.PathLike


def load_paths(
    paths: PathLike | Sequence[PathLike],
    names: Names,
    mode: str,
    dtype: Any,
    missing: str,
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, dict]:
    """Load one file, or several stacked on the channel axis (meta of the first).

    Raises:
        MaskValidationError: An empty sequence of paths.
    """
    kw = {"mode": mode, "dtype": dtype, "missing": missing, "storage_options": storage_options}
    if isinstance(paths, str | os.PathLike):
        return load_mask_array(paths, names, **kw)
    paths = list(paths)
    if not paths:
        raise MaskValidationError("no file to load")
    loaded = [load_mask_array(p, names, **kw) for p in paths]
    if len(loaded) == 1:
        return loaded[0]
    return np.concatenate([a for a, _ in loaded], axis=0), loaded[0][1]


#: File name endings :meth:`MaskReader.verify_suffix` accepts.
SUFFIXES = (".msk", ".mska")


class MaskReader(ImageReader):
    """Read ``.msk`` / ``.mska`` files in ``monai.transforms.LoadImage(d)``.

    The image is channel-first ``(C, x, y, z)``; its meta holds what MONAI's NIfTI
    reader provides for the file the masks came from (``affine`` and
    ``original_affine``: the same RAS affine, ``spatial_shape``, ``space``,
    ``original_channel_dim`` = 0; ``LoadImage`` adds ``filename_or_obj``) plus
    ``labels`` (``{name: label}``) and ``mask_mode``. Several files
    are stacked on the channel axis, with the meta of the first.

    ``LoadImage`` always registers its default readers too and, given explicit
    readers, tries them last-registered first until one's :meth:`read` accepts the
    file; this one accepts only medmask files (by their magic bytes), so one
    ``LoadImaged(["image", "label"], reader=MaskReader(...))`` reads ``.nii.gz``
    images with nibabel and ``.mska`` labels with this reader.

    Note that ``LoadImage`` casts to its own ``dtype`` (``float32`` unless told
    otherwise); pass ``dtype=None`` to ``LoadImage(d)`` to keep the integer labels.
    ``LoadImage`` also passes every name through ``pathlib.Path`` (which turns
    ``s3://b/k`` into ``s3:/b/k``) unless given ``expanduser=False``: for URLs use
    :class:`~medmask_monai.LoadMaskd`, or ``LoadImaged(..., expanduser=False)``.

    Args:
        names: ``None`` (every mask / label), a list of names (labelled 1..N) or a
            ``{name: label}`` dict. See :class:`medmask_monai.LoadMask`.
        mode: ``"labelmap"`` or ``"channels"``.
        dtype: Output dtype of the reader (default: ``uint8`` up to label 255, then
            ``int16``/``int32``, types torch's ordinary operations support).
        missing: ``"raise"`` or ``"empty"``.
        storage_options: fsspec options for URLs (``s3://``, ``gs://``, ...):
            credentials, endpoint... fsspec's own configuration applies too.

    Example:
        >>> from monai.transforms import LoadImaged                        # doctest: +SKIP
        >>> load = LoadImaged(["image", "label"], reader=MaskReader(names=["liver"]),
        ...                   ensure_channel_first=True, dtype=None)     # doctest: +SKIP
    """

    def __init__(
        self,
        names: Names = None,
        mode: str = "labelmap",
        dtype: Any = None,
        missing: str = "raise",
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_options(mode, missing)
        as_numpy_dtype(dtype)  # fail early on a bad dtype
        self.names = names
        self.mode = mode
        self.dtype = dtype
        self.missing = missing
        self.storage_options = None if storage_options is None else dict(storage_options)

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """Whether every file name ends with ``.msk`` or ``.mska`` (case-insensitive)."""
        names = ensure_tuple(filename)
        return bool(names) and all(str(f).lower().endswith(SUFFIXES) for f in names)

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any):
        """Check that every file is a medmask file and return the path(s).

        Decoding happens in :meth:`get_data`; nothing stays open.

        Raises:
            ForeignFileError: A file of another format (so that ``LoadImage``, given
                explicit readers, falls back to the next one, e.g. for NIfTI).
            CorruptFileError: A file is damaged or no known format.
            FileNotFoundError: A file does not exist.
        """
        paths = [p if is_url(p) else os.fspath(p) for p in ensure_tuple(data)]
        for p in paths:
            medmask_kind(p, self.storage_options)  # raises what the file is, if not ours
        return paths if len(paths) > 1 else paths[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """Decode ``img`` (one path, or several stacked on the channel axis).

        Returns:
            ``(array (C, x, y, z), meta)``.
        """
        return load_paths(
            img, self.names, self.mode, self.dtype, self.missing, self.storage_options
        )
