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

Layout: :mod:`.colors` (palette, patient directions), :mod:`.layers` (masks to draw,
2-D panels), :mod:`.figure` (matplotlib: :func:`render`, :func:`save_png`), :mod:`.notebook`
(PNG and HTML without matplotlib).
"""

from __future__ import annotations

from .colors import BACKGROUND, PALETTE, mask_colors, patient_axes
from .figure import render, save_png
from .notebook import archive_html, png_bytes, segmask_png

__all__ = [
    "BACKGROUND",
    "PALETTE",
    "render",
    "save_png",
    "segmask_png",
    "archive_html",
    "mask_colors",
    "patient_axes",
    "png_bytes",
]
