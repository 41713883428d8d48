"""MONAI transforms: LoadMask(d) and SelectLabels(d).

As in MONAI, each dictionary transform ``Xd`` is a thin ``MapTransform`` around the
array transform ``X``.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type

from medmask.errors import MaskValidationError
from medmask.ops import match_allowed_values, smallest_uint_dtype, value_runs

from ._load import Names, as_numpy_dtype, check_options, load_mask_array

__all__ = ["LoadMask", "LoadMaskd", "SelectLabels", "SelectLabelsd", "to_metatensor", "load_paths"]

PathLike = str | os.PathLike


def to_metatensor(array: np.ndarray, meta: dict) -> MetaTensor:
    """Wrap a loaded array and its meta as a ``MetaTensor`` (affine as a float64 tensor)."""
    meta = dict(meta)
    affine = torch.as_tensor(meta.pop("affine"), dtype=torch.float64)
    return MetaTensor(torch.from_numpy(array), affine=affine, meta=meta)


def load_paths(
    paths: PathLike | Sequence[PathLike], names: Names, mode: str, dtype: Any, missing: str
) -> tuple[np.ndarray, dict]:
    """Load one file, or several stacked on the channel axis (meta of the first)."""
    if isinstance(paths, str | os.PathLike):
        return load_mask_array(paths, names, mode=mode, dtype=dtype, missing=missing)
    paths = list(paths)
    if not paths:
        raise MaskValidationError("no file to load")
    loaded = [load_mask_array(p, names, mode=mode, dtype=dtype, missing=missing) for p in paths]
    if len(loaded) == 1:
        return loaded[0]
    return np.concatenate([a for a, _ in loaded], axis=0), loaded[0][1]


class LoadMask(Transform):
    """Load masks from a ``.msk`` or ``.mska`` path as a channel-first ``MetaTensor``.

    The result is ``(C, x, y, z)`` with the RAS ``affine`` that
    ``monai.transforms.LoadImage`` reports for the NIfTI the masks came from, so it
    lines up voxel for voxel with images loaded from NIfTI: ``Orientationd``,
    ``Spacingd``, ``RandCropByPosNegLabeld`` ... can then treat both together.
    ``meta`` also holds ``original_affine``, ``spatial_shape``, ``space``,
    ``filename_or_obj``, and ``labels`` (``{name: output label}``).

    Args:
        names: ``None``: every mask of an archive (labelled 1..N in archive order) or
            every label of a ``.msk`` (its own labels). A list of names: those, in that
            order, labelled 1..N. A dict ``{name: label}``: those names with the given
            output labels; several names may share a label (e.g. both kidneys -> 2).
            In an archive a name is a mask; an entry that itself holds several labels
            counts as one binary mask (its non-zero voxels). In a ``.msk`` a name is a
            label name of its mapping.
        mode: ``"labelmap"``: one channel of integer labels; where masks overlap, the
            name that comes later in ``names`` wins. ``"channels"``: one binary channel
            per distinct output label, in increasing label order (overlaps kept).
        dtype: Output dtype, NumPy or torch (e.g. ``torch.int64``). Default: the
            smallest unsigned type holding the labels (``uint8`` for ``"channels"``).
            Labels above 255 give ``uint16``, which torch supports for few operations
            (no ``flip``): ask for ``torch.int32`` if ``Orientationd`` follows.
        missing: ``"raise"`` (default): an absent name raises ``MaskNotFoundError``
            listing close matches. ``"empty"``: it gives empty voxels (organs absent
            from some cases are normal in real data); ``labels`` still lists it.

    Raises:
        MaskNotFoundError: A requested name is absent and ``missing="raise"``.
        MaskValidationError: Bad ``names``, ``mode``, ``dtype`` or ``missing``.
        CorruptFileError: The file is damaged or not a medmask file.

    Example:
        >>> load = LoadMask(names={"liver": 1, "kidney_left": 2, "kidney_right": 2})  # doctest: +SKIP
        >>> label = load("s0000.mska")   # MetaTensor (1, x, y, z), uint8              # doctest: +SKIP
    """

    def __init__(
        self,
        names: Names = None,
        mode: str = "labelmap",
        dtype: np.dtype | torch.dtype | str | type | None = None,
        missing: str = "raise",
    ) -> None:
        check_options(mode, missing)
        as_numpy_dtype(dtype)  # fail early on a bad dtype
        self.names = names
        self.mode = mode
        self.dtype = dtype
        self.missing = missing

    def __call__(self, path: PathLike | Sequence[PathLike]) -> MetaTensor:
        """Load ``path`` (several paths: stacked on the channel axis).

        Returns:
            A ``(C, x, y, z)`` ``MetaTensor``.
        """
        array, meta = load_paths(path, self.names, self.mode, self.dtype, self.missing)
        return to_metatensor(array, meta)


class LoadMaskd(MapTransform):
    """Dictionary wrapper of :class:`LoadMask`: replaces each path under ``keys`` by its masks.

    Args:
        keys: Keys of the paths to load.
        names: See :class:`LoadMask`.
        mode: See :class:`LoadMask`.
        dtype: See :class:`LoadMask`.
        missing: See :class:`LoadMask`.
        allow_missing_keys: Skip keys absent from the dictionary instead of raising.

    Example:
        >>> load = LoadMaskd("label", names=["liver", "spleen"], missing="empty")  # doctest: +SKIP
        >>> load({"label": "s0000.mska"})["label"].shape                           # doctest: +SKIP
        torch.Size([1, 294, 192, 179])
    """

    def __init__(
        self,
        keys: KeysCollection,
        names: Names = None,
        mode: str = "labelmap",
        dtype: np.dtype | torch.dtype | str | type | None = None,
        missing: str = "raise",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadMask(names=names, mode=mode, dtype=dtype, missing=missing)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d


# -- label selection ---------------------------------------------------------------------------
_WIDE_UNSIGNED = (torch.uint16, torch.uint32, torch.uint64)


def _torch_dtype(dt: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dt)).dtype


class SelectLabels(Transform):
    """Keep (and optionally remap) a set of labels of a label map; other voxels become 0.

    Works on NumPy arrays (through :func:`medmask.match_allowed_values`), torch tensors
    on any device and ``MetaTensor`` (meta, affine and applied operations kept); the
    output is of the input's kind and device. CPU tensors share their memory with
    NumPy and take the NumPy path; tensors on other devices use torch kernels (one
    compare per run of consecutive labels, or a lookup table).

    Args:
        labels: The labels to keep: an int or an iterable of ints (kept as they are),
            or a dict ``{old: new}`` that keeps ``old`` and writes ``new`` (several old
            labels may share one new label; ``new=0`` drops ``old``).
        binary: Return a boolean mask of the selected voxels instead of labels.
        dtype: Output dtype (NumPy or torch). Default: the input's when keeping labels,
            the smallest unsigned type holding the new labels when remapping, ``bool``
            with ``binary``.

    Raises:
        MaskValidationError: Negative or non-integer labels, or a non-integer label map.

    Example:
        >>> SelectLabels({5: 1, 6: 1})(np.array([[[0, 5, 6, 7]]])).tolist()
        [[[0, 1, 1, 0]]]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        labels: int | Iterable[int] | Mapping[int, int],
        binary: bool = False,
        dtype: np.dtype | torch.dtype | str | type | None = None,
    ) -> None:
        def as_label(v: object) -> int:
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
                raise MaskValidationError(f"labels must be non-negative integers, got {v!r}")
            return int(v)

        if isinstance(labels, Mapping):
            self.remap: dict[int, int] | None = {
                as_label(k): as_label(v) for k, v in labels.items()
            }
            self.labels = sorted(self.remap)
        else:
            self.remap = None
            seq = [labels] if isinstance(labels, int | np.integer) else list(labels)
            self.labels = sorted({as_label(v) for v in seq})
        self.binary = binary
        self.dtype = as_numpy_dtype(dtype)
        if self.remap is not None:
            groups: dict[int, list[int]] = {}
            for old, new in self.remap.items():
                if new:
                    groups.setdefault(new, []).append(old)
            self._groups = groups

    # -- NumPy ---------------------------------------------------------------------------
    def _remap_dtype(self) -> np.dtype:
        if self.dtype is not None:
            return self.dtype
        return smallest_uint_dtype(max(self.remap.values(), default=1))

    def _numpy(self, arr: np.ndarray) -> np.ndarray:
        if arr.dtype.kind not in "iub":
            raise MaskValidationError(f"SelectLabels needs an integer label map, got {arr.dtype}")
        if self.binary:
            sel = match_allowed_values(arr, self.labels)
            return sel if self.dtype is None else sel.astype(self.dtype)
        if self.remap is None:
            sel = match_allowed_values(arr, self.labels)
            out = arr & sel if arr.dtype == np.bool_ else np.multiply(arr, sel, dtype=arr.dtype)
            return out if self.dtype is None else out.astype(self.dtype, copy=False)
        out = np.zeros(arr.shape, self._remap_dtype())
        if len(self._groups) > 3 and arr.dtype.itemsize <= 2:
            self._remap_lut(arr, out)
        else:
            for new, olds in self._groups.items():
                np.putmask(out, match_allowed_values(arr, olds), new)
        return out

    def _remap_lut(self, arr: np.ndarray, out: np.ndarray) -> None:
        """8/16-bit label maps, many groups: one lookup-table pass in cache-sized chunks."""
        nbits = 8 * arr.dtype.itemsize
        top = 1 if arr.dtype.kind == "b" else int(np.iinfo(arr.dtype).max)
        lut = np.zeros(1 << nbits, out.dtype)
        for old, new in self.remap.items():
            if old <= top:  # labels the dtype cannot hold never match (no wrap-around)
                lut[old] = new
        flat = np.ascontiguousarray(arr).reshape(-1).view(np.dtype(f"u{arr.dtype.itemsize}"))
        dst = out.reshape(-1)
        step = 1 << 18
        for i in range(0, flat.size, step):
            np.take(lut, flat[i : i + step], out=dst[i : i + step])

    # -- torch (non-CPU devices) ---------------------------------------------------------
    def _torch(self, t: torch.Tensor) -> torch.Tensor:
        if t.dtype.is_floating_point or t.dtype.is_complex:
            raise MaskValidationError(f"SelectLabels needs an integer label map, got {t.dtype}")
        dev = t.device
        top = max(self.labels, default=0)
        # torch implements few kernels for uint16/32/64 ("ge_cpu" ...): compare as int64
        work = t.to(torch.int64) if t.dtype in _WIDE_UNSIGNED else t
        # torch casts a scalar to the tensor's dtype (uint8: 257 == 1): drop what cannot occur
        info = (
            (0, 1)
            if t.dtype == torch.bool
            else (torch.iinfo(t.dtype).min, torch.iinfo(t.dtype).max)
        )
        if self.remap is not None and not self.binary:
            out_dtype = _torch_dtype(self._remap_dtype())
            if top < (1 << 16):
                lut = torch.zeros(top + 2, dtype=torch.int64, device=dev)
                for old, new in self.remap.items():
                    lut[old] = new
                return lut[self._lut_index(work, top)].to(out_dtype)
            out = torch.zeros(t.shape, dtype=torch.int64, device=dev)  # no masked_fill for uint16
            for new, olds in self._groups.items():
                hit = torch.zeros(t.shape, dtype=torch.bool, device=dev)
                for old in olds:
                    if info[0] <= old <= info[1]:
                        hit |= work == old
                out.masked_fill_(hit, new)
            return out.to(out_dtype)
        runs = value_runs([v for v in self.labels if info[0] <= v <= info[1]])
        if not runs:
            sel = torch.zeros(t.shape, dtype=torch.bool, device=dev)
        elif len(runs) <= 8:
            sel = None
            for lo, hi in runs:
                hit = work == lo if lo == hi else (work >= lo) & (work <= hi)
                sel = hit if sel is None else sel.logical_or_(hit)
        else:
            lut = torch.zeros(top + 2, dtype=torch.bool, device=dev)
            lut[torch.tensor(self.labels, device=dev)] = True
            sel = lut[self._lut_index(work, top)]
        if self.binary:
            return sel if self.dtype is None else sel.to(_torch_dtype(self.dtype))
        out = torch.where(sel, t, torch.zeros((), dtype=t.dtype, device=dev))
        return out if self.dtype is None else out.to(_torch_dtype(self.dtype))

    @staticmethod
    def _lut_index(work: torch.Tensor, top: int) -> torch.Tensor:
        """Indices into a ``top + 2`` table whose last slot is empty: out of range -> last.

        Never modifies ``work`` (``.long()`` of an int64 tensor is the tensor itself).
        """
        return torch.clamp(work.long(), -1, top + 1)

    def __call__(self, img: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Select labels of ``img`` (array, tensor or ``MetaTensor``); returns the same kind."""
        if not isinstance(img, torch.Tensor):
            return self._numpy(np.asarray(img))
        plain = img.as_tensor() if isinstance(img, MetaTensor) else img
        plain = plain.detach()
        if plain.device.type == "cpu":
            out = torch.from_numpy(self._numpy(plain.numpy()))
        else:
            out = self._torch(plain)
        if isinstance(img, MetaTensor):
            return convert_to_dst_type(out, dst=img, dtype=out.dtype)[0]
        return out


class SelectLabelsd(MapTransform):
    """Dictionary wrapper of :class:`SelectLabels`.

    Args:
        keys: Keys of the label maps.
        labels: See :class:`SelectLabels`.
        binary: See :class:`SelectLabels`.
        dtype: See :class:`SelectLabels`.
        allow_missing_keys: Skip absent keys instead of raising.

    Example:
        >>> pick = SelectLabelsd("label", {2: 1, 3: 1})   # both kidneys -> 1     # doctest: +SKIP
    """

    backend = SelectLabels.backend

    def __init__(
        self,
        keys: KeysCollection,
        labels: int | Iterable[int] | Mapping[int, int],
        binary: bool = False,
        dtype: np.dtype | torch.dtype | str | type | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.selector = SelectLabels(labels, binary=binary, dtype=dtype)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.selector(d[key])
        return d
