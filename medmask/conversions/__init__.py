"""Getting masks in and out of medmask: one module or package per foreign format.

* :mod:`~medmask.conversions.nifti`: NIfTI folders, label maps (TotalSegmentator's names
  extension read and written), single files (extra ``nifti``: nibabel); ``nifti.io`` (one
  file in or out) and ``nifti.archive`` (folders and label maps to and from archives).
* :mod:`~medmask.conversions.slicer`: 3D Slicer ``.seg.nrrd`` (extra ``nrrd``: pynrrd).
* :mod:`~medmask.conversions.dicom_seg`: DICOM SEG (extra ``dicom``: pydicom, highdicom);
  ``dicom_seg.read``, ``dicom_seg.write``, ``dicom_seg.series`` (the source image series).
* :mod:`~medmask.conversions.labels`: label tables (JSON, text, ITK-SNAP, nnU-Net).
* :mod:`~medmask.conversions.names`: safe file names.
* :mod:`~medmask.conversions.detect`: what a source is, by content.
* :mod:`~medmask.conversions.common`: mask records, reports, atomic file writes.

:func:`to_archive` and :func:`from_archive` pick the format (by content / by the output's
name) and are what ``medmask pack`` / ``medmask unpack`` call. Optional dependencies
are imported only when a format needs them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["to_archive", "from_archive"]


def to_archive(*args: Any, **kwargs: Any) -> Any:
    """Pack any supported source into an archive; see :func:`medmask.conversions.dispatch.to_archive`."""
    from .dispatch import to_archive as impl

    return impl(*args, **kwargs)


def from_archive(*args: Any, **kwargs: Any) -> Any:
    """Export an archive to the format its output's name says; see
    :func:`medmask.conversions.dispatch.from_archive`."""
    from .dispatch import from_archive as impl

    return impl(*args, **kwargs)
