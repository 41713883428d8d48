"""NIfTI conversion (compatibility module; needs the ``nifti`` extra: nibabel).

The code lives in :mod:`medmask.conversions.nifti` (NIfTI I/O and workflows),
:mod:`medmask.conversions.labels` (label tables), :mod:`medmask.conversions.names`
(safe file names) and :mod:`medmask.geometry` (affine <-> Space, MONAI's header rule,
resampling). This module re-exports the names it always had, so that existing code
keeps working; it holds no code and no list of its own beyond the names it adds.

Example:
    >>> from medmask.nifti import folder_to_archive, archive_to_folder   # doctest: +SKIP
    >>> folder_to_archive("s0000/segmentations", "s0000.mska")          # doctest: +SKIP
    >>> archive_to_folder("s0000.mska", "restored/")                    # doctest: +SKIP
"""

from __future__ import annotations

from .conversions.labels import read_label_table
from .conversions.names import safe_filename, strip_suffix
from .conversions.nifti import *  # noqa: F403 - the compatibility module re-exports them all
from .conversions.nifti import __all__ as _nifti_all
from .geometry import affine_to_space, effective_affine, resample_nearest, space_to_affine

__all__ = [
    *_nifti_all,
    "affine_to_space",
    "space_to_affine",
    "effective_affine",
    "resample_nearest",
    "read_label_table",
    "safe_filename",
    "strip_suffix",
]
