"""Telling an image (CT, MR, PET...) from a mask or label map, for messages: an image in a
folder of masks is refused with "it looks like an image", never packed as a mask, and never
answered with advice (``--binarize``) that would pack it as one."""

from __future__ import annotations

import re

import numpy as np

__all__ = ["looks_like_image", "image_name", "MANY_VALUES"]

#: More distinct values than this is an image's intensity scale, not a label map's labels
#: (TotalSegmentator's largest map holds 117 labels).
MANY_VALUES = 255
#: With more than this many distinct values, a volume mostly non-zero is an image too (a
#: label map is mostly background).
SOME_VALUES = 32
#: Voxels sampled to count distinct values and the non-zero share (a strided sample).
_SAMPLE = 1_000_000

#: File name words that name an image, not a mask: modalities and sequences, ``image``,
#: and nnU-Net's channel suffix (``case_0000``).
_IMAGE_WORDS = (
    "t1",
    "t1w",
    "t1c",
    "t1ce",
    "t1gd",
    "t2",
    "t2w",
    "flair",
    "dwi",
    "adc",
    "pd",
    "pdw",
    "swi",
    "bold",
    "pet",
    "ct",
    "cta",
    "mr",
    "mri",
    "image",
    "img",
    "volume",
    "scan",
)
_MASK_WORDS = ("mask", "seg", "segmentation", "label", "labels", "labelmap", "roi")
_NNUNET_CHANNEL = re.compile(r"_\d{4}$")


def image_name(name: str) -> bool:
    """Whether a file name names an image: a word such as ``t1``, ``t2``, ``flair``, ``ct``,
    ``image`` (``sub-01_T1w``, ``ct``, ``image``), or nnU-Net's channel suffix ``_0000``;
    never a name that also says mask/seg/label (``t1_mask``).

    Args:
        name: The file name (suffixes such as ``.nii.gz`` are ignored).

    Returns:
        ``True`` for an image's name.
    """
    stem = name.lower().split(".", 1)[0]
    words = set(re.split(r"[^a-z0-9]+", stem))
    if words & set(_MASK_WORDS):
        return False
    return bool(words & set(_IMAGE_WORDS)) or bool(_NNUNET_CHANNEL.search(stem))


def _distinct_and_nonzero(data: np.ndarray) -> tuple[int, float]:
    """Distinct values and the share of non-zero voxels, in a strided sample."""
    sample = data.ravel()[:: max(1, data.size // _SAMPLE)]
    nonzero = float(np.count_nonzero(sample)) / max(1, sample.size)
    if sample.dtype.kind in "ub" and sample.dtype.itemsize <= 2:
        return int(np.count_nonzero(np.bincount(sample.view(f"u{sample.dtype.itemsize}")))), nonzero
    return int(np.unique(sample).size), nonzero


def looks_like_image(data: np.ndarray, name: str | None = None) -> str | None:
    """Why an array looks like an image rather than a mask or a label map, or ``None``.

    Signs: non-finite, negative or fractional values; a value range over 1000 (CT
    intensities); more than :data:`MANY_VALUES` distinct values; more than
    :data:`SOME_VALUES` distinct values with most voxels non-zero; a file name that names an
    image (:func:`image_name`) holding more than two values.

    Args:
        data: The voxels.
        name: The file name, when there is one.

    Returns:
        The reasons and what to do, as the end of a message (``"... : it looks like an
        image (a CT or MR volume), not a mask; ..."``), or ``None``.
    """
    if not data.size:
        return None
    lo, hi = float(data.min()), float(data.max())
    if data.dtype.kind == "f" and (not np.isfinite(lo) or not np.isfinite(hi)):
        return "it holds non-finite values"
    reasons = []
    if lo < 0:
        reasons.append(f"negative values (min {lo:g})")
    if data.dtype.kind == "f":
        sample = data.ravel()[:: max(1, data.size // 100_000)]
        if np.any(sample != np.round(sample)):
            reasons.append("fractional values")
    if hi - lo > 1000:
        reasons.append(f"a value range of {lo:g}..{hi:g}")
    if not reasons and hi > 1:
        distinct, nonzero = _distinct_and_nonzero(data)
        if distinct > MANY_VALUES:
            reasons.append(f"{distinct} distinct values (0..{hi:g})")
        elif distinct > SOME_VALUES and nonzero > 0.5:
            reasons.append(f"{distinct} distinct values in {nonzero:.0%} of its voxels")
        elif name is not None and distinct > 2 and image_name(name):
            reasons.append(f"an image's name ({name!r}) and {distinct} distinct values")
    if not reasons:
        return None
    return (
        " and ".join(reasons)
        + ": it looks like an image (a CT or MR volume), not a mask; pack the masks "
        "(e.g. CASE/segmentations/ or the label map), not the image"
    )
