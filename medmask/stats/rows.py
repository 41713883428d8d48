"""The rows of one file of a :func:`medmask.stats` table: from the index where the file's
layout records the figures (``index_stats``, ``centroids``), by decoding otherwise."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..attrs import centroid_of
from ..errors import CorruptFileError, ForeignFileError
from ..format import read_msk_record, sniff_target
from ..io.target import Target
from ..spaces import Space
from ..storage import MaskArchive

__all__ = ["Grid", "Part", "grid_of", "file_part"]


_RAS = np.array([-1.0, -1.0, 1.0])  # medmask spaces are LPS; RAS flips the first two axes


class Grid:
    """What the rows of one file need from its ``(z, y, x)`` space.

    ``steps[:, k]`` is the RAS step of array axis ``k`` (z, y, x) and ``origin`` the RAS centre
    of voxel 0, so that ``steps @ (z, y, x) + origin`` is what nibabel computes as
    ``img.affine @ (i, j, k, 1)`` with ``(i, j, k) = (x, y, z)``.
    """

    def __init__(self, space: Space) -> None:
        self.shape = np.array([int(v) for v in space.shape], dtype=np.int64)
        spacing = np.asarray(space.spacing, dtype=np.float64)
        dirs = np.column_stack(
            [space.x_orientation, space.y_orientation, space.z_orientation]
        ).astype(np.float64)  # the (z, y, x) space's "x" axis is array axis 0, and so on
        self.steps = _RAS[:, None] * (dirs * spacing)
        self.origin = _RAS * np.asarray(space.origin, dtype=np.float64)
        self.voxel_ml = float(abs(np.prod(spacing))) / 1000.0


_GRIDS: dict[tuple, Grid] = {}


def grid_of(space: Space) -> Grid:
    """The (cached) :class:`Grid` of a space: datasets mostly share a few grids."""
    key = tuple(
        tuple(float(v) for v in getattr(space, f))
        for f in ("shape", "spacing", "origin", "x_orientation", "y_orientation", "z_orientation")
    )
    grid = _GRIDS.get(key)
    if grid is None:
        if len(_GRIDS) > 1024:
            _GRIDS.clear()
        grid = _GRIDS[key] = Grid(space)
    return grid


class Part:
    """The rows of one file, column by column (figures as read, derived columns later)."""

    def __init__(self, grid: Grid, case: str, fmt: str, path: str) -> None:
        self.grid, self.case, self.fmt, self.path = grid, case, fmt, path
        self.names: list[str] = []
        self.voxels: list[int] = []
        self.bboxes: list[tuple | None] = []
        self.centroids: list[Sequence[float] | None] = []
        self.attrs: list[dict | None] = []
        self.labels: list[dict] = []
        self.sources: list[str] = []
        #: the archive's own attributes (format 2.3), one dict for all its rows
        self.archive_attrs: dict = {}

    def add(self, name, voxels, bbox, centroid, attrs, labels, source) -> None:
        self.names.append(name)
        self.voxels.append(int(voxels))
        self.bboxes.append(None if bbox is None or not voxels else tuple(int(b) for b in bbox))
        self.centroids.append(centroid if voxels else None)
        self.attrs.append(attrs or None)  # most masks have none: no dict kept per row
        self.labels.append(labels)
        self.sources.append(source)


# -- reading one file -------------------------------------------------------------------------
def _archive_part(target: Target) -> Part | None:
    """The rows of one archive: from :meth:`MaskArchive.infos` (the index alone), decoding
    only masks whose row lacks a figure (layouts without ``index_stats`` or ``centroids``)."""
    with MaskArchive(target) as ar:
        space = ar.space
        if space is None:  # an archive created without a mask or a space
            return None
        part = Part(grid_of(space), target.stem, ar.layout.name, target.path)
        part.archive_attrs = dict(ar.archive_attrs)
        for info in ar.infos():
            voxels, bbox, centroid, source = info.voxels, info.bbox, info.centroid, "index"
            if voxels is None or (voxels > 0 and (bbox is None or centroid is None)):
                crop, bbox = ar.read_cropped(info.index)
                origin = (0, 0, 0) if bbox is None else (bbox[0], bbox[2], bbox[4])
                voxels, centroid = centroid_of(crop, origin)
                source = "decoded"
            part.add(info.name, voxels, bbox, centroid, info.attrs, info.mapping, source)
    return part


def _msk_part(target: Target) -> Part:
    """The row of one ``.msk`` (its bounding box decoded); its case is its folder's name."""
    r = read_msk_record(target, cropped=True)
    folder = target.parent.name if target.is_url else Path(target.path).resolve().parent.name
    origin = (0, 0, 0) if r.bbox is None else (r.bbox[0], r.bbox[2], r.bbox[4])
    voxels, centroid = centroid_of(r.array, origin)
    if r.centroid is not None:
        centroid = r.centroid
    part = Part(grid_of(r.space), folder, r.layout.name, target.path)
    part.add(target.stem, voxels, r.bbox, centroid, dict(r.attrs), r.mapping.to_dict(), "decoded")
    return part


def file_part(target: Target) -> Part | None:
    """The rows of one file (``None``: an archive without a space yet).

    A URL is taken by its name (no extra request: a reader opening an object whose bytes
    contradict its name refuses it); a local file is opened as an archive, the common case,
    and read as a ``.msk`` when its first bytes say it is not one (so an archive is opened
    once).

    Raises:
        CorruptFileError: A damaged file. OSError: It cannot be read.
    """
    if target.is_url:
        return _msk_part(target) if target.suffix.lower() == ".msk" else _archive_part(target)
    try:
        return _archive_part(target)
    except CorruptFileError:
        if _is_archive(target):
            raise  # a damaged archive
        return _msk_part(target)


def _is_archive(target: Target) -> bool:
    try:
        return sniff_target(target).kind == "mska"
    except (CorruptFileError, ForeignFileError):  # not a medmask file at all
        return False
