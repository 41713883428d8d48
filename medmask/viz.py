"""Pictures of masks: three orthogonal views, notebook thumbnails and tables.

* :func:`render` draws the masks of an archive (or a mask) in three orthogonal panels
  (slices through the planes holding most mask voxels, or maximum intensity projections),
  each mask in its own colour (its stored ``color`` attribute first, a fixed palette
  otherwise), with a legend of names and volumes and the panels' sides labelled with patient
  directions (R/L, A/P, S/I, from the grid's orientation). Optionally over an image
  (``image="ct.nii.gz"``, same grid). Needs matplotlib (the ``stats`` extra); it uses the
  Agg renderer and never touches pyplot's global state.
* :func:`segmask_png` (``SegmentationMask._repr_png_``) and :func:`archive_html`
  (``MaskArchive._repr_html_``) are for notebooks. They need neither matplotlib nor pandas:
  the PNG is encoded here (zlib). ``archive_html`` reads the index only and makes one small
  thumbnail from the masks' bounding-box regions, within a voxel budget (beyond it, masks are
  drawn as their boxes).

Panels follow the radiological convention: the patient's right on the picture's left,
anterior (axial) or superior (coronal, sagittal) at the top, anterior on the left in the
sagittal view. For an oblique grid each array axis is named after the patient direction it
is closest to; the panels are the grid's own planes, not resampled.
"""

from __future__ import annotations

import base64
import html
import itertools
import math
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import MaskNotFoundError, MaskValidationError, SpaceMismatchError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from .segmask import SegmentationMask
    from .spaces import Space
    from .storage import MaskArchive

__all__ = [
    "PALETTE",
    "render",
    "save_png",
    "segmask_png",
    "archive_html",
    "mask_colors",
    "patient_axes",
    "png_bytes",
]

#: The fixed palette (RGB 0-255) for masks without a stored colour, in order of use.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 250, 200),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
    (255, 105, 180),
    (100, 149, 237),
    (154, 205, 50),
    (255, 160, 122),
    (72, 61, 139),
    (0, 206, 209),
    (199, 21, 133),
    (189, 183, 107),
    (95, 158, 160),
    (210, 105, 30),
)
#: Background of the panels where no image is drawn (RGB 0-255).
BACKGROUND = (24, 24, 24)
_PLANES = ("axial", "coronal", "sagittal")
_LEGEND_MAX = 60  # legend entries of drawn masks (the largest; the rest are counted)
_POS, _NEG = "LPS", "RAI"  # medmask spaces are LPS: +x is patient left, +y posterior, +z superior


# -- colours and orientation ---------------------------------------------------------------------
def mask_colors(
    names: Sequence[str], attrs: Sequence[dict | None] | None = None
) -> dict[str, tuple[int, int, int]]:
    """The colour of each mask: its stored ``color`` attribute, else the next palette colour.

    Args:
        names: Mask names, in drawing order.
        attrs: Each mask's stored attributes (or ``None``), aligned with ``names``.

    Returns:
        ``{name: (r, g, b)}`` with 0-255 integers.
    """
    out: dict[str, tuple[int, int, int]] = {}
    k = 0
    for i, name in enumerate(names):
        a = attrs[i] if attrs is not None and i < len(attrs) else None
        color = (a or {}).get("color")
        if isinstance(color, list | tuple) and len(color) == 3:
            out[name] = tuple(int(c) for c in color)
        else:
            out[name] = PALETTE[k % len(PALETTE)]
            k += 1
    return out


def patient_axes(space: Space) -> list[tuple[str, str]]:
    """The patient directions of the array axes ``(z, y, x)`` of a medmask space.

    Returns:
        For each array axis, ``(letter at index 0, letter at the last index)``, e.g.
        ``("I", "S")`` for an axis running from inferior to superior. Oblique axes get the
        direction they are closest to (each direction used once).
    """
    xyz = space.reverse_axis_order()
    vecs = [
        np.asarray(v, dtype=np.float64)
        for v in (xyz.z_orientation, xyz.y_orientation, xyz.x_orientation)
    ]
    mat = np.abs(np.stack(vecs))  # row: array axis, column: L, P, S component
    best = max(itertools.permutations(range(3)), key=lambda p: sum(mat[a, p[a]] for a in range(3)))
    out = []
    for a in range(3):
        k = best[a]
        plus = vecs[a][k] >= 0
        out.append((_NEG[k], _POS[k]) if plus else (_POS[k], _NEG[k]))
    return out


@dataclass(frozen=True)
class _View:
    plane: str
    normal: int  # the array axis the panel cuts across
    h: int  # array axis drawn left to right
    v: int  # array axis drawn top to bottom
    flip_h: bool
    flip_v: bool
    left: str
    right: str
    top: str
    bottom: str
    sp_h: float
    sp_v: float


def _views(space: Space) -> list[_View]:
    dirs = patient_axes(space)
    kind = {}
    for a, (_lo, hi) in enumerate(dirs):
        kind[{"L": "lr", "R": "lr", "A": "ap", "P": "ap", "S": "si", "I": "si"}[hi]] = a
    sp = [float(s) for s in space.spacing]
    # plane: (normal, horizontal axis and its right-hand letter, vertical axis and its bottom)
    layout = {
        "axial": ("si", ("lr", "L"), ("ap", "P")),
        "coronal": ("ap", ("lr", "L"), ("si", "I")),
        "sagittal": ("lr", ("ap", "P"), ("si", "I")),
    }
    out = []
    for plane in _PLANES:
        n, (hk, right), (vk, bottom) = layout[plane]
        h, v = kind[hk], kind[vk]
        flip_h = dirs[h][1] != right
        flip_v = dirs[v][1] != bottom
        lo_h, hi_h = dirs[h][::-1] if flip_h else dirs[h]
        lo_v, hi_v = dirs[v][::-1] if flip_v else dirs[v]
        out.append(
            _View(plane, kind[n], h, v, flip_h, flip_v, lo_h, hi_h, lo_v, hi_v, sp[h], sp[v])
        )
    return out


# -- the masks to draw ----------------------------------------------------------------------------
@dataclass
class _Layer:
    name: str
    crop: np.ndarray | None  # bool, the bounding-box region (None: not decoded, box only)
    bbox: tuple[int, int, int, int, int, int] | None
    color: tuple[int, int, int]
    voxels: int
    volume_ml: float


def _crop_of(mask: np.ndarray) -> tuple[np.ndarray | None, tuple | None]:
    nz = [np.flatnonzero(mask.any(axis=tuple(k for k in range(3) if k != a))) for a in range(3)]
    if nz[0].size == 0:
        return None, None
    box = (
        int(nz[0][0]),
        int(nz[0][-1]) + 1,
        int(nz[1][0]),
        int(nz[1][-1]) + 1,
        int(nz[2][0]),
        int(nz[2][-1]) + 1,
    )
    return np.ascontiguousarray(mask[box[0] : box[1], box[2] : box[3], box[4] : box[5]]), box


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
    infos_fn = getattr(ar, "infos", None)
    infos = list(infos_fn()) if callable(infos_fn) else [ar.info(i) for i in range(len(ar))]
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
    order = sorted(infos, key=lambda i: _box_volume(i.bbox) if i.bbox else 0)
    spent = 0
    for info in order:
        if info.voxels == 0:
            empty.append(info.name)
            continue
        crop, box = None, info.bbox
        if budget is None or box is None or spent + _box_volume(box) <= budget:
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


def _box_volume(box: Sequence[int]) -> int:
    return (box[1] - box[0]) * (box[3] - box[2]) * (box[5] - box[4])


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


# -- images -------------------------------------------------------------------------------------
def _load_image(image: str | os.PathLike | np.ndarray, space: Space) -> np.ndarray:
    """A (z, y, x) float image on the archive's grid."""
    if isinstance(image, np.ndarray):
        arr = np.asarray(image, dtype=np.float32)
        if arr.shape != tuple(int(s) for s in space.shape):
            raise SpaceMismatchError(
                f"image shape {arr.shape} differs from the masks' (z, y, x) shape "
                f"{tuple(int(s) for s in space.shape)}"
            )
        return arr
    from .geometry import affine_to_space, effective_affine
    from .spaces import describe_space, spaces_match

    try:
        import nibabel as nib
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("--image needs nibabel: pip install 'medmask[nifti]'") from None
    path = Path(image)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types
        raise MaskValidationError(f"{path}: not a readable NIfTI image ({exc})") from None
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise MaskValidationError(f"{path}: a 3-D image is needed, this one has shape {data.shape}")
    img_space = affine_to_space(effective_affine(img), data.shape)
    if not spaces_match(img_space, space, atol=1e-2):
        raise SpaceMismatchError(
            f"{path}: the image's grid {describe_space(img_space)} is not the masks' grid "
            f"{describe_space(space)}; draw masks over the image they were made on"
        )
    return np.asarray(data, dtype=np.float32).transpose(2, 1, 0)


def _windowed(arr: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    if window is None:
        finite = arr[np.isfinite(arr)]
        if finite.size == 0:
            return np.zeros_like(arr)
        if float(finite.min()) < -500:  # Hounsfield units: a soft-tissue window
            window = (-160.0, 240.0)
        else:
            window = tuple(float(v) for v in np.percentile(finite, (1, 99)))
    lo, hi = float(window[0]), float(window[1])
    if not hi > lo:
        hi = lo + 1.0
    return np.clip((arr - lo) / (hi - lo), 0, 1)


# -- matplotlib figure -------------------------------------------------------------------------
def _source_layers(
    source: Any, names: Sequence[str] | None
) -> tuple[list[_Layer], list[str], Space, str]:
    from .segmask import SegmentationMask
    from .storage import MaskArchive

    if isinstance(source, SegmentationMask):
        layers, space = _segmask_layers(source)
        if names is not None:
            known = {lay.name for lay in layers}
            missing = [n for n in names if n not in known]
            if missing:
                raise MaskNotFoundError(
                    f"no label named {missing[0]!r} in the mask ({sorted(known)})"
                )
            layers = [lay for lay in layers if lay.name in set(names)]
        empty = [lay.name for lay in layers if lay.crop is None]
        return [lay for lay in layers if lay.crop is not None], empty, space, "mask"
    if isinstance(source, MaskArchive):
        layers, empty = _archive_layers(source, names)
        return layers, empty, source.space, _file_name(source.path)
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"MSKA":
        with MaskArchive(path) as ar:
            if ar.space is None:
                raise MaskValidationError(f"{path}: the archive holds no mask")
            layers, empty = _archive_layers(ar, names)
            return layers, empty, ar.space, path.name
    from .storage import load_mask

    layers, empty, space, _ = _source_layers(load_mask(path), names)
    return layers, empty, space, path.name


def render(
    source: Any,
    names: Sequence[str] | None = None,
    *,
    mip: bool = False,
    image: str | os.PathLike | np.ndarray | None = None,
    window: tuple[float, float] | None = None,
    title: str | None = None,
    width: float = 13.0,
    dpi: int = 100,
    pyplot: bool = False,
) -> Figure:
    """Three orthogonal panels (axial, coronal, sagittal) of the selected masks.

    Slices go through the planes that hold most voxels of the selected masks; with ``mip``
    each panel is a maximum intensity projection instead. Each mask has its own colour
    (stored ``color`` attribute first, :data:`PALETTE` otherwise); the legend gives names
    and volumes in mL (masks absent from the slices are marked so, empty masks listed).

    Args:
        source: A ``.mska``/``.msk`` path, a :class:`~medmask.MaskArchive` or a
            :class:`~medmask.SegmentationMask` (one layer per label).
        names: The masks to draw (default: every mask).
        mip: Maximum intensity projections instead of slices.
        image: An image on the same grid to draw the masks over (a NIfTI path, or a
            ``(z, y, x)`` array); masks are then half transparent.
        window: ``(low, high)`` grey window of the image (default: a soft-tissue window for
            CT in Hounsfield units, else the 1st-99th percentiles).
        title: The figure's title (default: the file name and what is shown).
        width: Figure width in inches.
        dpi: Resolution.
        pyplot: Make the figure through ``matplotlib.pyplot`` (so that ``plt.show()``
            opens it in a window) instead of a stand-alone Agg figure.

    Returns:
        A :class:`matplotlib.figure.Figure` (Agg canvas; ``fig.savefig("x.png")``).

    Raises:
        MaskNotFoundError: A name that is not stored (close matches suggested).
        SpaceMismatchError: ``image`` is not on the masks' grid.
        MaskValidationError: An unreadable image, an archive without masks.
        ImportError: matplotlib is not installed.
    """
    try:
        from matplotlib import patheffects
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("pictures need matplotlib: pip install 'medmask[stats]'") from None

    layers, empty, space, label = _source_layers(source, names)
    shape = tuple(int(s) for s in space.shape)
    views = _views(space)
    base3 = None if image is None else _windowed(_load_image(image, space), window)
    alpha = 1.0 if base3 is None else 0.5
    idx = [None] * 3 if mip else _densest(layers, shape)

    panels = []
    shown: set[str] = set()
    for view in views:
        at = idx[view.normal]
        base = None if base3 is None else _plane_of(base3, view, at)
        rgb, seen = _compose(layers, view, at, shape, base, alpha)
        shown |= seen
        panels.append((view, at, rgb))

    handles = []
    listed = layers
    if len(layers) > _LEGEND_MAX:  # the largest ones; the rest are counted
        keep = {lay.name for lay in sorted(layers, key=lambda lay: -lay.voxels)[: _LEGEND_MAX - 1]}
        listed = [lay for lay in layers if lay.name in keep]
    for lay in listed:
        note = "" if lay.name in shown else ", not in these slices"
        ml = f"{lay.volume_ml:,.1f}" if lay.volume_ml >= 1 else f"{lay.volume_ml:.2g}"
        handles.append(
            Patch(
                facecolor=np.asarray(lay.color) / 255,
                edgecolor="none",
                label=f"{lay.name} ({ml} mL{note})",
            )
        )
    if len(listed) < len(layers):
        handles.append(
            Patch(facecolor="0.6", edgecolor="none", label=f"+ {len(layers) - len(listed)} more")
        )
    if names is not None or len(empty) <= 3:
        for name in empty:
            handles.append(Patch(facecolor="none", edgecolor="0.5", label=f"{name} (empty)"))
    else:  # a whole dataset's worth of absent organs would drown the legend
        handles.append(
            Patch(facecolor="none", edgecolor="0.5", label=f"+ {len(empty)} empty masks")
        )
    n = len(handles)
    font = 9 if n <= 20 else (7 if n <= 50 else 5)
    ncol = 1 if n <= 30 else 2

    # panels share one scale (mm per inch), side by side; the legend takes the rest
    sizes = [(rgb.shape[1] * v.sp_h, rgb.shape[0] * v.sp_v) for v, _, rgb in panels]
    total_w = sum(w for w, _ in sizes)
    scale = width * 0.70 / total_w  # inches per mm
    panel_h = max(h for _, h in sizes) * scale
    legend_h = math.ceil(n / ncol) * font / 72 * 1.7 + 0.4
    height = max(panel_h + 0.9, legend_h, 2.0)
    if pyplot:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(width, height), dpi=dpi)
    else:
        fig = Figure(figsize=(width, height), dpi=dpi)
        FigureCanvasAgg(fig)
    grid = fig.add_gridspec(
        1,
        4,
        width_ratios=[w for w, _ in sizes] + [total_w * 0.28 / 0.70],
        wspace=0.04,
        left=0.01,
        right=0.99,
        bottom=0.03,
        top=1 - 0.75 / height,
    )
    outline = [patheffects.withStroke(linewidth=2, foreground="black")]
    for k, (view, at, rgb) in enumerate(panels):
        ax = fig.add_subplot(grid[0, k])
        n_v, n_h = rgb.shape[:2]
        ax.imshow(rgb, extent=(0, n_h * view.sp_h, n_v * view.sp_v, 0), interpolation="nearest")
        axis_name = "zyx"[view.normal]
        where = "MIP" if at is None else f"{axis_name} = {at}"
        ax.set_title(f"{view.plane} ({where})", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        for x, y, text, ha, va in (
            (0.02, 0.5, view.left, "left", "center"),
            (0.98, 0.5, view.right, "right", "center"),
            (0.5, 0.98, view.top, "center", "top"),
            (0.5, 0.02, view.bottom, "center", "bottom"),
        ):
            ax.text(
                x,
                y,
                text,
                transform=ax.transAxes,
                ha=ha,
                va=va,
                color="white",
                fontsize=9,
                fontweight="bold",
                path_effects=outline,
            )
    lax = fig.add_subplot(grid[0, 3])
    lax.axis("off")
    if handles:
        lax.legend(
            handles=handles,
            loc="center left",
            frameon=False,
            fontsize=font,
            ncol=ncol,
            handlelength=1.2,
        )
    else:
        lax.text(0, 0.5, "no mask selected", fontsize=9)
    what = "maximum intensity projections" if mip else "slices through the densest planes"
    fig.suptitle(title or f"{label}: {len(layers)} masks, {what}", fontsize=11, y=1 - 0.1 / height)
    return fig


def save_png(
    source: Any, out: str | os.PathLike, names: Sequence[str] | None = None, **kwargs: Any
) -> Path:
    """:func:`render` and write the picture as PNG.

    Args:
        source: As for :func:`render`.
        out: The ``.png`` to write (the name must end in ``.png``).
        names: As for :func:`render`.
        **kwargs: Passed to :func:`render`.

    Returns:
        The path written.

    Raises:
        MaskValidationError: ``out`` is not named ``*.png``; as :func:`render` otherwise.
    """
    from .io.names import expect_name

    expect_name(out, "png", what="picture")
    fig = render(source, names, **kwargs)
    fig.savefig(os.fspath(out), format="png", facecolor="white")
    return Path(out)


# -- PNG without matplotlib -----------------------------------------------------------------------
def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an ``(h, w, 3)`` uint8 RGB array as PNG.

    Raises:
        MaskValidationError: Not an ``(h, w, 3)`` array with ``h, w >= 1``.
    """
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise MaskValidationError(f"png_bytes needs an (h, w, 3) array, got shape {a.shape}")
    a = np.ascontiguousarray(a, dtype=np.uint8)
    h, w = a.shape[:2]
    raw = np.zeros((h, 1 + 3 * w), np.uint8)  # filter byte 0 on every row
    raw[:, 1:] = a.reshape(h, 3 * w)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def _resized(rgb: np.ndarray, height_mm: float, width_mm: float, px_per_mm: float) -> np.ndarray:
    """Nearest-neighbour resampling of a panel to its physical aspect."""
    h = max(1, int(round(height_mm * px_per_mm)))
    w = max(1, int(round(width_mm * px_per_mm)))
    rows = np.minimum((np.arange(h) + 0.5) * rgb.shape[0] / h, rgb.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(w) + 0.5) * rgb.shape[1] / w, rgb.shape[1] - 1).astype(int)
    return rgb[rows][:, cols]


def _strip(panels: list[tuple[np.ndarray, _View]], size: int, gap: int = 4) -> np.ndarray:
    """Panels side by side, physically scaled so that the longer side is ``size`` pixels."""
    dims = [(p.shape[0] * v.sp_v, p.shape[1] * v.sp_h) for p, v in panels]
    total_w = sum(w for _, w in dims)
    max_h = max(h for h, _ in dims)
    avail = max(1, size - gap * (len(panels) - 1))
    scale = min(avail / total_w, size / max_h)
    imgs = [_resized(p, h, w, scale) for (p, _), (h, w) in zip(panels, dims, strict=True)]
    height = max(i.shape[0] for i in imgs)
    width = sum(i.shape[1] for i in imgs) + gap * (len(imgs) - 1)
    out = np.full((height, width, 3), 255, np.uint8)
    x = 0
    for im in imgs:
        y = (height - im.shape[0]) // 2
        out[y : y + im.shape[0], x : x + im.shape[1]] = im
        x += im.shape[1] + gap
    return out


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def segmask_png(segmask: SegmentationMask, size: int = 256) -> bytes:
    """A small PNG of a mask: axial, coronal and sagittal maximum intensity projections,
    one colour per label (``SegmentationMask._repr_png_``).

    Args:
        segmask: The mask.
        size: The picture's longer side in pixels (16-4096).

    Returns:
        PNG bytes.

    Raises:
        MaskValidationError: ``size`` out of range or not a SegmentationMask.
    """
    from .segmask import SegmentationMask

    if not isinstance(segmask, SegmentationMask):
        raise MaskValidationError(f"expected a SegmentationMask, got {type(segmask).__name__}")
    if not isinstance(size, int) or not 16 <= size <= 4096:
        raise MaskValidationError(f"size must be an integer 16-4096, got {size!r}")
    layers, space = _segmask_layers(segmask)
    layers = [lay for lay in layers if lay.crop is not None]
    shape = tuple(int(s) for s in space.shape)
    panels = []
    for view in _views(space):
        rgb, _ = _compose(layers, view, None, shape, None, 1.0)
        panels.append((_to_uint8(rgb), view))
    return png_bytes(_strip(panels, size))


def _thumbnail(ar: MaskArchive, size: int, budget: int) -> tuple[bytes | None, int, int]:
    """A coronal projection of the archive's masks; ``(png, decoded, boxes only)``."""
    layers, _empty = _archive_layers(ar, None, budget=budget)
    if not layers:
        return None, 0, 0
    space = ar.space
    shape = tuple(int(s) for s in space.shape)
    view = next(v for v in _views(space) if v.plane == "coronal")
    rgb, _ = _compose(layers, view, None, shape, None, 1.0)
    boxes = sum(lay.crop is None for lay in layers)
    return png_bytes(_strip([(_to_uint8(rgb), view)], size)), len(layers) - boxes, boxes


def archive_html(
    archive: MaskArchive,
    max_rows: int = 50,
    *,
    thumbnail: int = 160,
    budget: int = 20_000_000,
) -> str:
    """An HTML table of an archive's masks (``MaskArchive._repr_html_``).

    Reads the index only (voxels, mL, bounding box, stored colour); one small coronal
    projection of the masks is drawn from their bounding-box regions, decoding at most
    ``budget`` box voxels (smallest boxes first; the others are drawn as box outlines).
    Version-1 archives record no voxels or boxes: their rows say so and no thumbnail is drawn.

    Args:
        archive: An open archive.
        max_rows: Rows shown (the rest are counted in a last row).
        thumbnail: Thumbnail size in pixels (longer side); 0 for none.
        budget: Most bounding-box voxels decoded for the thumbnail.

    Returns:
        An HTML fragment (names escaped).
    """
    esc = html.escape
    ar = archive
    space = ar.space
    n = len(ar)
    head = f"<b>{esc(_file_name(ar.path))}</b>: {n} masks, format version {ar.version}"
    if space is None:
        return f"<div>{head}, no space yet</div>"
    shape = tuple(int(s) for s in space.shape)
    spacing = ", ".join(f"{float(s):.3g}" for s in space.spacing)
    head += f", grid (z, y, x) {shape[0]}x{shape[1]}x{shape[2]}, spacing ({spacing}) mm"
    vml = _voxel_ml(space)
    infos_fn = getattr(ar, "infos", None)
    infos = list(infos_fn()) if callable(infos_fn) else [ar.info(i) for i in range(n)]
    colors = _colors_of(infos)
    rows = []
    for info in infos[: max(0, int(max_rows))]:
        c = colors[info.name]
        swatch = (
            f'<span style="display:inline-block;width:0.9em;height:0.9em;'
            f'background:rgb({c[0]},{c[1]},{c[2]})"></span>'
        )
        if info.voxels is None:
            vox, ml, box = "(decode)", "", "(version 1: not stored)"
        elif info.voxels == 0:
            vox, ml, box = "0", "0", "empty"
        else:
            b = info.bbox
            vox = f"{int(info.voxels):,}"
            ml = f"{int(info.voxels) * vml:,.2f}"
            box = f"{b[0]}:{b[1]}, {b[2]}:{b[3]}, {b[4]}:{b[5]}" if b else ""
        labels = ", ".join(f"{esc(str(k))}={v}" for k, v in info.mapping.items())
        rows.append(
            f"<tr><td>{info.index}</td><td>{swatch} {esc(info.name)}</td><td>{labels}</td>"
            f"<td style='text-align:right'>{vox}</td><td style='text-align:right'>{ml}</td>"
            f"<td>{box}</td></tr>"
        )
    if n > max_rows:
        rows.append(f"<tr><td colspan='6'>... {n - max(0, int(max_rows))} more masks</td></tr>")
    table = (
        "<table><thead><tr><th>#</th><th>name</th><th>labels</th><th>voxels</th><th>mL</th>"
        "<th>bbox z0:z1, y0:y1, x0:x1</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
    thumb = ""
    if thumbnail and ar.version >= 2 and n:
        png, _decoded, boxes = _thumbnail(ar, int(thumbnail), budget)
        if png is not None:
            note = f" ({boxes} shown as boxes)" if boxes else ""
            thumb = (
                f'<div style="float:right;margin-left:1em;text-align:center">'
                f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" '
                f'alt="coronal projection"/><br/><small>coronal MIP{note}</small></div>'
            )
    return f"<div>{thumb}<p>{head}</p>{table}</div>"
