"""MONAI transforms: LoadMask(d) and SelectLabels(d).

As in MONAI, each dictionary transform ``Xd`` is a thin ``MapTransform`` around the
array transform ``X``.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from medmask.errors import MaskValidationError
from medmask.ops import match_allowed_values, smallest_uint_dtype

from ._load import Names, load_mask_array

__all__ = ["LoadMask", "LoadMaskd", "SelectLabels", "SelectLabelsd", "to_metatensor"]


def to_metatensor(array: np.ndarray, meta: dict) -> MetaTensor:
    """Wrap a loaded array and its meta as a ``MetaTensor`` (affine as float64 tensor)."""
    meta = dict(meta)
    affine = torch.as_tensor(meta.pop("affine"), dtype=torch.float64)
    return MetaTensor(torch.from_numpy(array), affine=affine, meta=meta)


class LoadMask(Transform):
    """Load masks from a ``.msk`` or ``.mska`` path as a channel-first ``MetaTensor``.

    The spatial axes are ``(x, y, z)`` and ``affine`` is the RAS affine that
    ``monai.transforms.LoadImage`` reports for the NIfTI the masks came from, so the
    result lines up with images loaded from NIfTI (``Orientationd``, ``Spacingd``,
    ``RandCropByPosNegLabeld`` ... then treat them together).

    Args:
        names: ``None``: every mask of an archive (labels 1..N in archive order) or every
            label of a ``.msk`` (original labels); a list of names: those, in that order,
            labelled 1..N; a dict ``{name: label}``: those names with the given output
            labels (several names may share a label, e.g. both kidneys -> 2).
        mode: ``"labelmap"``: one channel of labels; where masks overlap, the name that
            comes later in ``names`` wins. ``"channels"``: one binary channel per
            distinct output label, in increasing label order (overlaps kept).
        dtype: Output dtype; default the smallest unsigned type holding the labels
            (``uint8`` for ``"channels"``).
        missing: ``"raise"`` (default): an absent name raises ``MaskNotFoundError`` with
            close matches; ``"empty"``: it gives an empty mask (organs absent from some
            cases are normal in real data).

    Raises:
        MaskNotFoundError: A requested name is absent and ``missing="raise"``.
        CorruptFileError: The file is damaged.

    Example:
        >>> load = LoadMask(names={"kidney_left": 2, "kidney_right": 2, "liver": 1})  # doctest: +SKIP
        >>> label = load("s0000.mska")   # MetaTensor (1, x, y, z), uint8              # doctest: +SKIP
    """

    def __init__(
        self, names: Names = None, mode: str = "labelmap", dtype=None, missing: str = "raise"
    ) -> None:
        if mode not in ("labelmap", "channels"):
            raise MaskValidationError(f"mode must be 'labelmap' or 'channels', got {mode!r}")
        if missing not in ("raise", "empty"):
            raise MaskValidationError(f"missing must be 'raise' or 'empty', got {missing!r}")
        self.names = names
        self.mode = mode
        self.dtype = dtype
        self.missing = missing

    def __call__(self, path: str | os.PathLike) -> MetaTensor:
        """Load ``path``; returns a ``(C, x, y, z)`` MetaTensor."""
        array, meta = load_mask_array(
            path, self.names, mode=self.mode, dtype=self.dtype, missing=self.missing
        )
        return to_metatensor(array, meta)


class LoadMaskd(MapTransform):
    """Dictionary wrapper of :class:`LoadMask`: replaces each path under ``keys`` by its masks.

    Args:
        keys: Keys of the paths to load.
        names, mode, dtype, missing: See :class:`LoadMask`.
        allow_missing_keys: Skip keys absent from the dictionary instead of raising.
    """

    def __init__(
        self,
        keys: KeysCollection,
        names: Names = None,
        mode: str = "labelmap",
        dtype=None,
        missing: str = "raise",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadMask(names=names, mode=mode, dtype=dtype, missing=missing)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d


class SelectLabels(Transform):
    """Keep (and optionally remap) a set of labels of a label map; other voxels become 0.

    Works on NumPy arrays (via :func:`medmask.match_allowed_values`), torch tensors on
    any device and ``MetaTensor`` (meta and affine are kept).

    Args:
        labels: The labels to keep: an iterable of ints (kept as they are), or a dict
            ``{old: new}`` that keeps ``old`` and writes ``new`` (several old labels may
            map to one new label).
        binary: Return a boolean mask of the selected voxels instead of labels.
        dtype: Output dtype for labels (default: the input's, or the smallest unsigned
            type holding the new labels when remapping).

    Example:
        >>> SelectLabels({5: 1, 6: 1})(np.array([[[0, 5, 6, 7]]])).tolist()
        [[[0, 1, 1, 0]]]
    """

    def __init__(
        self, labels: Iterable[int] | Mapping[int, int], binary: bool = False, dtype=None
    ) -> None:
        if isinstance(labels, Mapping):
            self.remap = {int(k): int(v) for k, v in labels.items()}
        else:
            self.remap = None
            labels = [labels] if isinstance(labels, int) else list(labels)
        self.labels = sorted(self.remap) if self.remap is not None else [int(v) for v in labels]
        if any(v < 0 for v in self.labels) or (
            self.remap and any(v < 0 for v in self.remap.values())
        ):
            raise MaskValidationError("labels must be non-negative")
        self.binary = binary
        self.dtype = dtype

    def _out_dtype_np(self, in_dtype: np.dtype) -> np.dtype:
        if self.dtype is not None:
            return np.dtype(self.dtype)
        if self.remap is not None:
            return smallest_uint_dtype(max(self.remap.values(), default=1))
        return in_dtype

    def _numpy(self, arr: np.ndarray) -> np.ndarray:
        if arr.dtype.kind not in "iub":
            raise MaskValidationError(f"SelectLabels needs an integer label map, got {arr.dtype}")
        sel = match_allowed_values(arr, self.labels)
        if self.binary:
            return sel
        out = np.zeros(arr.shape, self._out_dtype_np(arr.dtype))
        if self.remap is None:
            np.copyto(out, arr, where=sel, casting="unsafe")
        else:
            for old, new in self.remap.items():
                if new:
                    np.putmask(out, arr == old, new)
        return out

    def _torch(self, t: torch.Tensor) -> torch.Tensor:
        if t.dtype.is_floating_point or t.dtype.is_complex:
            raise MaskValidationError(f"SelectLabels needs an integer label map, got {t.dtype}")
        plain = t.as_tensor() if isinstance(t, MetaTensor) else t
        if len(self.labels) <= 8:
            sel = torch.zeros(plain.shape, dtype=torch.bool, device=plain.device)
            for v in self.labels:
                sel |= plain == v
        else:
            sel = torch.isin(
                plain, torch.tensor(self.labels, device=plain.device, dtype=torch.int64)
            )
        if self.binary:
            out = sel
        elif self.remap is None:
            out = torch.where(sel, plain, torch.zeros((), dtype=plain.dtype, device=plain.device))
            if self.dtype is not None:
                out = out.to(self.dtype)
        else:
            dt = self.dtype or getattr(torch, str(self._out_dtype_np(np.dtype(np.uint8))))
            out = torch.zeros(plain.shape, dtype=dt, device=plain.device)
            for old, new in self.remap.items():
                if new:
                    out[plain == old] = new
        if isinstance(t, MetaTensor):
            return MetaTensor(
                out, affine=t.affine, meta=t.meta, applied_operations=t.applied_operations
            )
        return out

    def __call__(self, img):
        """Select labels of ``img`` (array, tensor or MetaTensor); returns the same kind."""
        if isinstance(img, torch.Tensor):
            return self._torch(img)
        return self._numpy(np.asarray(img))


class SelectLabelsd(MapTransform):
    """Dictionary wrapper of :class:`SelectLabels`.

    Args:
        keys: Keys of the label maps.
        labels, binary, dtype: See :class:`SelectLabels`.
        allow_missing_keys: Skip absent keys instead of raising.
    """

    def __init__(
        self,
        keys: KeysCollection,
        labels: Iterable[int] | Mapping[int, int],
        binary: bool = False,
        dtype=None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.selector = SelectLabels(labels, binary=binary, dtype=dtype)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.selector(d[key])
        return d
