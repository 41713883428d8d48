"""Colours of masks (stored ``color`` attribute, else a fixed palette) and the patient
directions of a grid's axes, which orient the three panels."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..attrs import PALETTE as _PALETTE
from ..attrs import palette_color

if TYPE_CHECKING:  # pragma: no cover
    from ..spaces import Space

#: The fixed palette (RGB 0-255) for masks without a stored colour, in order of use: the
#: one palette of medmask (:data:`medmask.attrs.PALETTE`; exports use it too).
PALETTE = _PALETTE
#: Background of the panels where no image is drawn (RGB 0-255).
BACKGROUND = (24, 24, 24)
_PLANES = ("axial", "coronal", "sagittal")
_POS, _NEG = "LPS", "RAI"  # medmask spaces are LPS: +x is patient left, +y posterior, +z superior


# -- colours and orientation ---------------------------------------------------------------------
def mask_colors(
    names: Sequence[str], attrs: Sequence[dict | None] | None = None
) -> dict[str, tuple[int, int, int]]:
    """The colour of each mask: its stored ``color`` attribute, else the next palette colour
    (:func:`medmask.attrs.palette_color`: no colour given twice).

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
            out[name] = palette_color(k)
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
