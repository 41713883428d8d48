"""MONAI transforms: LoadMask(d), and SelectLabels(d) (from :mod:`.select`).

As in MONAI, each dictionary transform ``Xd`` is a thin ``MapTransform`` around the
array transform ``X``.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from medmask.errors import MaskValidationError

from ._cases import SchemePainter, check_on_stale, load_case
from ._like import check_same_grid_as, image_grid, place_like
from ._load import Names
from .reader import MaskReader, load_paths
from .select import LabelSelection, SelectLabels, SelectLabelsd

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
        scheme: A :class:`medmask.schemes.LabelScheme` (instead of ``names``): each
            case's masks are mapped onto its classes at index level (a derived class is
            the union of its parts) and painted with the scheme's labels, or one channel
            per class (``"channels"``, the scheme's order); ``meta["label_available"]``
            says which classes the case was annotated for (its ``annotated`` attribute,
            else its stored masks; ``docs/datasets.md``) and ``meta["labels"]`` is the
            scheme's ``{class: label}``. Archives only.
        on_stale: For a catalogued archive (a :class:`medmask.catalog.ArchiveRef`, what
            ``Catalog.datalist`` gives): ``"raise"`` (default) when it changed since the
            catalogue was written, or ``"reread"`` it as it is now (with a warning).

    Raises:
        MaskNotFoundError: A requested name is absent and ``missing="raise"``.
        MaskValidationError: Bad ``names``, ``mode``, ``dtype``, ``missing`` or ``like``;
            ``names`` and ``scheme`` together.
        SpaceMismatchError: ``like`` is on another lattice, or masks have voxels outside
            its grid.
        CorruptFileError: The file is damaged.
        ForeignFileError: The file is another format (NIfTI, NRRD, DICOM...).
        StaleCatalogError: A catalogued archive changed (``on_stale="raise"``).
        MissingArchiveError: A catalogued archive does not exist.

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
        scheme: Any = None,
        on_stale: str = "raise",
        like: Any = None,
    ) -> None:
        self.reader = MaskReader(
            names=names, mode=mode, dtype=dtype, missing=missing, storage_options=storage_options
        )
        self.on_stale = check_on_stale(on_stale)
        self.painter: SchemePainter | None = None
        if scheme is not None:
            if names is not None:
                raise MaskValidationError("give names= or scheme=, not both")
            self.painter = SchemePainter(
                scheme, mode=mode, dtype=dtype, storage_options=storage_options, on_stale=on_stale
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
        array, meta = load_case(self.reader, self.painter, path, self.on_stale)
        like = self.like if like is None else like
        if like is not None:
            array, meta = place_like(array, meta, like)
        return to_metatensor(array, meta)


class LoadMaskd(MapTransform):
    """Dictionary wrapper of :class:`LoadMask`: replaces each path under ``keys`` by its masks.

    Takes the dicts of ``Catalog.datalist()`` (a :class:`medmask.catalog.ArchiveRef` under
    ``keys``), checked against the catalogue when loaded. With ``scheme``, each loaded
    key's ``label_available`` is stored under ``available_key`` too.

    Args:
        keys: Keys of the paths to load.
        names: See :class:`LoadMask`.
        mode: See :class:`LoadMask`.
        dtype: See :class:`LoadMask`.
        missing: See :class:`LoadMask`.
        allow_missing_keys: Skip keys absent from the dictionary instead of raising.
        storage_options: See :class:`LoadMask`.
        scheme: See :class:`LoadMask`.
        on_stale: See :class:`LoadMask`.
        available_key: With ``scheme``: the key of the availability vector (a bool
            array, one per class; with several ``keys``, ``f"{key}_available"``).
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
        scheme: Any = None,
        on_stale: str = "raise",
        available_key: str = "label_available",
        like: Hashable | None = None,
        check_grid: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadMask(
            names=names,
            mode=mode,
            dtype=dtype,
            missing=missing,
            storage_options=storage_options,
            scheme=scheme,
            on_stale=on_stale,
        )
        self.available_key = available_key
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
        several = len(self.keys) > 1
        for key in self.key_iterator(d):
            like = None if self.like is None else self._image(d)
            d[key] = self.loader(d[key], like=like)
            if self.loader.painter is not None:
                out = f"{key}_available" if several else self.available_key
                d[out] = d[key].meta["label_available"].copy()
            if like is None and self.check_grid:
                for other, value in d.items():
                    if other not in self.keys and hasattr(value, "affine"):
                        check_same_grid_as(d[key], value, str(key), str(other))
        return d
