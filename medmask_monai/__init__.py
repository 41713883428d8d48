"""MONAI integration for medmask: readers, transforms and a dataset.

``from medmask_monai import MaskReader, LoadMask, LoadMaskd, SelectLabels, SelectLabelsd, MaskArchiveDataset``

Needs the ``monai`` extra (torch, monai, nibabel). Imports ``medmask``; the core
never imports this package.
"""

from ._load import MissingNameWarning
from .dataset import MaskArchiveDataset
from .reader import MaskReader
from .transforms import LoadMask, LoadMaskd, SelectLabels, SelectLabelsd

__all__ = [
    "MaskReader",
    "LoadMask",
    "LoadMaskd",
    "SelectLabels",
    "SelectLabelsd",
    "MaskArchiveDataset",
    "MissingNameWarning",
]
