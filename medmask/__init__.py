"""medmask: compact, checksummed, random-access storage for segmentation masks.

Core API::

    from medmask import (LabelMapping, SegmentationMask, MaskFile, MaskArchive,
                         save_mask, load_mask, match_allowed_values)

The core needs only numpy, zstandard and spacetransformer-core. NIfTI conversion
(:mod:`medmask.nifti`) needs nibabel; MONAI integration lives in ``medmask_monai``.
"""

from . import stats  # callable module: medmask.stats(paths); pandas imported on use
from .codecs import available_codecs, get_codec, register_codec
from .errors import (
    ArchiveLockedError,
    CorruptFileError,
    MaskNotFoundError,
    MaskValidationError,
    MedMaskError,
    SpaceMismatchError,
    UnsupportedFormatError,
)
from .mapping import LabelMapping
from .ops import match_allowed_values
from .segmask import SegmentationMask
from .storage import MaskArchive, MaskFile, MaskInfo, load_mask, save_mask

__version__ = "0.4.0"

__all__ = [
    "LabelMapping",
    "SegmentationMask",
    "MaskFile",
    "MaskArchive",
    "MaskInfo",
    "save_mask",
    "load_mask",
    "match_allowed_values",
    "stats",
    "available_codecs",
    "get_codec",
    "register_codec",
    "MedMaskError",
    "MaskValidationError",
    "SpaceMismatchError",
    "CorruptFileError",
    "UnsupportedFormatError",
    "MaskNotFoundError",
    "ArchiveLockedError",
    "__version__",
]
