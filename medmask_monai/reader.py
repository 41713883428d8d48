"""A MONAI ``ImageReader`` for medmask files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.data import ImageReader
from monai.utils import ensure_tuple

from medmask.errors import CorruptFileError

from ._load import Names, as_numpy_dtype, check_options, file_kind
from .transforms import load_paths

__all__ = ["MaskReader", "SUFFIXES"]

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

    Args:
        names: ``None`` (every mask / label), a list of names (labelled 1..N) or a
            ``{name: label}`` dict. See :class:`medmask_monai.LoadMask`.
        mode: ``"labelmap"`` or ``"channels"``.
        dtype: Output dtype of the reader (default: the smallest unsigned type
            holding the labels).
        missing: ``"raise"`` or ``"empty"``.

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
    ) -> None:
        super().__init__()
        check_options(mode, missing)
        as_numpy_dtype(dtype)
        self.names = names
        self.mode = mode
        self.dtype = dtype
        self.missing = missing

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """Whether every file name ends with ``.msk`` or ``.mska`` (case-insensitive)."""
        names = ensure_tuple(filename)
        return bool(names) and all(str(f).lower().endswith(SUFFIXES) for f in names)

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any):
        """Check that every file is a medmask file and return the path(s).

        Decoding happens in :meth:`get_data`; nothing stays open.

        Raises:
            CorruptFileError: A file is not a medmask file (so that ``LoadImage``,
                given explicit readers, falls back to the next one, e.g. for NIfTI).
            FileNotFoundError: A file does not exist.
        """
        paths = [os.fspath(p) for p in ensure_tuple(data)]
        for p in paths:
            if file_kind(p) is None:
                raise CorruptFileError("not a medmask file (.msk / .mska)", path=p, field="magic")
        return paths if len(paths) > 1 else paths[0]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """Decode ``img`` (one path, or several stacked on the channel axis).

        Returns:
            ``(array (C, x, y, z), meta)``.
        """
        return load_paths(img, self.names, self.mode, self.dtype, self.missing)
