"""Older names of :class:`~medmask.MaskArchive` methods, kept working for code written
against earlier releases (medmask 0.1.x callers use them); each warns once per call site
with a :class:`DeprecationWarning` that names the method to use instead."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from ..errors import MaskValidationError
from ..mapping import LabelMapping
from ..segmask import SegmentationMask

__all__ = ["DeprecatedArchiveNames", "deprecated"]


def deprecated(old: str, new: str) -> None:
    """Warn that ``old`` is deprecated in favour of ``new`` (at the caller's caller)."""
    warnings.warn(
        f"MaskArchive.{old} is deprecated; use {new} instead (it does the same job)",
        DeprecationWarning,
        stacklevel=3,
    )


class DeprecatedArchiveNames:
    """Mixin of :class:`~medmask.MaskArchive` with its deprecated synonyms."""

    def add_segmask(
        self,
        segmask: SegmentationMask,
        name: str,
        *,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Deprecated: ``archive.add(name, segmask, attrs=...)`` stores a mask.

        Raises:
            MaskValidationError: Not a SegmentationMask, or as :meth:`MaskArchive.add`.
        """
        deprecated("add_segmask(segmask, name)", "archive.add(name, segmask)")
        if not isinstance(segmask, SegmentationMask):
            raise MaskValidationError(
                f"add_segmask expects a SegmentationMask, got {type(segmask).__name__}"
            )
        self.add(name, segmask, attrs=attrs)

    def load_segmask(self, name: str | int) -> SegmentationMask:
        """Deprecated: ``archive[name]`` reads one mask as a SegmentationMask."""
        deprecated("load_segmask(name)", "archive[name]")
        return self._read_segmask(name)

    def read_all_mapping(self) -> dict[str, LabelMapping]:
        """Deprecated: ``archive.infos()`` gives each mask's mapping (``info.mapping``)
        with the rest of its index row."""
        deprecated("read_all_mapping()", "archive.infos() (each MaskInfo's .mapping)")
        self._check_open()
        path = self.path
        return {e.name: e.mapping(path).copy() for e in self._backend.entries}
