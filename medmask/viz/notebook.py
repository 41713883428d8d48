"""Notebook views that need neither matplotlib nor pandas: a PNG encoder, the
``SegmentationMask`` thumbnail and the ``MaskArchive`` HTML table."""

from __future__ import annotations

import base64
import html
import json
import struct
import zlib
from typing import TYPE_CHECKING

import numpy as np

from ..errors import MaskValidationError
from .colors import _View, _views
from .layers import _archive_layers, _colors_of, _compose, _file_name, _segmask_layers, _voxel_ml

if TYPE_CHECKING:  # pragma: no cover
    from ..segmask import SegmentationMask
    from ..storage import MaskArchive


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
    from ..segmask import SegmentationMask

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


def _row(info, colors: dict, vml: float, layout: str) -> str:
    """One row of :func:`archive_html`'s table."""
    esc = html.escape
    c = colors[info.name]
    swatch = (
        f'<span style="display:inline-block;width:0.9em;height:0.9em;'
        f'background:rgb({c[0]},{c[1]},{c[2]})"></span>'
    )
    if info.voxels == 0:  # never drawn: an empty swatch, no colour of its own
        swatch = '<span style="display:inline-block;width:0.9em;height:0.9em"></span>'
    if info.voxels is None:
        vox, ml, box = "(decode)", "", f"(format {layout}: not stored)"
    elif info.voxels == 0:
        vox, ml, box = "0", "0", "empty"
    else:
        b = info.bbox
        vox = f"{int(info.voxels):,}"
        ml = f"{int(info.voxels) * vml:,.2f}"
        box = f"{b[0]}:{b[1]}, {b[2]}:{b[3]}, {b[4]}:{b[5]}" if b else ""
    labels = ", ".join(f"{esc(str(k))}={v}" for k, v in info.mapping.items())
    return (
        f"<tr><td>{info.index}</td><td>{swatch} {esc(info.name)}</td><td>{labels}</td>"
        f"<td style='text-align:right'>{vox}</td><td style='text-align:right'>{ml}</td>"
        f"<td>{box}</td></tr>"
    )


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
    Layouts that record no voxels or boxes (``index_stats``, version 1) say so in their rows,
    and no thumbnail is drawn.

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
    for key, value in ar.archive_attrs.items():  # the archive's own attributes (format 2.3)
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        head += f"<br/>{esc(key)}: {esc(shown if len(shown) <= 160 else shown[:157] + '...')}"
    vml = _voxel_ml(space)
    infos = ar.infos()
    colors = _colors_of(infos)  # the colours `medmask show` and viz.render draw them in
    # non-empty masks first (in archive order), so that the first rows are what is drawn
    shown = sorted(infos, key=lambda i: i.voxels == 0)
    rows = [_row(info, colors, vml, ar.layout.name) for info in shown[: max(0, int(max_rows))]]
    if n > max_rows:
        hidden = shown[max(0, int(max_rows)) :]
        empty = sum(1 for i in hidden if i.voxels == 0)
        rows.append(
            f"<tr><td colspan='6'>... {len(hidden)} more masks"
            + (f" ({empty} of them empty)" if empty else "")
            + "</td></tr>"
        )
    table = (
        "<table><thead><tr><th>#</th><th>name</th><th>labels</th><th>voxels</th><th>mL</th>"
        "<th>bbox z0:z1, y0:y1, x0:x1</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
    thumb = ""
    if thumbnail and ar.layout.index_stats and n:
        png, _decoded, boxes = _thumbnail(ar, int(thumbnail), budget)
        if png is not None:
            note = f" ({boxes} shown as boxes)" if boxes else ""
            thumb = (
                f'<div style="float:right;margin-left:1em;text-align:center">'
                f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}" '
                f'alt="coronal projection"/><br/><small>coronal MIP{note}</small></div>'
            )
    return f"<div>{thumb}<p>{head}</p>{table}</div>"
