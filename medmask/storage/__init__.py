"""Files on disk or in a bucket: :class:`MaskFile` (one mask, ``.msk``), :class:`MaskArchive`
(many masks of one case, ``.mska``), :func:`save_mask` / :func:`load_mask`, and
:class:`MaskInfo` (what an archive's index says about one mask).

Modules: ``maskfile`` (``.msk``), ``archive`` (``.mska``), ``_common`` (what both share),
``_window`` (windows and :func:`paint_label_map`, the one label-map painter).
Format versions live behind :mod:`medmask.format`; byte sources in :mod:`medmask.io`.
"""

from __future__ import annotations

from ._common import MaskInfo
from ._editing import PreparedMask
from ._window import Layer, Painted, paint_label_map
from .archive import MaskArchive
from .maskfile import MaskFile, load_mask, save_mask

__all__ = [
    "MaskFile",
    "MaskArchive",
    "MaskInfo",
    "PreparedMask",
    "save_mask",
    "load_mask",
    "Layer",
    "Painted",
    "paint_label_map",
]
