"""The matplotlib renderer: :func:`render` (three panels, legend, patient directions,
optional image underneath) and :func:`save_png`. matplotlib is imported when drawing."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import (
    CorruptFileError,
    ForeignFileError,
    MaskNotFoundError,
    MaskValidationError,
    SpaceMismatchError,
)
from ..format import sniff_target
from ..segmask import SegmentationMask
from ..storage import MaskArchive, load_mask
from .colors import _views
from .layers import (
    _archive_layers,
    _compose,
    _densest,
    _file_name,
    _Layer,
    _plane_of,
    _segmask_layers,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..spaces import Space

#: Legend entries of drawn masks (the largest; the rest are counted).
_LEGEND_MAX = 60


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
    from ..geometry import affine_to_space, effective_affine
    from ..spaces import describe_space, spaces_match

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
    """The layers to draw, the empty masks' names, the grid and a label for the title."""
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
    if _is_archive(path):
        with MaskArchive(path) as ar:
            if ar.space is None:
                raise MaskValidationError(f"{path}: the archive holds no mask")
            layers, empty = _archive_layers(ar, names)
            return layers, empty, ar.space, path.name
    layers, empty, space, _ = _source_layers(load_mask(path), names)
    return layers, empty, space, path.name


def _is_archive(path: Path) -> bool:
    """Whether a file's first bytes say it is an archive (anything else is read as a .msk)."""
    try:
        return sniff_target(path).kind == "mska"
    except (CorruptFileError, ForeignFileError):
        return False


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
        import matplotlib  # noqa: F401 - the renderer is imported by the steps below
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("pictures need matplotlib: pip install 'medmask[stats]'") from None

    layers, empty, space, label = _source_layers(source, names)
    panels, shown = _panels(layers, space, mip=mip, image=image, window=window)
    handles = _legend_handles(layers, empty, shown, all_masks=names is None)
    fig, grid, font, ncol = _new_figure(panels, len(handles), width, dpi, pyplot)
    for k, (view, at, rgb) in enumerate(panels):
        _draw_panel(fig.add_subplot(grid[0, k]), view, at, rgb)
    _draw_legend(fig.add_subplot(grid[0, 3]), handles, font, ncol)
    what = "maximum intensity projections" if mip else "slices through the densest planes"
    height = fig.get_figheight()
    fig.suptitle(title or f"{label}: {len(layers)} masks, {what}", fontsize=11, y=1 - 0.1 / height)
    return fig


def _new_figure(
    panels: list[tuple[Any, int | None, np.ndarray]],
    n_handles: int,
    width: float,
    dpi: int,
    pyplot: bool,
) -> tuple[Figure, Any, int, int]:
    """The figure and its grid: the panels share one scale (mm per inch), side by side;
    the legend takes the rest. Returns ``(figure, gridspec, legend font, legend columns)``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    font = 9 if n_handles <= 20 else (7 if n_handles <= 50 else 5)
    ncol = 1 if n_handles <= 30 else 2
    sizes = [(rgb.shape[1] * v.sp_h, rgb.shape[0] * v.sp_v) for v, _, rgb in panels]
    total_w = sum(w for w, _ in sizes)
    scale = width * 0.70 / total_w  # inches per mm
    panel_h = max(h for _, h in sizes) * scale
    legend_h = math.ceil(n_handles / ncol) * font / 72 * 1.7 + 0.4
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
    return fig, grid, font, ncol


def _panels(
    layers: list[_Layer],
    space: Space,
    *,
    mip: bool,
    image: str | os.PathLike | np.ndarray | None,
    window: tuple[float, float] | None,
) -> tuple[list[tuple[Any, int | None, np.ndarray]], set[str]]:
    """The three panels ``(view, plane index or None for a MIP, RGB)`` and the masks shown."""
    shape = tuple(int(s) for s in space.shape)
    base3 = None if image is None else _windowed(_load_image(image, space), window)
    alpha = 1.0 if base3 is None else 0.5
    idx = [None] * 3 if mip else _densest(layers, shape)
    panels = []
    shown: set[str] = set()
    for view in _views(space):
        at = idx[view.normal]
        base = None if base3 is None else _plane_of(base3, view, at)
        rgb, seen = _compose(layers, view, at, shape, base, alpha)
        shown |= seen
        panels.append((view, at, rgb))
    return panels, shown


def _legend_handles(
    layers: list[_Layer], empty: list[str], shown: set[str], *, all_masks: bool
) -> list[Any]:
    """Legend entries: the drawn masks (the largest :data:`_LEGEND_MAX`), then the empty
    ones (counted when many, for a whole archive)."""
    from matplotlib.patches import Patch

    handles = []
    listed = layers
    if len(layers) > _LEGEND_MAX:  # the largest ones; the rest are counted
        keep = {lay.name for lay in sorted(layers, key=lambda lay: -lay.voxels)[: _LEGEND_MAX - 1]}
        listed = [lay for lay in layers if lay.name in keep]
    for lay in listed:
        note = "" if lay.name in shown else ", not in these slices"
        ml = f"{lay.volume_ml:,.1f}" if lay.volume_ml >= 1 else f"{lay.volume_ml:.2g}"
        color = np.asarray(lay.color) / 255
        handles.append(
            Patch(facecolor=color, edgecolor="none", label=f"{lay.name} ({ml} mL{note})")
        )
    if len(listed) < len(layers):
        more = f"+ {len(layers) - len(listed)} more"
        handles.append(Patch(facecolor="0.6", edgecolor="none", label=more))
    if not all_masks or len(empty) <= 3:
        for name in empty:
            handles.append(Patch(facecolor="none", edgecolor="0.5", label=f"{name} (empty)"))
    else:  # a whole dataset's worth of absent organs would drown the legend
        label = f"+ {len(empty)} empty masks"
        handles.append(Patch(facecolor="none", edgecolor="0.5", label=label))
    return handles


def _draw_panel(ax: Any, view: Any, at: int | None, rgb: np.ndarray) -> None:
    """One panel: the picture at its physical aspect, its title and patient directions."""
    from matplotlib import patheffects

    n_v, n_h = rgb.shape[:2]
    ax.imshow(rgb, extent=(0, n_h * view.sp_h, n_v * view.sp_v, 0), interpolation="nearest")
    where = "MIP" if at is None else f"{'zyx'[view.normal]} = {at}"
    ax.set_title(f"{view.plane} ({where})", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    outline = [patheffects.withStroke(linewidth=2, foreground="black")]
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


def _draw_legend(ax: Any, handles: list[Any], font: int, ncol: int) -> None:
    ax.axis("off")
    if handles:
        ax.legend(
            handles=handles,
            loc="center left",
            frameon=False,
            fontsize=font,
            ncol=ncol,
            handlelength=1.2,
        )
    else:
        ax.text(0, 0.5, "no mask selected", fontsize=9)


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
    from ..io.names import expect_name

    expect_name(out, "png", what="picture")
    fig = render(source, names, **kwargs)
    fig.savefig(os.fspath(out), format="png", facecolor="white")
    return Path(out)
