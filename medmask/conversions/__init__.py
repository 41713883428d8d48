"""Getting masks in and out of medmask: one module or package per foreign format.

Every format is an entry of the format table (:mod:`medmask.io.formats`), which says what
it is, how its bytes are recognised and what it can do. Importing this package registers
the implementations (``read`` = pack, ``write`` = unpack) of the built-in entries:

* :mod:`~medmask.conversions.nifti`: NIfTI folders, label maps (TotalSegmentator's names
  extension read and written), single files (extra ``nifti``: nibabel); ``nifti.io`` (one
  file in or out), ``nifti.archive`` (folders and label maps to and from archives),
  ``nifti.cases`` (where a dataset's masks are) and ``nifti.format`` (the table entries).
* :mod:`~medmask.conversions.slicer`: 3D Slicer ``.seg.nrrd`` (extra ``nrrd``: pynrrd).
* :mod:`~medmask.conversions.dicom_seg`: DICOM SEG (extra ``dicom``: pydicom);
  ``dicom_seg.read``, ``dicom_seg.frames``, ``dicom_seg.write``, ``dicom_seg.series``.
* :mod:`~medmask.conversions.nnunet`: nnU-Net's raw dataset layout (``unpack-tree``).
* :mod:`~medmask.conversions.labels`: label tables (JSON, text, ITK-SNAP, nnU-Net).
* :mod:`~medmask.conversions.names`: safe file names.
* :mod:`~medmask.conversions.detect`: what a source is, by content (the table's answer).
* :mod:`~medmask.conversions.common`: mask records, reports, writing records to archives.
* :mod:`~medmask.conversions.targets`: local copies of URL sources for libraries that read
  paths.

:func:`to_archive` and :func:`from_archive` look the format up in the table (by content /
by the output's name) and are what ``medmask pack`` / ``medmask unpack`` call;
:func:`from_archives` writes dataset layouts (``medmask unpack-tree``). Optional
dependencies are imported only when a format needs them.
"""

from __future__ import annotations

from ..io.formats import register_format
from .common import (
    ConversionReport,
    MaskRecord,
    NeedsOptionError,
    iter_archive_records,
    records_to_archive,
)
from .dicom_seg.format import DicomSegFormat
from .dispatch import check_output, from_archive, from_archives, output_format, to_archive
from .nifti.format import NiftiFolderFormat, NiftiFormat
from .nnunet import NnunetFormat, archives_to_nnunet
from .slicer.format import SlicerFormat
from .targets import local_copy

__all__ = [
    "to_archive",
    "from_archive",
    "from_archives",
    "archives_to_nnunet",
    "check_output",
    "output_format",
    "ConversionReport",
    "MaskRecord",
    "NeedsOptionError",
    "iter_archive_records",
    "records_to_archive",
    "local_copy",
]

#: The implementations of the built-in entries of the format table.
IMPLEMENTATIONS = (NiftiFormat, NiftiFolderFormat, SlicerFormat, DicomSegFormat, NnunetFormat)
for _impl in IMPLEMENTATIONS:
    register_format(_impl(), replace=True)
