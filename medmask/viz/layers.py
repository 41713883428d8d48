"""The masks to draw (layers: bounding-box crops, colours, volumes) and the 2-D panels
composed from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..bbox import BBox, box_voxels, crop_to_bbox
from .colors import BACKGROUND, _View, mask_colors

if TYPE_CHECKING:  # pragma: no cover
    from ..segmask import SegmentationMask
    from ..spaces import Space
    from ..storage import MaskArchive


# -- the masks to draw ----------------------------------------------------------------------------
@dataclass
class _Layer:
    name: str
    crop: np.ndarray | None  # bool, the bounding-box region (None: not decoded, box only)
    bbox: BBox | None
    color: tuple[int, int, int]
    voxels: int
    volume_ml: float


def _crop_of(mask: np.ndarray) -> tuple[np.ndarray | None, BBox | None]:
    crop, box = crop_to_bbox(mask)
    return (None, None) if box is None else (crop, box)


def _voxel_ml(space: Space) -> float:
    return float(abs(np.prod(np.asarray(space.spacing, dtype=np.float64)))) / 1000.0


def _segmask_layers(seg: SegmentationMask) -> tuple[list[_Layer], Space]:
    data = np.asarray(seg.data)
    items = list(seg.mapping.items()) if len(seg.mapping) else [("mask", 1)]
    colors = mask_colors([n for n, _ in items])
    vml = _voxel_ml(seg.space)
    layers = []
    for name, label in items:
        m = data if data.dtype == np.bool_ else data == label
        crop, box = _crop_of(m)
        vox = 0 if crop is None else int(np.count_nonzero(crop))
        layers.append(_Layer(name, crop, box, colors[name], vox, vox * vml))
    return layers, seg.space


def _archive_layers(
    ar: MaskArchive, names: Sequence[str] | None, *, budget: int | None = None
) -> tuple[list[_Layer], list[str]]:
    """Layers of the selected masks (all when ``names`` is None); empty masks are returned
    by name only. With ``budget``, masks are decoded smallest box first until the box
    voxels exceed it; the others keep their box only (``crop is None``)."""
    infos = ar.infos()
    colors = _colors_of(infos)  # of the whole archive: a mask keeps its colour in any selection
    if names is not None:
        by_name = {i.name: i for i in infos}
        chosen = []
        for n in names:
            if n not in by_name:
                ar.info(n)  # raises MaskNotFoundError with close matches
            chosen.append(by_name[n])
        infos = chosen
    vml = _voxel_ml(ar.space)
    layers, empty = [], []
    order = sorted(infos, key=lambda i: box_voxels(i.bbox) if i.bbox else 0)
    spent = 0
    for info in order:
        if info.voxels == 0:
            empty.append(info.name)
            continue
        crop, box = None, info.bbox
        if budget is None or box is None or spent + box_voxels(box) <= budget:
            raw, box = ar.read_cropped(info.index)
            if box is None:
                empty.append(info.name)
                continue
            crop = raw if raw.dtype == np.bool_ else raw != 0
            spent += crop.size
        vox = int(np.count_nonzero(crop)) if info.voxels is None else int(info.voxels)
        layers.append(_Layer(info.name, crop, box, colors[info.name], vox, vox * vml))
    rank = {i.name: k for k, i in enumerate(infos)}
    layers.sort(key=lambda lay: rank[lay.name])
    return layers, [n for n in (i.name for i in infos) if n in set(empty)]


def _colors_of(infos: Sequence[Any]) -> dict[str, tuple[int, int, int]]:
    """Colours of an archive's masks; palette colours go to the non-empty masks first so
    that the drawn ones differ (empty masks are never drawn)."""
    order = sorted(infos, key=lambda i: i.voxels == 0)
    return mask_colors([i.name for i in order], [getattr(i, "attrs", None) for i in order])


def _file_name(path: object) -> str:
    """The last part of a path or URL, for titles."""
    return str(path).rstrip("/").rsplit("/", 1)[-1]


# -- 2-D panels ---------------------------------------------------------------------------------
def _plane_of(arr3: np.ndarray, view: _View, idx: int | None) -> np.ndarray:
    """The (v, h) plane of a 3-D array: a slice at ``idx`` across ``view.normal``, or the
    maximum along it when ``idx`` is None."""
    arr2 = arr3.max(axis=view.normal) if idx is None else np.take(arr3, idx, axis=view.normal)
    rest = [a for a in range(3) if a != view.normal]
    return arr2 if rest == [view.v, view.h] else arr2.T


def _layer_region(
    layer: _Layer, view: _View, idx: int | None
) -> tuple[slice, slice, np.ndarray] | None:
    """Where the layer shows in the (v, h) plane (unflipped): ``(rows, cols, bool mask of
    that box)``, or ``None`` when it does not show (work proportional to its box)."""
    box = layer.bbox
    if box is None:
        return None
    lo, hi = box[2 * view.normal], box[2 * view.normal + 1]
    if idx is not None and not lo <= idx < hi:
        return None
    sv = slice(box[2 * view.v], box[2 * view.v + 1])
    sh = slice(box[2 * view.h], box[2 * view.h + 1])
    if layer.crop is None:  # box only: its outline
        region = np.zeros((sv.stop - sv.start, sh.stop - sh.start), bool)
        region[[0, -1], :] = True
        region[:, [0, -1]] = True
    else:
        region = _plane_of(layer.crop, view, None if idx is None else idx - lo)
    return (sv, sh, region) if region.any() else None


def _densest(layers: Sequence[_Layer], shape: Sequence[int]) -> list[int]:
    """For each array axis, the index of the plane holding most mask voxels."""
    out = []
    for a in range(3):
        counts = np.zeros(int(shape[a]), np.int64)
        for lay in layers:
            if lay.crop is None or lay.bbox is None:
                continue
            other = tuple(k for k in range(3) if k != a)
            counts[lay.bbox[2 * a] : lay.bbox[2 * a + 1]] += np.count_nonzero(lay.crop, axis=other)
        out.append(int(np.argmax(counts)) if counts.any() else int(shape[a]) // 2)
    return out


def _compose(
    layers: Sequence[_Layer],
    view: _View,
    idx: int | None,
    shape: Sequence[int],
    base: np.ndarray | None,
    alpha: float,
) -> tuple[np.ndarray, set[str]]:
    """The RGB (0-1 float) panel, flipped for display, and the names of the masks it shows."""
    n_v, n_h = int(shape[view.v]), int(shape[view.h])
    if base is None:
        rgb = np.empty((n_v, n_h, 3), np.float32)
        rgb[:] = np.asarray(BACKGROUND, np.float32) / 255
    else:
        rgb = np.repeat(base[..., None], 3, axis=2).astype(np.float32)
    shown = set()
    for lay in sorted(layers, key=lambda lay: -lay.voxels):  # small masks on top
        found = _layer_region(lay, view, idx)
        if found is None:
            continue
        sv, sh, m = found
        shown.add(lay.name)
        c = np.asarray(lay.color, np.float32) / 255
        part = rgb[sv, sh]  # a view: painting it paints the panel
        part[m] = alpha * c + (1 - alpha) * part[m]
    if view.flip_v:
        rgb = rgb[::-1]
    if view.flip_h:
        rgb = rgb[:, ::-1]
    return np.ascontiguousarray(rgb), shown
