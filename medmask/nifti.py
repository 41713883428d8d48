"""NIfTI conversion (compatibility module; needs the ``nifti`` extra: nibabel).

The code lives in :mod:`medmask.conversions.nifti` (NIfTI I/O and workflows),
:mod:`medmask.conversions.labels` (label tables), :mod:`medmask.conversions.names`
(safe file names) and :mod:`medmask.geometry` (affine <-> Space, MONAI's header rule,
resampling). This module re-exports the names it always had, so that existing code
keeps working.

Example:
    >>> from medmask.nifti import folder_to_archive, archive_to_folder   # doctest: +SKIP
    >>> folder_to_archive("s0000/segmentations", "s0000.mska")          # doctest: +SKIP
    >>> archive_to_folder("s0000.mska", "restored/")                    # doctest: +SKIP
"""

from __future__ import annotations

from .conversions.labels import read_label_table
from .conversions.names import NIFTI_SUFFIXES, safe_filename, strip_suffix
from .conversions.nifti import (
    MaskResampledWarning,
    archive_to_folder,
    archive_to_labelmap,
    export_labelmap,
    folder_to_archive,
    labelmap_to_archive,
    labelmap_to_msk,
    load_nifti,
    nifti_files,
    nifti_to_segmask,
    read_nifti,
    segmask_to_nifti,
)
from .geometry import affine_to_space, effective_affine, resample_nearest, space_to_affine

__all__ = [
    "affine_to_space",
    "space_to_affine",
    "effective_affine",
    "read_nifti",
    "load_nifti",
    "nifti_to_segmask",
    "folder_to_archive",
    "labelmap_to_archive",
    "labelmap_to_msk",
    "segmask_to_nifti",
    "archive_to_folder",
    "archive_to_labelmap",
    "export_labelmap",
    "read_label_table",
    "resample_nearest",
    "safe_filename",
    "strip_suffix",
    "nifti_files",
    "MaskResampledWarning",
    "NIFTI_SUFFIXES",
]
