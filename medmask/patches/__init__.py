"""What patch training needs that is not torch: crop centres from an archive's index, exact
foreground draws, nnU-Net-style coordinates, image files read by window, and image conversion.

The loaders built on it live in :mod:`medmask_monai` (``PatchDataset``,
``RandCropByMaskIndexd``); see ``docs/training.md``.
"""

from .cache import ByteLRU
from .cases import PatchCase, archive_offset, as_case
from .coords import (
    StaleCoordsWarning,
    coords_count,
    coords_path,
    load_foreground_coords,
    save_foreground_coords,
)
from .images import ImageSource, open_image
from .policy import (
    ANYWHERE,
    BACKGROUND,
    CLASS,
    FOREGROUND,
    CentrePolicy,
    Choice,
    ClassRatios,
    NnUNetPolicy,
    PosNeg,
)
from .sampler import FOREGROUND_MODES, CaseIndex, Centre, CentreSampler, patch_box
from .voxels import MaskVoxels

__all__ = [
    "PatchCase",
    "as_case",
    "archive_offset",
    "ByteLRU",
    "MaskVoxels",
    "CentrePolicy",
    "Choice",
    "PosNeg",
    "ClassRatios",
    "NnUNetPolicy",
    "CLASS",
    "FOREGROUND",
    "BACKGROUND",
    "ANYWHERE",
    "CaseIndex",
    "Centre",
    "CentreSampler",
    "FOREGROUND_MODES",
    "patch_box",
    "coords_count",
    "coords_path",
    "save_foreground_coords",
    "load_foreground_coords",
    "StaleCoordsWarning",
    "ImageSource",
    "open_image",
]
