"""SegmentationMask: a 3-D label array, its grid and its name <-> label mapping."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ._upcalls import upcall
from .codecs import BIT_DEPTHS, Codec
from .errors import MaskNotFoundError, MaskValidationError, close_matches
from .mapping import LabelMapping
from .ops import match_allowed_values, smallest_uint_dtype
from .spaces import Space, coerce_space, default_space

__all__ = ["SegmentationMask", "BIT_DEPTHS", "normalize_mask_array"]

_DEPTH_OF = {dt: bits for bits, dt in BIT_DEPTHS.items()}


def normalize_mask_array(array: Any, *, copy: bool = True, what: str = "mask array") -> np.ndarray:
    """Validate a label array and bring it to one of the mask dtypes.

    bool, uint8, uint16 and uint32 are kept. Other integer dtypes are converted to the
    smallest unsigned dtype that holds their values (at most uint32), or rejected.

    Args:
        array: A 3-D array-like.
        copy: Copy even when no conversion is needed.
        what: Words naming the array in error messages.

    Returns:
        A C-contiguous array of a mask dtype.

    Raises:
        MaskValidationError: Not 3-D, not an integer/bool dtype, negative values, or
            values above ``2**32 - 1``.
    """
    arr = np.asarray(array)
    if arr.ndim != 3:
        raise MaskValidationError(
            f"{what} must be 3-D (z, y, x), got {arr.ndim}-D with shape {arr.shape}"
        )
    if arr.dtype in _DEPTH_OF:
        return np.array(arr, copy=True, order="C") if copy else np.ascontiguousarray(arr)
    if arr.dtype.kind not in "iu":
        raise MaskValidationError(
            f"{what} has dtype {arr.dtype}; masks are bool, uint8, uint16 or uint32 "
            "(integer arrays with non-negative labels are converted)"
        )
    if arr.size == 0:
        return np.zeros(arr.shape, np.uint8)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise MaskValidationError(
            f"{what} ({arr.dtype}) holds negative values (min {lo}); labels must be >= 0"
        )
    if hi > np.iinfo(np.uint32).max:
        raise MaskValidationError(f"{what} holds label {hi}, above the uint32 limit")
    return arr.astype(smallest_uint_dtype(max(hi, 1)), order="C")


class SegmentationMask:
    """A 3-D ``(z, y, x)`` label array with its geometry and label names.

    Args:
        mask_array: 3-D array of dtype bool, uint8, uint16 or uint32 (other integer
            dtypes holding non-negative labels are converted to the smallest
            unsigned dtype that holds them).
        mapping: A :class:`LabelMapping` or a ``{name: label}`` dict. Labels must
            fit the dtype (a bool mask has the single label 1).
        space: A ``spacetransformer.Space`` in ``(z, y, x)`` order whose shape
            equals the array's (default: unit spacing at the origin).
        copy: Copy the array (default). Pass ``False`` to take ownership of it.

    Raises:
        MaskValidationError: Wrong dimensionality or dtype, negative labels, a label
            that does not fit, or a space of another shape.

    Example:
        >>> import numpy as np
        >>> m = SegmentationMask.lazy_init(8, shape=(4, 5, 6))
        >>> box = np.zeros((4, 5, 6), bool); box[1:3, 1:4, 2:5] = True
        >>> m.add_label(box, 1, "liver")
        >>> int(m.get_binary_mask_by_names("liver").sum())
        18
    """

    __slots__ = ("_array", "_mapping", "_space")

    def __init__(
        self,
        mask_array: Any,
        mapping: LabelMapping | Mapping[str, int] | None,
        space: Space | None = None,
        *,
        copy: bool = True,
    ) -> None:
        self._array = normalize_mask_array(mask_array, copy=copy)
        if isinstance(mapping, LabelMapping):
            self._mapping = mapping.copy()  # always: masks never share a mutable mapping
        else:
            self._mapping = LabelMapping(mapping)
        self._space = coerce_space(space, self._array.shape)
        limit = self._max_label()
        for name, label in self._mapping.items():
            if label > limit:
                raise MaskValidationError(
                    f"label {label} of {name!r} does not fit a {self.bit_depth}-bit mask "
                    f"(largest label {limit})"
                )
            if label == 0 and self._array.dtype == np.bool_:
                raise MaskValidationError(
                    f"{name!r} has label 0, but the set voxels of a boolean mask are label 1 "
                    f"(0 is the background): give {{{name!r}: 1}}"
                )

    # -- construction -----------------------------------------------------------------
    @classmethod
    def lazy_init(
        cls,
        bit_depth: int,
        *,
        space: Space | None = None,
        shape: tuple[int, int, int] | None = None,
    ) -> SegmentationMask:
        """An all-zero mask to fill with :meth:`add_label`.

        Args:
            bit_depth: 1 (bool), 8, 16 or 32.
            space: The ``(z, y, x)`` space; its shape gives the array shape.
            shape: The ``(z, y, x)`` shape when no space is given.

        Returns:
            The empty mask.

        Raises:
            MaskValidationError: Unknown bit depth, neither space nor shape, or both disagreeing.
        """
        if bit_depth not in BIT_DEPTHS:
            raise MaskValidationError(f"bit_depth must be one of 1, 8, 16, 32, got {bit_depth!r}")
        if space is None and shape is None:
            raise MaskValidationError("lazy_init needs a space or a shape")
        if shape is None:
            shape = tuple(int(s) for s in space.shape)
        shape = tuple(int(s) for s in shape)
        if len(shape) != 3 or min(shape) <= 0:
            raise MaskValidationError(f"shape must be three positive integers, got {shape}")
        array = np.zeros(shape, BIT_DEPTHS[bit_depth])
        return cls(
            array, LabelMapping(), space if space is not None else default_space(shape), copy=False
        )

    # -- properties --------------------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        """The label array, as a read-only view (never a copy)."""
        view = self._array.view()
        view.flags.writeable = False
        return view

    @property
    def space(self) -> Space:
        """The ``(z, y, x)`` space."""
        return self._space

    @property
    def mapping(self) -> LabelMapping:
        """The name <-> label mapping."""
        return self._mapping

    @property
    def bit_depth(self) -> int:
        """1 (bool), 8, 16 or 32."""
        return _DEPTH_OF[self._array.dtype]

    @property
    def shape(self) -> tuple[int, int, int]:
        """The ``(z, y, x)`` shape."""
        return self._array.shape  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        """The array dtype."""
        return self._array.dtype

    def _max_label(self) -> int:
        return 1 if self._array.dtype == np.bool_ else int(np.iinfo(self._array.dtype).max)

    # -- editing -----------------------------------------------------------------------
    def add_label(self, mask: Any, label: int, name: str) -> None:
        """Paint the voxels of a boolean region with ``label`` and register ``name``.

        Painting happens in place (no copy of the label array); voxels already
        carrying another label are overwritten (the later label wins).

        Args:
            mask: Boolean array of the mask's shape (an integer array of 0/1 is accepted).
            label: A label from 1 to the bit depth's maximum, not yet used.
            name: A name not yet used.

        Raises:
            MaskValidationError: A used label or name, label 0 or out of range, a
                region of another shape, or a region that is not binary.
        """
        if isinstance(label, bool) or not isinstance(label, int | np.integer):
            raise MaskValidationError(f"label must be an integer, got {label!r}")
        label = int(label)
        if not 1 <= label <= self._max_label():
            raise MaskValidationError(
                f"label {label} for {name!r} is outside 1..{self._max_label()} "
                f"of this {self.bit_depth}-bit mask"
            )
        if name in self._mapping:
            raise MaskValidationError(
                f"name {name!r} is already used (label {self._mapping[name]})"
            )
        if self._mapping.has_label(label):
            raise MaskValidationError(
                f"label {label} is already used by {self._mapping.inverse(label)!r}; cannot add {name!r}"
            )
        region = np.asarray(mask)
        if region.shape != self._array.shape:
            raise MaskValidationError(
                f"region for {name!r} has shape {region.shape}, the mask has {self._array.shape}"
            )
        if region.dtype != np.bool_:
            if region.dtype.kind not in "iuf" or (
                region.size and (region.min() < 0 or region.max() > 1)
            ):
                raise MaskValidationError(
                    f"region for {name!r} must be boolean (or 0/1), got dtype {region.dtype}"
                )
            region = region != 0
        self._mapping[name] = label  # validates the name
        if not self._array.flags.writeable:
            self._array = self._array.copy()
        np.putmask(self._array, region, label)

    # -- queries -----------------------------------------------------------------------
    def _labels_of(self, names: str | Iterable[str]) -> list[int]:
        if isinstance(names, str):
            names = [names]
        labels = []
        for n in names:
            if n not in self._mapping:
                raise MaskNotFoundError(
                    f"no mask named {n!r} (names: {', '.join(self._mapping) or 'none'})"
                    + close_matches(n, self._mapping)
                )
            labels.append(self._mapping[n])
        return labels

    def get_binary_mask_by_names(self, names: str | Iterable[str]) -> np.ndarray:
        """Boolean array of the voxels carrying any of the named labels.

        Args:
            names: A name or an iterable of names.

        Returns:
            A new boolean array of the mask's shape.

        Raises:
            MaskNotFoundError: A name is not in the mapping (close matches are suggested).
        """
        return self._select(self._labels_of(names))

    def get_binary_mask_by_labels(self, labels: int | Iterable[int]) -> np.ndarray:
        """Boolean array of the voxels carrying any of ``labels``.

        Args:
            labels: A label or an iterable of labels.

        Returns:
            A new boolean array of the mask's shape.

        Raises:
            MaskNotFoundError: A label is not in the mapping.
        """
        if isinstance(labels, int | np.integer):
            labels = [int(labels)]
        labels = [int(v) for v in labels]
        for v in labels:
            if not self._mapping.has_label(v):
                raise MaskNotFoundError(
                    f"label {v} is not in the mapping (labels: "
                    f"{', '.join(map(str, self._mapping.labels())) or 'none'})"
                )
        return self._select(labels)

    def _select(self, labels: list[int]) -> np.ndarray:
        if self._array.dtype == np.bool_:
            return self._array.copy() if 1 in labels else np.zeros_like(self._array)
        return match_allowed_values(self._array, labels)

    def to_binary(self) -> np.ndarray:
        """Boolean array of all labelled (non-zero) voxels."""
        return self._array.astype(bool) if self._array.dtype != np.bool_ else self._array.copy()

    # -- persistence and pictures: done above the object model ------------------------
    # These methods are upward calls (medmask._upcalls): the storage and viz layers do the
    # work, plugged in by medmask/__init__.py, so this module imports neither.
    def save(
        self,
        path: str | os.PathLike,
        *,
        codec: str | Codec | None = None,
        attrs: dict | None = None,
    ) -> None:
        """Write this mask to a ``.msk`` file (atomically); :func:`medmask.save_mask` does it.

        Args:
            path: Destination (a local path or a URL).
            codec: ``None``/``"bitzstd"`` (version 2, default) or ``"zstd"`` (version 1,
                readable by medmask 0.1.x).
            attrs: Attributes stored with the mask (version 2 only; see
                :mod:`medmask.attrs`). Without them the file is readable by medmask 0.2.0.

        Raises:
            MaskValidationError: Bad attributes, or attributes with a version-1 codec.
        """
        upcall(SegmentationMask, "save")(self, path, codec=codec, attrs=attrs)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SegmentationMask:
        """Read a ``.msk`` file of any supported version; :func:`medmask.load_mask` does it.

        Raises:
            CorruptFileError: The file is damaged or not a ``.msk``.
            ForeignFileError: A file of another format (NIfTI, NRRD, DICOM...): the
                message says which, and how to convert it.
            UnsupportedFormatError: A version this release does not read.
        """
        seg = upcall(SegmentationMask, "load")(path)
        return seg if type(seg) is cls else cls(seg._array, seg._mapping, seg._space, copy=False)

    def _repr_png_(self) -> bytes:
        """A small picture for notebooks (three projections, one colour per label);
        :func:`medmask.viz.segmask_png` draws it."""
        return upcall(SegmentationMask, "_repr_png_")(self)

    # -- dunder ------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SegmentationMask):
            return NotImplemented
        return (
            self._array.dtype == other._array.dtype
            and self._mapping == other._mapping
            and self._space == other._space
            and np.array_equal(self._array, other._array)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        names = ", ".join(f"{n}={lab}" for n, lab in list(self._mapping.items())[:8])
        more = "" if len(self._mapping) <= 8 else f", ... ({len(self._mapping)} names)"
        return (
            f"SegmentationMask(shape={self.shape}, dtype={self.dtype}, labels=[{names}{more}], "
            f"spacing={tuple(round(float(s), 4) for s in self._space.spacing)})"
        )
