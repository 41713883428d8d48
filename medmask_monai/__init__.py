"""MONAI integration for medmask: readers, transforms, datasets and patch training.

``from medmask_monai import MaskReader, LoadMask, LoadMaskd, SelectLabels, SelectLabelsd,
MaskArchiveDataset, PatchDataset, RandCropByMaskIndex, RandCropByMaskIndexd``

Needs the ``monai`` extra (torch, monai, nibabel; the ``patches`` extra adds blosc2 and zarr
for image files read by window). Imports ``medmask``; the core never imports this package.
"""

from ._load import MissingNameWarning
from .crops import RandCropByMaskIndex, RandCropByMaskIndexd
from .dataset import MaskArchiveDataset
from .patches import PatchDataset
from .reader import MaskReader
from .transforms import LoadMask, LoadMaskd, SelectLabels, SelectLabelsd

__all__ = [
    "MaskReader",
    "LoadMask",
    "LoadMaskd",
    "SelectLabels",
    "SelectLabelsd",
    "MaskArchiveDataset",
    "PatchDataset",
    "RandCropByMaskIndex",
    "RandCropByMaskIndexd",
    "MissingNameWarning",
]
