"""The DICOM SEG entry of the format table, with its conversions."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

from ...io.formats.builtin import DicomSeg as DicomSegFile
from ...io.target import Target
from ...spaces import Space
from ..common import (
    ConversionReport,
    NeedsOptionError,
    records_to_archive,
)
from ..targets import local_copy
from .read import read_dicom_seg
from .write import write_dicom_seg

__all__ = ["DicomSegFormat", "grid_note"]

Progress = Callable[[Iterable], Iterable] | None


def grid_note(space: Space) -> str:
    """The one line ``pack`` says of a SEG packed without its source series."""
    nz, ny, nx = (int(v) for v in space.shape)
    return (
        f"the archive's grid is the extent of the SEG's frames ({nz} slices of {ny} x {nx}), "
        "not its source series' (a SEG has no frame for slices without a segment): give the "
        "series with --reference DICOM_DIR (reference= in Python) to pack onto its grid, or "
        "load with LoadMaskd(..., like='image') to place the masks on the image's grid"
    )


class DicomSegFormat(DicomSegFile):
    """A DICOM SEG: one mask per segment in; a BINARY or LABELMAP SEG on its source series
    out."""

    def read(
        self,
        src: Target,
        out: Target,
        *,
        codec: str | None = None,
        progress: Progress = None,
        threshold: float | None = None,
        reference: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        instances: Sequence[str | os.PathLike] = (),
    ) -> ConversionReport:
        """Pack every segment; see :func:`medmask.conversions.to_archive` for the options.

        ``instances`` (local files; used by :mod:`medmask.packing`): other instances of the
        same SEG series, packed into the same archive (see :func:`read_dicom_seg`). The
        report's ``ids`` hold the SEG's identifiers; the archive keeps them, with ``path``
        (the SEG's file name), as its ``source`` attribute (format 2.3).
        """
        report = ConversionReport(str(src), str(out), self.kind)
        with (
            local_copy(src) as path,
            out.writing() as dest,
            read_dicom_seg(
                path, threshold=threshold, reference=reference, instances=instances
            ) as seg,
        ):
            report.renamed = seg.renamed
            report.notes += seg.notes
            report.kind = f"{self.kind} ({seg.seg_type})"
            report.ids = dict(seg.ids)
            if reference is None:
                report.notes.append(grid_note(seg.space))
            source = {**seg.ids, "path": src.name}
            report.masks = records_to_archive(
                seg.jobs,
                seg.space,
                dest,
                codec=codec,
                progress=progress,
                archive_attrs={
                    "source": source,
                    "grid": "image" if reference is not None else "segmentation",
                },
            )
        return report

    def write(
        self,
        archive: Target,
        out: Target,
        *,
        progress: Progress = None,
        source: str | os.PathLike | None = None,
        labelmap_seg: bool = False,
        names: Iterable[str] | None = None,
        overlap: str = "last",
    ) -> ConversionReport:
        """A SEG referencing the series in ``source`` (required); a LABELMAP SEG settles
        overlaps by ``overlap`` and reports the losses, as a NIfTI label map does; see
        :func:`medmask.conversions.from_archive`."""
        if source is None:
            raise NeedsOptionError(
                f"{out}: a DICOM SEG references its image series: give source= / --source DICOM_DIR"
            )
        if overlap != "last" and not labelmap_seg:
            raise NeedsOptionError(
                f"{out}: overlap= / --overlap settles overlaps in label maps; a BINARY SEG keeps "
                "them (give labelmap_seg=True / --seg-type labelmap for a LABELMAP SEG)"
            )
        report = ConversionReport(str(archive), str(out), self.kind)
        with local_copy(archive) as src, out.writing() as dest:
            res = write_dicom_seg(
                src,
                dest,
                source,
                labelmap=labelmap_seg,
                overlap=overlap,
                names=names,
                progress=progress,
            )
        report.masks = list(res.numbers)
        report.voxels, report.lost, report.emptied = res.voxels, res.lost, res.emptied
        report.taken_by = res.taken_by
        report.notes.append(f"{res.frames} frames ({'LABELMAP' if labelmap_seg else 'BINARY'})")
        return report
