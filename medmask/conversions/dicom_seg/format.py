"""The DICOM SEG entry of the format table, with its conversions."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence

from ...io.formats.builtin import DicomSeg as DicomSegFile
from ...io.target import Target
from ..common import (
    ConversionReport,
    NeedsOptionError,
    iter_archive_records,
    records_to_archive,
)
from ..targets import local_copy
from .read import read_dicom_seg
from .write import write_dicom_seg

__all__ = ["DicomSegFormat"]

Progress = Callable[[Iterable], Iterable] | None


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
            source = {**seg.ids, "path": src.name}
            report.masks = records_to_archive(
                seg.jobs,
                seg.space,
                dest,
                codec=codec,
                progress=progress,
                archive_attrs={"source": source},
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
    ) -> ConversionReport:
        """A SEG referencing the series in ``source`` (required); see
        :func:`medmask.conversions.from_archive`."""
        if source is None:
            raise NeedsOptionError(
                f"{out}: a DICOM SEG references its image series: give source= / --source DICOM_DIR"
            )
        report = ConversionReport(str(archive), str(out), self.kind)
        with local_copy(archive) as src, out.writing() as dest:
            space, count, records = iter_archive_records(src, names)
            numbers = write_dicom_seg(
                records, space, dest, source, labelmap=labelmap_seg, count=count, progress=progress
            )
        report.masks = list(numbers)
        return report
