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

from medmask.errors import MaskNotFoundError, MaskValidationError, close_matches
from medmask.ops import match_allowed_values, smallest_int_dtype, value_runs

from ._like import check_same_grid_as, image_grid, place_like
from ._load import Names, as_numpy_dtype, label_dtype
from .reader import MaskReader, load_paths

__all__ = [
    "LoadMask",
    "LoadMaskd",
    "SelectLabels",
    "SelectLabelsd",
    "to_metatensor",
    "load_paths",
    "LabelSelection",
]

PathLike = str | os.PathLike


def to_metatensor(array: np.ndarray, meta: dict) -> MetaTensor:
    """Wrap a loaded array and its meta as a ``MetaTensor`` (affine as a float64 tensor)."""
    meta = dict(meta)
    affine = torch.as_tensor(meta.pop("affine"), dtype=torch.float64)
    return MetaTensor(torch.from_numpy(array), affine=affine, meta=meta)


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
        dtype: Output dtype, NumPy or torch (e.g. ``torch.int64``); honoured as given
            (a type too small for the labels raises). Default: ``uint8`` up to label
            255, then ``int16`` up to 32,767, then ``int32``: types torch's ordinary
            operations support (not ``uint16``, which has no ``flip``, so
            ``Orientationd`` would fail); ``uint8`` for ``"channels"``.
        missing: ``"raise"`` (default): an absent name raises ``MaskNotFoundError``
            listing close matches. ``"empty"``: it gives empty voxels (organs absent
            from some cases are normal in real data); ``labels`` still lists it.
        storage_options: fsspec options for URLs (``s3://``, ``gs://``, ``https://``...):
            credentials, endpoint... fsspec's own configuration applies too. Decoding is
            done by a :class:`~medmask_monai.MaskReader` with these arguments.
        like: Put the masks on this image's grid: a loaded image (``MetaTensor``) or
            ``(affine, spatial_shape)`` (the 4x4 RAS affine and the ``(x, y, z)`` shape, as
            MONAI reports them). An archive's grid may cover only part of the image (a DICOM
            SEG packed without its source series spans its frames); when both grids are
            one lattice (same spacing and direction, a whole number of voxels apart) the
            masks are padded with 0 and cropped onto the image's grid, exactly, and get
            its affine. Otherwise ``SpaceMismatchError`` names both grids: masks are never
            interpolated here (resampling them is your decision). ``None``: the archive's
            own grid.

    Raises:
        MaskNotFoundError: A requested name is absent and ``missing="raise"``.
        MaskValidationError: Bad ``names``, ``mode``, ``dtype``, ``missing`` or ``like``.
        SpaceMismatchError: ``like`` is on another lattice, or masks have voxels outside
            its grid.
        CorruptFileError: The file is damaged.
        ForeignFileError: The file is another format (NIfTI, NRRD, DICOM...).

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
        storage_options: Mapping[str, Any] | None = None,
        like: Any = None,
    ) -> None:
        self.reader = MaskReader(
            names=names, mode=mode, dtype=dtype, missing=missing, storage_options=storage_options
        )
        if like is not None:
            image_grid(like)  # fail early on something that is not an image
        self.like = like

    # the reader's settings, readable here as before
    names = property(lambda self: self.reader.names)
    mode = property(lambda self: self.reader.mode)
    dtype = property(lambda self: self.reader.dtype)
    missing = property(lambda self: self.reader.missing)
    storage_options = property(lambda self: self.reader.storage_options)

    def __call__(self, path: PathLike | Sequence[PathLike], like: Any = None) -> MetaTensor:
        """Load ``path`` (several paths: stacked on the channel axis).

        Args:
            path: The file(s).
            like: An image whose grid the masks are put on, for this call (see the class;
                default: the ``like`` given at construction).

        Returns:
            A ``(C, x, y, z)`` ``MetaTensor``.
        """
        array, meta = self.reader.get_data(path)
        like = self.like if like is None else like
        if like is not None:
            array, meta = place_like(array, meta, like)
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
        storage_options: See :class:`LoadMask`.
        like: The key of an image already loaded in the same dictionary (e.g.
            ``"image"``, by ``LoadImaged`` before this transform): the masks are put on its
            grid as :class:`LoadMask`'s ``like`` does (pad/crop on one lattice, exact; else
            ``SpaceMismatchError`` naming both grids).
        check_grid: Without ``like``, compare the masks' grid with every image already
            loaded in the dictionary (values with an ``affine``) and raise
            ``SpaceMismatchError`` when one differs: masks on another grid than their image
            would train shifted labels without any error. ``False`` skips the check.

    Raises:
        SpaceMismatchError: See ``like`` and ``check_grid``.
        MaskValidationError: ``like`` names a key that holds no loaded image.

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
        storage_options: Mapping[str, Any] | None = None,
        like: Hashable | None = None,
        check_grid: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadMask(
            names=names, mode=mode, dtype=dtype, missing=missing, storage_options=storage_options
        )
        self.like = like
        self.check_grid = check_grid

    def _image(self, d: Mapping[Hashable, Any]) -> Any:
        image = d.get(self.like)
        if not hasattr(image, "affine"):
            held = "nothing" if image is None else f"a {type(image).__name__}"
            raise MaskValidationError(
                f"LoadMaskd(like={self.like!r}): d[{self.like!r}] holds {held}, not a loaded "
                f"image; load it first (LoadImaged({self.like!r}) before LoadMaskd)"
            )
        return image

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if self.like is not None:
                d[key] = self.loader(d[key], like=self._image(d))
                continue
            d[key] = self.loader(d[key])
            if self.check_grid:
                for other, value in d.items():
                    if other not in self.keys and hasattr(value, "affine"):
                        check_same_grid_as(d[key], value, str(key), str(other))
        return d


# -- label selection ---------------------------------------------------------------------------
_WIDE_UNSIGNED = (torch.uint16, torch.uint32, torch.uint64)

#: What :class:`SelectLabels` takes: integer labels or names (``meta["labels"]`` resolves them).
LabelSelection = int | str | Iterable[int] | Iterable[str] | Mapping[int, int] | Mapping[str, int]


def _torch_dtype(dt: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.empty(0, dt)).dtype


def _as_label(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
        raise MaskValidationError(f"labels must be non-negative integers, got {v!r}")
    return int(v)


def _not_whole(dtype: object, example: float) -> MaskValidationError:
    return MaskValidationError(
        f"SelectLabels: the label map ({dtype}) holds values that are not whole numbers "
        f"(e.g. {example!r}), so it is not a label map: resample labels with nearest "
        "neighbour (Spacingd(..., mode='nearest')) or round them first"
    )


def _whole_numpy(arr: np.ndarray) -> np.ndarray:
    """A float label map as integers; refuses fractions, NaN and infinities."""
    r = np.rint(arr)
    if not np.array_equal(r, arr):  # NaN compares unequal too
        raise _not_whole(arr.dtype, float(arr[r != arr].flat[0]))
    if r.size == 0:
        return r.astype(np.uint8)
    lo, hi = float(r.min()), float(r.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise _not_whole(arr.dtype, hi if not np.isfinite(hi) else lo)
    return r.astype(smallest_int_dtype(int(lo), int(hi)))


def _whole_torch(t: torch.Tensor) -> torch.Tensor:
    """A floating-point label tensor as int64; refuses fractions, NaN and infinities."""
    r = torch.round(t)
    if not (torch.equal(r, t) and bool(torch.isfinite(t).all())):
        bad = t[(r != t) | ~torch.isfinite(t)]
        raise _not_whole(t.dtype, float(bad.reshape(-1)[0]))
    return r.to(torch.int64)


def _label_table(labels: Mapping, where: object = None) -> dict[str, int]:
    """``meta["labels"]`` as ``{name: int}``; a collated batch carries one value per item
    (``{name: tensor([1, 1])}``), which must agree."""
    out = {}
    for name, v in labels.items():
        a = np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v).reshape(-1)
        if a.size == 0 or not (a == a[0]).all():
            raise MaskValidationError(
                f"{where or 'the label map'}: meta['labels'][{name!r}] is {a.tolist()}: the "
                "items of this batch number their labels differently; give LoadMask(d) the "
                "same names= for every case, or select labels before collating"
            )
        out[str(name)] = int(a[0])
    return out


class SelectLabels(Transform):
    """Keep (and optionally remap) a set of labels of a label map; other voxels become 0.

    Works on NumPy arrays (through :func:`medmask.match_allowed_values`), torch tensors
    on any device and ``MetaTensor`` (meta, affine and applied operations kept); the
    output is of the input's kind and device. CPU tensors share their memory with
    NumPy and take the NumPy path; tensors on other devices use torch kernels (one
    compare per run of consecutive labels, or a lookup table).

    Label maps may be integer or floating point: ``LoadImage(d)`` gives ``float32`` by
    default and ``Spacingd(mode="nearest")`` returns ``float32``. Floating-point maps
    must hold whole numbers (anything else is not a label map and raises).

    Labels can be given by name when the input carries its names, as the output of
    :class:`LoadMask` does (``meta["labels"]``, ``{name: label}``):
    ``SelectLabels({"colon": 1, "urinary_bladder": 2})``. After selection a
    ``MetaTensor``'s ``meta["labels"]`` describes the result: every name whose label was
    kept, with its new label (names that shared a label keep sharing it).

    Args:
        labels: The labels to keep: an int or an iterable of ints (kept as they are),
            or a dict ``{old: new}`` that keeps ``old`` and writes ``new`` (several old
            labels may share one new label; ``new=0`` drops ``old``). Names instead of
            ``old`` labels (a name, a list of names, ``{name: new}``) are looked up in the
            input's ``meta["labels"]``.
        binary: Return a boolean mask of the selected voxels instead of labels.
        dtype: Output dtype (NumPy or torch). Default: the input's when keeping labels,
            ``uint8`` up to new label 255 (else ``int16``/``int32``, types torch's
            ordinary operations support) when remapping, ``bool`` with ``binary``.

    Raises:
        MaskValidationError: Negative or non-integer labels, names mixed with integers,
            a label map that is not numeric or holds fractions, or names on an input
            without ``meta["labels"]``.
        MaskNotFoundError: A name is not in the input's ``meta["labels"]`` (the message
            lists close matches).

    Example:
        >>> SelectLabels({5: 1, 6: 1})(np.array([[[0, 5, 6, 7]]])).tolist()
        [[[0, 1, 1, 0]]]
        >>> SelectLabels([2])(np.array([0.0, 2.0, 3.0], np.float32)).tolist()
        [0.0, 2.0, 0.0]
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        labels: LabelSelection,
        binary: bool = False,
        dtype: np.dtype | torch.dtype | str | type | None = None,
    ) -> None:
        self.binary = binary
        self.dtype = as_numpy_dtype(dtype)
        #: ``{name: new label or None (keep)}`` when labels are given by name, else ``None``.
        self.names: dict[str, int | None] | None = None
        self._by_names: dict[tuple, SelectLabels] = {}
        if isinstance(labels, Mapping):
            keys = list(labels)
            if keys and all(isinstance(k, str) for k in keys):
                self.names = {k: _as_label(v) for k, v in labels.items()}
                self.labels, self.remap = [], None
                return
            self.remap: dict[int, int] | None = {
                _as_label(k): _as_label(v) for k, v in labels.items()
            }
            self.labels = sorted(self.remap)
        else:
            seq = [labels] if isinstance(labels, int | np.integer | str) else list(labels)
            if seq and all(isinstance(v, str) for v in seq):
                self.names = dict.fromkeys(seq)
                self.labels, self.remap = [], None
                return
            self.remap = None
            self.labels = sorted({_as_label(v) for v in seq})
        if self.remap is not None:
            groups: dict[int, list[int]] = {}
            for old, new in self.remap.items():
                if new:
                    groups.setdefault(new, []).append(old)
            self._groups = groups

    # -- names ---------------------------------------------------------------------------
    def _for_names(self, img: object) -> SelectLabels:
        """The integer selection that this selection by name means for ``img``."""
        meta = getattr(img, "meta", None)
        stored = meta.get("labels") if isinstance(meta, Mapping) else None
        if not isinstance(stored, Mapping):
            raise MaskValidationError(
                "SelectLabels by name needs the label names of its input: a MetaTensor whose "
                "meta['labels'] is {name: label}, as LoadMask(d) gives; this input has none "
                "(give integer labels instead)"
            )
        stored = _label_table(stored, meta.get("filename_or_obj"))
        key = tuple(stored.items())
        sel = self._by_names.get(key)
        if sel is not None:
            return sel
        where = meta.get("filename_or_obj") or "the label map"
        for n in self.names:
            if n not in stored:
                raise MaskNotFoundError(
                    f"{where}: no label named {n!r} in meta['labels'] ({len(stored)} names)"
                    + close_matches(n, stored)
                )
        if all(v is None for v in self.names.values()):
            labels: Any = [stored[n] for n in self.names]
        else:
            labels = {}
            for n, new in self.names.items():
                old = stored[n]
                if old in labels and labels[old] != new:
                    shared = [m for m, v in stored.items() if v == old]
                    raise MaskValidationError(
                        f"{where}: names {shared} share label {old}; they cannot be given "
                        f"different new labels ({labels[old]} and {new})"
                    )
                labels[old] = new
        sel = SelectLabels(labels, binary=self.binary, dtype=self.dtype)
        if len(self._by_names) > 64:
            self._by_names.clear()
        self._by_names[key] = sel
        return sel

    def new_labels(self, labels: Mapping[str, int]) -> dict[str, int]:
        """``{name: label}`` of the output, given the input's ``{name: label}``.

        Every name whose label is selected stays, with its new label (``1`` with
        ``binary``); the others go. Names keep the input's order.
        """
        stored = _label_table(labels)
        if self.names is not None:
            return self._for_names(_Meta(stored)).new_labels(stored)
        kept = set(self.labels)
        out = {}
        for n, v in stored.items():
            if v not in kept:
                continue
            new = 1 if self.binary else (v if self.remap is None else self.remap[v])
            if new:
                out[n] = new
        return out

    # -- NumPy ---------------------------------------------------------------------------
    def _remap_dtype(self) -> np.dtype:
        if self.dtype is not None:
            return self.dtype
        return label_dtype(max(self.remap.values(), default=1))

    def _numpy(self, arr: np.ndarray) -> np.ndarray:
        if arr.dtype.kind == "f":
            out = self._numpy(_whole_numpy(arr))
            if self.binary or self.remap is not None or self.dtype is not None:
                return out
            return out.astype(arr.dtype)  # keeping labels: the input's type, as MONAI has it
        if arr.dtype.kind not in "iub":
            raise MaskValidationError(
                f"SelectLabels needs a label map of integers or whole numbers, got {arr.dtype}"
            )
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
        if self.names is not None:
            raise MaskValidationError("SelectLabels by name: call it on a MetaTensor")
        if t.dtype.is_complex:
            raise MaskValidationError(
                f"SelectLabels needs a label map of integers or whole numbers, got {t.dtype}"
            )
        if t.dtype.is_floating_point:
            out = self._torch(_whole_torch(t))
            if self.binary or self.remap is not None or self.dtype is not None:
                return out
            return out.to(t.dtype)
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
        """Select labels of ``img`` (array, tensor or ``MetaTensor``); returns the same kind.

        Raises:
            MaskValidationError: See the class.
            MaskNotFoundError: A name absent from ``meta["labels"]``.
        """
        sel = self._for_names(img) if self.names is not None else self
        if not isinstance(img, torch.Tensor):
            return sel._numpy(np.asarray(img))
        plain = img.as_tensor() if isinstance(img, MetaTensor) else img
        plain = plain.detach()
        if plain.device.type == "cpu":
            out = torch.from_numpy(sel._numpy(plain.numpy()))
        else:
            out = sel._torch(plain)
        if not isinstance(img, MetaTensor):
            return out
        result = convert_to_dst_type(out, dst=img, dtype=out.dtype)[0]
        stored = img.meta.get("labels")
        if isinstance(stored, Mapping):
            result.meta = dict(result.meta)  # never change the input's meta
            new = sel.new_labels(stored)
            batch = [v.numel() for v in stored.values() if isinstance(v, torch.Tensor)]
            if batch and max(batch) > 1:  # a collated batch: one value per item, as it came
                new = {k: torch.full((max(batch),), v) for k, v in new.items()}
            result.meta["labels"] = new
        return result


class _Meta:
    """A stand-in carrying only ``meta["labels"]`` (for :meth:`SelectLabels.new_labels`)."""

    def __init__(self, labels: Mapping[str, int]) -> None:
        self.meta = {"labels": dict(labels)}


class SelectLabelsd(MapTransform):
    """Dictionary wrapper of :class:`SelectLabels`.

    Args:
        keys: Keys of the label maps.
        labels: See :class:`SelectLabels` (integer labels, or names found in each
            input's ``meta["labels"]``).
        binary: See :class:`SelectLabels`.
        dtype: See :class:`SelectLabels`.
        allow_missing_keys: Skip absent keys instead of raising.

    Example:
        >>> pick = SelectLabelsd("label", {2: 1, 3: 1})   # both kidneys -> 1     # doctest: +SKIP
        >>> pick = SelectLabelsd("label", {"colon": 1, "urinary_bladder": 2})     # doctest: +SKIP
    """

    backend = SelectLabels.backend

    def __init__(
        self,
        keys: KeysCollection,
        labels: LabelSelection,
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
