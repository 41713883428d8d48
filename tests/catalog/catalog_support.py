"""Helpers of the catalogue tests: phantom archives of two 'datasets' with different names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medmask import MaskArchive, SegmentationMask
from medmask.phantoms import phantom_case

SHAPE = (12, 20, 24)
#: dataset A's names (TotalSegmentator's) and dataset B's spellings of some of them
A_NAMES = {"liver": "liver", "spleen": "spleen", "kidney_left": "kidney_left",
           "kidney_right": "kidney_right", "gallbladder": "gallbladder"}  # fmt: skip
B_NAMES = {"liver": "Liver", "kidney_left": "left kidney", "kidney_right": "right kidney"}


def write_archive(path: Path, seed: int, names: dict[str, str], **kw) -> dict[str, np.ndarray]:
    """A phantom case stored under ``names`` (phantom organ -> stored name); returns the
    stored arrays by stored name."""
    masks, space = phantom_case(seed, SHAPE, organs=list(names))
    annotated = kw.pop("annotated", None)
    with MaskArchive(path, "w", space=space, **kw) as ar:
        for organ, stored in names.items():
            ar.add(stored, SegmentationMask(masks[organ], {stored: 1}, space))
        if annotated is not None:
            ar.set_archive_attrs({"annotated": annotated})
    return {names[o]: masks[o] for o in names}
