"""Who took a mask's voxels in a label map: the masks named in a loss report.

:func:`medmask.storage.paint_label_map` counts what each mask lost to overlaps; a report
that says only "femur_right lost 6 voxels" leaves the user to find the other mask. This
names it, for every label-map export (NIfTI, DICOM SEG), from the painted map itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["taken_by"]


def taken_by(archive: Any, layers: Sequence[Any], painted: Any) -> dict[str, list[str]]:
    """For each layer that lost voxels, the layers whose label holds them in the label map.

    Args:
        archive: The open :class:`~medmask.MaskArchive` the layers were painted from.
        layers: The painter's :class:`~medmask.storage.Layer` objects, in table order.
        painted: The :class:`~medmask.storage.Painted` result of the whole volume.

    Returns:
        ``{key: [keys of the layers that took its voxels]}`` for the layers that lost some
        (in table order; layers sharing a label are all named).
    """
    by_value: dict[int, list[str]] = {}
    for ly in layers:
        by_value.setdefault(int(ly.value), []).append(ly.key)
    out: dict[str, list[str]] = {}
    for ly in layers:
        if not painted.lost.get(ly.key):
            continue
        crop, box = archive.read_cropped(ly.mask)
        if box is None:
            continue
        hit = crop != 0 if ly.stored is None else crop == ly.stored
        z0, z1, y0, y1, x0, x1 = box
        region = painted.array[z0:z1, y0:y1, x0:x1]
        values = {int(v) for v in np.unique(region[hit & (region != ly.value)])}
        out[ly.key] = [
            k for other in layers for k in [other.key] if int(other.value) in values and k != ly.key
        ]
    return out
