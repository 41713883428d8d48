"""The Slicer entry of the format table, with its conversions."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ...io.formats.builtin import SlicerSegmentation
from ...io.target import Target
from ..common import ConversionReport, iter_archive_records, records_to_archive
from ..targets import local_copy
from .extent import grid_kind
from .read import seg_nrrd_jobs
from .write import write_seg_nrrd

__all__ = ["SlicerFormat"]

Progress = Callable[[Iterable], Iterable] | None


class SlicerFormat(SlicerSegmentation):
    """A 3D Slicer ``.seg.nrrd``: one mask per segment in, overlapping masks in layers out."""

    def read(
        self, src: Target, out: Target, *, codec: str | None = None, progress: Progress = None
    ) -> ConversionReport:
        """Pack every segment (empty ones too); see :func:`medmask.conversions.to_archive`.
        A file Slicer saved cropped to its segments' extent is said in a note and recorded
        as ``grid: segmentation`` (``image`` when it covers the whole image)."""
        report = ConversionReport(str(src), str(out), self.kind)
        with local_copy(src) as path, out.writing() as dest:
            space, jobs, renamed = seg_nrrd_jobs(path)
            kind, note = grid_kind(path)
            report.renamed = renamed
            report.notes += [note] if note else []
            report.masks = records_to_archive(
                jobs,
                space,
                dest,
                codec=codec,
                progress=progress,
                archive_attrs={"grid": kind} if kind else None,
            )
        return report

    def write(
        self,
        archive: Target,
        out: Target,
        *,
        progress: Progress = None,
        names: Iterable[str] | None = None,
    ) -> ConversionReport:
        """Write the masks (or ``names``) as one segmentation; see
        :func:`medmask.conversions.from_archive`."""
        report = ConversionReport(str(archive), str(out), self.kind)
        with local_copy(archive) as src, out.writing() as dest:
            space, _count, records = iter_archive_records(src, names)
            placed = write_seg_nrrd(records, space, dest, progress=progress)
        report.masks = list(placed)
        layers = 1 + max(layer for layer, _ in placed.values())
        if layers > 1:
            report.notes.append(f"overlapping masks written in {layers} layers")
        return report
