"""RandCropByMaskIndex(d): MONAI crop samplers whose centres come from a ``.mska`` index.

``RandCropByPosNegLabeld`` and ``RandCropByLabelClassesd`` find foreground by scanning the
whole label map on every call (or by caching every index of every case, MONAI#6285). These
draw centres from the archive's index and one decoded mask instead, crop the image with
MONAI's own ``SpatialCrop`` (the same crops and metadata as those transforms give for the
same centres) and read each label crop from the archive by window: no label volume is
ever loaded. As in MONAI, the dictionary transform is a thin wrapper of the array one.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from copy import deepcopy
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, SpatialCrop
from monai.transforms.inverse import TraceableTransform
from monai.transforms.traits import MultiSampleTrait
from monai.transforms.utils import correct_crop_centers
from monai.utils import ImageMetaKey as Key
from monai.utils import fall_back_tuple
from monai.utils.enums import PostFix

from medmask import MaskArchive
from medmask.errors import MaskNotFoundError, MaskValidationError, close_matches
from medmask.geometry import affine_to_space
from medmask.patches import ByteLRU, CaseIndex, CentrePolicy, CentreSampler, PosNeg, archive_offset

from ._load import Names, label_dtype, mask_meta, resolve_names
from ._open import _OpenArchives

__all__ = ["RandCropByMaskIndex", "RandCropByMaskIndexd"]

PathLike = str | os.PathLike


def _spatial_xyz(img: Any) -> tuple[int, ...]:
    return tuple(
        int(s) for s in (img.peek_pending_shape() if isinstance(img, MetaTensor) else img.shape[1:])
    )


class RandCropByMaskIndex(Randomizable, TraceableTransform, MultiSampleTrait):
    """Crop ``num_samples`` patches of an image around centres drawn from a ``.mska`` index.

    ``__call__(img, archive)`` returns the image crops (MONAI ``SpatialCrop``, with
    ``crop_center`` and ``patch_index`` in their meta, as ``RandCropByPosNegLabel`` gives);
    :meth:`label_crops` then gives the label crops of the same centres, read from the
    archive by window (``(1, x, y, z)`` label map or ``(K, x, y, z)`` channels, ``LoadMask``'s
    semantics, the crop's affine). Centres follow MONAI's rule: drawn on a voxel (see
    ``policy``), then moved inward so that the patch fits the image
    (``correct_crop_centers``).

    The image is any MONAI-loaded channel-first array ``(C, x, y, z)``; a ``MetaTensor``'s
    affine is checked against the archive's grid (one voxel lattice, an integer offset
    allowed: a mismatch raises ``SpaceMismatchError`` naming both grids). A plain array
    must have the archive's shape. Transforms that change the grid (``Orientationd``,
    ``Spacingd``) belong after this one.

    Args:
        spatial_size: The patch ``(x, y, z)`` (MONAI's order; ``-1`` takes the image's).
        names: Which masks and labels (``None``, a list, or ``{name: label}``; as ``LoadMask``).
        mode: ``"labelmap"`` or ``"channels"``.
        policy: What centres are drawn from (default ``PosNeg(1, 1)``, MONAI's default).
        num_samples: Crops per call.
        foreground: ``"exact"`` or ``"coords"`` (see :class:`medmask.patches.CentreSampler`).
        allow_smaller: As MONAI: allow an image smaller than the patch.
        cache_bytes: Per-process budget of decoded mask rows.
        storage_options: fsspec options for archives at URLs.
    """

    def __init__(
        self,
        spatial_size: Sequence[int] | int,
        names: Names = None,
        mode: str = "labelmap",
        policy: CentrePolicy | None = None,
        num_samples: int = 1,
        foreground: str = "exact",
        allow_smaller: bool = False,
        cache_bytes: int = 64 << 20,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        if mode not in ("labelmap", "channels"):
            raise MaskValidationError(f"mode must be 'labelmap' or 'channels', got {mode!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise MaskValidationError(f"num_samples must be >= 1, got {num_samples!r}")
        self.spatial_size = spatial_size
        self.names, self.mode = resolve_names(names), mode
        self.num_samples, self.allow_smaller = num_samples, allow_smaller
        self.sampler = CentreSampler(
            PosNeg(1, 1) if policy is None else policy,
            foreground=foreground,
            cache_bytes=cache_bytes,
        )
        self.storage_options = None if storage_options is None else dict(storage_options)
        self.centers: tuple[tuple[int, ...], ...] | None = None
        self._pool: _OpenArchives | None = None
        self._indexes = ByteLRU(8 << 20)
        self._last: tuple[MaskArchive, CaseIndex, tuple[int, int, int], dict] | None = None

    # -- the archive and its facts, per process ------------------------------------------
    def _open(self, archive: PathLike | MaskArchive) -> MaskArchive:
        if isinstance(archive, MaskArchive):
            return archive
        pool = self._pool
        if pool is None or pool.pid != os.getpid():
            pool = self._pool = _OpenArchives(16, self.storage_options)
        # a catalogue's ArchiveRef is checked against its row when first opened here
        return pool.get(str(archive), archive)

    def _facts(self, ar: MaskArchive, img: Any) -> tuple[CaseIndex, tuple[int, int, int], dict]:
        key = (str(ar.path), ar.generation)
        got = self._indexes.get(key)
        if got is None:
            index = CaseIndex.of(ar, None if self.names is None else list(self.names))
            if self.names is None:
                labels = {n: k for k, n in enumerate(ar.all_names(), start=1)}
            else:
                missing = [n for n in self.names if n not in ar]
                if missing:
                    raise MaskNotFoundError(
                        f"no mask named {missing[0]!r} ({len(ar)} masks)"
                        + close_matches(missing[0], ar.all_names()),
                        path=ar.path,
                    )
                labels = dict(self.names)
            got = (index, labels)
            self._indexes.put(key, got, 200 * (len(index.masks) + 1))
        index, labels = got
        shape_xyz = _spatial_xyz(img)
        space = None
        if isinstance(img, MetaTensor):
            space = affine_to_space(np.asarray(img.affine, dtype=np.float64), shape_xyz)
        offset = archive_offset(
            ar.space,
            shape_xyz[::-1],
            space,
            archive_name=str(ar.path),
            image_name=str(getattr(img, "meta", {}).get("filename_or_obj", "the image")),
        )
        return index, offset, labels

    # -- MONAI's interface ---------------------------------------------------------------
    def randomize(self, archive: PathLike | MaskArchive, img: Any) -> None:  # type: ignore[override]
        """Draw :attr:`centers` (``(x, y, z)``, MONAI's order) for ``img`` from ``archive``."""
        ar = self._open(archive)
        index, offset, labels = self._facts(ar, img)
        shape_xyz = _spatial_xyz(img)
        rng = np.random.default_rng(self.R.randint(0, 2**31, size=4))
        annotated = ar.annotated  # partial labels: centres on annotated masks only
        allowed = None if annotated is None else frozenset(annotated)
        centres = []
        for _ in range(self.num_samples):
            c = self.sampler.draw(
                ar, index, rng, grid_shape=shape_xyz[::-1], offset=offset, allowed=allowed
            )
            centres.append(
                correct_crop_centers(
                    list(c.zyx[::-1]), self.spatial_size, shape_xyz, self.allow_smaller
                )
            )
        self.centers = tuple(tuple(int(v) for v in c) for c in centres)
        self._last = (ar, index, offset, labels)

    def __call__(  # type: ignore[override]
        self, img: Any, archive: PathLike | MaskArchive | None = None, randomize: bool = True
    ) -> list[Any]:
        """The image crops (``num_samples`` of them); ``randomize=False`` reuses the centres.

        Raises:
            MaskValidationError: ``randomize`` without an archive.
            SpaceMismatchError: The image is not on the archive's grid.
        """
        if randomize:
            if archive is None:
                raise MaskValidationError("RandCropByMaskIndex needs the archive to draw centres")
            self.randomize(archive, img)
        roi = fall_back_tuple(self.spatial_size, default=_spatial_xyz(img))
        out = []
        for i, centre in enumerate(self.centers or ()):
            cropped = SpatialCrop(roi_center=centre, roi_size=roi)(img)
            if isinstance(cropped, MetaTensor):
                cropped.meta[Key.PATCH_INDEX] = i
                cropped.meta["crop_center"] = centre
                self.push_transform(cropped, replace=True)
            out.append(cropped)
        return out

    def label_crops(self, img: Any) -> list[MetaTensor]:
        """The label crops at the last drawn centres, read from the archive by window.

        Args:
            img: The image the centres were drawn for (its shape and affine place the crops).

        Returns:
            One ``MetaTensor`` ``(1 or K, x, y, z)`` per centre, with the crop's affine.
        """
        if self._last is None or self.centers is None:
            raise MaskValidationError("no centres drawn yet: call the transform first")
        ar, _, (dz, dy, dx), labels = self._last
        shape = _spatial_xyz(img)
        roi = fall_back_tuple(self.spatial_size, default=shape)
        present = {n: v for n, v in labels.items() if n in ar}
        top = max(labels.values(), default=1)
        out = []
        for i, centre in enumerate(self.centers):
            sl = SpatialCrop.compute_slices(roi_center=centre, roi_size=roi)
            (x0, x1), (y0, y1), (z0, z1) = ((s.start, min(s.stop, n)) for s, n in zip(sl, shape))
            window = ((z0 - dz, z1 - dz), (y0 - dy, y1 - dy), (x0 - dx, x1 - dx))
            data = self._window(ar, window, present, top)
            affine = _crop_affine(img, (x0, y0, z0))
            meta = mask_meta(ar.path, ar.space, labels, self.mode)
            meta.pop("affine")
            meta.update(
                {
                    Key.PATCH_INDEX: i,
                    "crop_center": centre,
                    "spatial_shape": np.array(data.shape[1:]),
                }
            )
            out.append(MetaTensor(torch.from_numpy(data), affine=affine, meta=meta))
        return out

    def _window(self, ar: MaskArchive, window: tuple, present: dict, top: int) -> np.ndarray:
        """``(C, x, y, z)`` labels of a ``(z, y, x)`` archive window."""
        if self.mode == "labelmap":
            lab = np.asarray(ar.read_window(window, names=present, as_="label_map"))
            return np.ascontiguousarray(lab.astype(label_dtype(top), copy=False).T[None])
        levels = sorted(set((self.names or present).values()))
        shape = tuple(b - a for a, b in window)
        chans = np.zeros((len(levels), *shape), np.uint8)
        if present:
            stack = ar.read_window(window, names=list(present), as_="stack")
            for name, plane in zip(present, stack):
                np.copyto(chans[levels.index(present[name])], np.uint8(1), where=plane != 0)
        return np.ascontiguousarray(chans.transpose(0, 3, 2, 1))


def _crop_affine(img: Any, start_xyz: tuple[int, int, int]) -> torch.Tensor:
    """The affine of a crop starting at voxel ``start_xyz`` of ``img`` (identity without one)."""
    if not isinstance(img, MetaTensor):
        return torch.eye(4, dtype=torch.float64)
    affine = img.affine.clone().to(torch.float64)
    affine[:3, 3] = affine[:3, 3] + affine[:3, :3] @ torch.tensor(start_xyz, dtype=torch.float64)
    return affine


class RandCropByMaskIndexd(Randomizable, MapTransform, MultiSampleTrait):
    """Dictionary version of :class:`RandCropByMaskIndex`: crops ``keys`` around centres drawn
    from the archive at ``archive_key``; ``label_key`` (default ``archive_key``) receives the
    label crops. Returns ``num_samples`` dicts, as ``RandCropByPosNegLabeld``.

    Args:
        keys: Image keys to crop (channel-first, MONAI-loaded; the first one places centres).
        archive_key: The key holding the ``.mska`` path (or an open ``MaskArchive``).
        spatial_size: The patch ``(x, y, z)``.
        names: Which masks and labels (as ``LoadMask``).
        mode: ``"labelmap"`` or ``"channels"``.
        label_key: Where the label crops go (default: ``archive_key``).
        policy: What centres are drawn from (default ``PosNeg(1, 1)``).
        num_samples: Crops per item.
        foreground: ``"exact"`` or ``"coords"``.
        allow_smaller: As MONAI.
        allow_missing_keys: As MONAI.
        cache_bytes: Per-process budget of decoded mask rows.
        storage_options: fsspec options for archives at URLs.

    Example:
        >>> crop = RandCropByMaskIndexd("image", "label", (96, 96, 96), num_samples=2)  # doctest: +SKIP
        >>> patches = crop(LoadImaged("image")({"image": "ct.nii", "label": "ct.mska"}))  # doctest: +SKIP
    """

    def __init__(
        self,
        keys: KeysCollection,
        archive_key: str,
        spatial_size: Sequence[int] | int,
        names: Names = None,
        mode: str = "labelmap",
        label_key: str | None = None,
        policy: CentrePolicy | None = None,
        num_samples: int = 1,
        foreground: str = "exact",
        allow_smaller: bool = False,
        allow_missing_keys: bool = False,
        cache_bytes: int = 64 << 20,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.archive_key = archive_key
        self.label_key = archive_key if label_key is None else label_key
        self.cropper = RandCropByMaskIndex(
            spatial_size,
            names=names,
            mode=mode,
            policy=policy,
            num_samples=num_samples,
            foreground=foreground,
            allow_smaller=allow_smaller,
            cache_bytes=cache_bytes,
            storage_options=storage_options,
        )

    def set_random_state(
        self, seed: int | None = None, state: np.random.RandomState | None = None
    ) -> RandCropByMaskIndexd:
        super().set_random_state(seed, state)
        self.cropper.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        pass  # the cropper draws (from the archive), in __call__

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            raise MaskValidationError(f"none of the keys {self.keys} is in the data")
        self.cropper.randomize(d[self.archive_key], d[keys[0]])
        n = self.cropper.num_samples
        ret: list[dict] = [dict(d) for _ in range(n)]
        for i in range(n):
            for key in set(d) - set(keys) - {self.archive_key}:
                ret[i][key] = deepcopy(d[key])
        for key in keys:
            for i, im in enumerate(self.cropper(d[key], randomize=False)):
                ret[i][key] = im
        for i, lab in enumerate(self.cropper.label_crops(d[keys[0]])):
            if self.label_key != self.archive_key:
                ret[i][self.archive_key] = d[self.archive_key]
            ret[i][self.label_key] = lab
            ret[i].pop(PostFix.meta(self.label_key), None)
        return ret
