"""A MONAI ``ImageReader`` for medmask files."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from monai.data import ImageReader
from monai.utils import ensure_tuple

from ._load import Names, load_mask_array

__all__ = ["MaskReader"]

SUFFIXES = (".msk", ".mska")


class MaskReader(ImageReader):
    """Read ``.msk`` / ``.mska`` files in ``monai.transforms.LoadImage(d)``.

    The image is channel-first ``(C, x, y, z)`` with the RAS affine MONAI's own NIfTI
    reader would report for the NIfTI the masks came from, so that images and masks
    line up voxel for voxel.

    Args:
        names: ``None`` (all masks / labels), a list of names (labelled 1..N) or a
            ``{name: label}`` dict. See :func:`medmask_monai.LoadMask`.
        mode: ``"labelmap"`` or ``"channels"``.
        dtype: Output dtype (default: smallest unsigned type holding the labels).
        missing: ``"raise"`` or ``"empty"``.

    Example:
        >>> from monai.transforms import LoadImaged                        # doctest: +SKIP
        >>> load = LoadImaged("label", reader=MaskReader(names=["liver"]))  # doctest: +SKIP
    """

    def __init__(
        self, names: Names = None, mode: str = "labelmap", dtype=None, missing: str = "raise"
    ) -> None:
        super().__init__()
        self.names = names
        self.mode = mode
        self.dtype = dtype
        self.missing = missing

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """Whether every file name ends with ``.msk`` or ``.mska``."""
        return all(str(f).lower().endswith(SUFFIXES) for f in ensure_tuple(filename))

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs):
        """Return the path(s); decoding happens in :meth:`get_data` (nothing to keep open)."""
        paths = [os.fspath(p) for p in ensure_tuple(data)]
        return paths if len(paths) > 1 else paths[0]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        """Decode ``img`` (one path or several, stacked on the channel axis).

        Returns:
            ``(array (C, x, y, z), meta)`` with ``affine``, ``original_affine``,
            ``spatial_shape``, ``space``, ``original_channel_dim`` and ``labels``.
        """
        arrays, meta = [], None
        for p in ensure_tuple(img):
            arr, m = load_mask_array(
                p, self.names, mode=self.mode, dtype=self.dtype, missing=self.missing
            )
            arrays.append(arr)
            meta = meta or m
        data = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        return data, meta
