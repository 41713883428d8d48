"""medmask: compact, checksummed, random-access storage for segmentation masks.

Core API::

    from medmask import (LabelMapping, SegmentationMask, MaskFile, MaskArchive,
                         save_mask, load_mask, match_allowed_values)

The core needs only numpy, zstandard and spacetransformer-core. NIfTI conversion
(:mod:`medmask.nifti`) needs nibabel; MONAI integration lives in ``medmask_monai``.
"""

from . import stats  # callable module: medmask.stats(paths); pandas imported on use
from ._upcalls import provide
from ._version import __version__
from .codecs import available_codecs, get_codec, register_codec
from .errors import (
    ArchiveLockedError,
    CorruptFileError,
    ForeignFileError,
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


# -- upward calls (medmask._upcalls): the package root, above every layer, plugs in the work
# that lower layers' methods hand upwards, so that no module imports a layer above its own.
def _segmask_png(segmask: SegmentationMask) -> bytes:
    from .viz import segmask_png  # numpy only; imported when a notebook first asks

    return segmask_png(segmask)


def _archive_html(archive: MaskArchive) -> str:
    from .viz import archive_html

    return archive_html(archive)


provide(SegmentationMask, save=save_mask, load=load_mask, _repr_png_=_segmask_png)
provide(MaskArchive, _repr_html_=_archive_html)

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
    "ForeignFileError",
    "MaskNotFoundError",
    "ArchiveLockedError",
    "__version__",
]
