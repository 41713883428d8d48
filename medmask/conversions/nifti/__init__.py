"""NIfTI in and out (needs the ``nifti`` extra: nibabel).

In: a folder of binary masks (TotalSegmentator's layout, one ``<organ>.nii.gz`` per
organ), a multi-label NIfTI with its label table (read from TotalSegmentator's header
extension when present), or a single file. Out: one ``.nii.gz`` per mask, or one label
map with TotalSegmentator's names extension and a ``.json`` table.

Geometry (:mod:`medmask.geometry`) follows what MONAI reports for a NIfTI file. Every
NIfTI file is read by :func:`load_nifti` (one place; keep it small).

The package: :mod:`.io` (NIfTI files in and out), :mod:`.archive` (workflows between
NIfTI folders or label maps and archives), :mod:`.cases` (where a dataset's masks are) and
:mod:`.format` (the format table's entries, registered by :mod:`medmask.conversions`).
"""

from __future__ import annotations

from ..names import NIFTI_SUFFIXES
from .archive import (
    OVERLAP_RULES,
    LabelmapExport,
    archive_to_folder,
    archive_to_labelmap,
    export_labelmap,
    folder_to_archive,
    labelmap_to_archive,
    labelmap_to_msk,
)
from .io import (
    MaskResampledWarning,
    load_nifti,
    nifti_files,
    nifti_label_table,
    nifti_to_segmask,
    read_nifti,
    segmask_to_nifti,
)

__all__ = [
    "load_nifti",
    "read_nifti",
    "nifti_to_segmask",
    "nifti_label_table",
    "folder_to_archive",
    "labelmap_to_archive",
    "labelmap_to_msk",
    "segmask_to_nifti",
    "archive_to_folder",
    "archive_to_labelmap",
    "export_labelmap",
    "LabelmapExport",
    "nifti_files",
    "MaskResampledWarning",
    "OVERLAP_RULES",
    "NIFTI_SUFFIXES",
]
