"""DICOM Segmentation objects (SEG) in and out (needs the ``dicom`` extra: pydicom).

In (:func:`read_dicom_seg`): BINARY and FRACTIONAL SEGs (Segmentation Storage,
``1.2.840.10008.5.1.4.1.1.66.4``) and LABELMAP SEGs (``1.2.840.10008.5.1.4.1.1.66.7``).
The header is read with pydicom without its pixel data; frames are read from the file as a
stream, one segment's frames at a time, and bit-unpacked with numpy straight into the box
of the grid that holds the segment (no per-segment highdicom calls); one mask per segment,
named by ``SegmentLabel``; several instances of one SEG series join on one grid. The grid comes from the frames'
plane positions and orientation: axes x (columns) and y (rows) from
``ImageOrientationPatient`` and ``PixelSpacing``, z along the slice normal, slices sorted
along it, the spacing from ``SpacingBetweenSlices`` or the smallest gap between positions;
slices missing between frames (no segment there) are empty. This gives the same voxels at
the same world positions as highdicom's ``Segmentation.get_volume``. A FRACTIONAL SEG whose
values are only 0 and the maximum is read as binary; a truly fractional one needs a
threshold. ``reference`` (a folder holding the source series, or its files) puts the SEG
onto the full grid of its source series. :func:`read_dicom_header` reads what a file says
about itself (SOP class, series, referenced series, :func:`seg_identifiers`) from its first
bytes, for sorting collections.

Out (:func:`write_dicom_seg`): a BINARY (default; overlaps allowed; one frame per non-empty
slice of each segment) or LABELMAP SEG (overlaps settled by the label maps' ``overlap``
rules, losses reported) referencing the source series, whose grid must be the archive's
(1e-3 mm, direction cosines). The dataset is built with pydicom (:mod:`.build`) and the
repeated per-frame groups are encoded once per slice (:mod:`.encode`); highdicom reads it
back in the tests.

Attributes: ``SegmentLabel`` <-> name; ``SegmentedPropertyCategoryCodeSequence`` <->
``category``; ``SegmentedPropertyTypeCodeSequence`` <-> ``type`` (with its modifier
``type_modifier``); ``AnatomicRegionSequence`` <-> ``region`` (with ``region_modifier``);
``RecommendedDisplayCIELabValue`` <-> ``color`` (sRGB); ``SegmentDescription`` <->
``description``; ``SegmentNumber`` -> ``label_value``.

The package: :mod:`.base` (optional imports, SOP classes, colours), :mod:`.header` (a
file's header and identifiers), :mod:`.items` (the segment descriptions read from their raw
bytes), :mod:`.series` (the source image series and its grid),
:mod:`.frames` (where the frames lie), :mod:`.pixels` (their pixels, streamed),
:mod:`.segments` (one mask per segment), :mod:`.read` (SEG -> masks), :mod:`.write` (masks
-> SEG), :mod:`.build` (the SEG's modules), :mod:`.encode` (the frames as bytes).
"""

from __future__ import annotations

from .base import LABELMAP_SEG_SOP_CLASS, SEG_SOP_CLASS, cielab_to_rgb, rgb_to_cielab
from .header import DicomHeader, read_dicom_header, seg_identifiers
from .read import DicomSeg, read_dicom_seg
from .series import read_series_geometry
from .write import write_dicom_seg

__all__ = [
    "read_dicom_seg",
    "write_dicom_seg",
    "read_series_geometry",
    "DicomSeg",
    "DicomHeader",
    "read_dicom_header",
    "seg_identifiers",
    "SEG_SOP_CLASS",
    "LABELMAP_SEG_SOP_CLASS",
    "rgb_to_cielab",
    "cielab_to_rgb",
]
