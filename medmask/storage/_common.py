"""What MaskFile and MaskArchive share: MaskInfo and the output-name rule."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..bbox import BBox
from ..io.names import expect_name, format_from_name

__all__ = ["MaskInfo", "PathLike", "StorageOptions"]

PathLike = str | os.PathLike
StorageOptions = Mapping[str, Any] | None


@dataclass(frozen=True)
class MaskInfo:
    """What an archive's index says about one mask, without decoding it.

    Attributes:
        name: The mask's name.
        index: Its position in the archive.
        mapping: Its ``{name: label}`` mapping.
        dtype: Its dtype name (``None`` for version 1 until decoded).
        bbox: Half-open ``(z0, z1, y0, y1, x0, x1)`` box of the non-zero voxels
            (version 2; ``None`` when empty; the whole volume for version 1).
        voxels: Number of non-zero voxels (version 2; ``None`` for version 1).
        nbytes: Bytes the mask occupies in the file.
        centroid: Mean ``(z, y, x)`` voxel index of the non-zero voxels, as stored at
            write time (formats 2.1, 2.2); ``None`` when the mask is empty or the file does
            not record it (version 1, files of medmask 0.2.0).
        attrs: The mask's stored attributes (colour, coded terminology, description,
            ...; see :mod:`medmask.attrs`); ``{}`` when none.
    """

    name: str
    index: int
    mapping: dict[str, int]
    dtype: str | None
    bbox: BBox | None
    voxels: int | None
    nbytes: int
    centroid: tuple[float, float, float] | None = None
    attrs: dict = field(default_factory=dict)

    @classmethod
    def _of_row(
        cls,
        name: str,
        index: int,
        mapping: dict[str, int],
        dtype: str | None,
        bbox: BBox | None,
        voxels: int | None,
        nbytes: int,
        centroid: tuple[float, float, float] | None,
        attrs: dict,
    ) -> MaskInfo:
        """The same object as ``MaskInfo(...)`` with every field given, built without the
        frozen dataclass's one ``object.__setattr__`` per field (about 1 us, paid once per
        index row by :meth:`MaskArchive.infos`, a third of its cost)."""
        self = object.__new__(cls)
        object.__setattr__(
            self,
            "__dict__",
            {
                "name": name,
                "index": index,
                "mapping": mapping,
                "dtype": dtype,
                "bbox": bbox,
                "voxels": voxels,
                "nbytes": nbytes,
                "centroid": centroid,
                "attrs": attrs,
            },
        )
        return self


def _refuse_foreign_name(target: PathLike, kind: str, what: str) -> None:
    """Refuse an output whose suffix names another known format (``x.nii.gz`` for an archive).

    A name without a suffix, or with a suffix medmask does not know, is accepted.

    Raises:
        MaskValidationError: The name says another format; the message gives the right name.
    """
    named = format_from_name(target)
    if named is not None and named != kind:
        expect_name(target, kind, what=what)
