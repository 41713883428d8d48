"""Coverage of a case under a scheme: which classes are present, empty, not annotated.

Index-level, from voxel counts (``MaskArchive`` infos, ``medmask.stats`` rows, a
catalogue): a class is **present** when its masks hold voxels, **empty** when it is
annotated but has no voxels (a mask stored with zero voxels means "looked for, absent"),
and **not annotated** when the case has no mask for it (or, for a derived class, not for
all of its parts).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from enum import Enum

from .errors import VocabularyError
from .matching import COMPLETE, PARTIAL, SchemeMapping

__all__ = ["Coverage", "coverage"]


class Coverage(str, Enum):
    """The state of one class in one case."""

    PRESENT = "present"
    EMPTY = "empty"
    NOT_ANNOTATED = "not_annotated"


def coverage(
    mapping: SchemeMapping, voxels: Mapping[str, int], *, include_partial: bool = False
) -> dict[str, Coverage]:
    """Each class's coverage in one case, from the voxel counts of its masks.

    Args:
        mapping: The case's names mapped onto the scheme (``scheme.map(names)``).
        voxels: ``{mask name: voxel count}`` for (at least) the masks the mapping uses.
        include_partial: Count a derived class of which some parts are missing as
            annotated (its present parts decide present/empty); default: not annotated.

    Returns:
        ``{class name: Coverage}`` in the scheme's order.

    Raises:
        VocabularyError: A mask the mapping uses has no voxel count, or a count is not a
            non-negative integer.
    """
    ok = (COMPLETE, PARTIAL) if include_partial else (COMPLETE,)
    out: dict[str, Coverage] = {}
    for cls in mapping.classes:
        if cls.status not in ok:
            out[cls.name] = Coverage.NOT_ANNOTATED
            continue
        total = 0
        for name in cls.sources:
            if name not in voxels:
                raise VocabularyError(
                    f"coverage of {cls.name!r}: no voxel count for its mask {name!r}"
                )
            count = voxels[name]
            if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
                raise VocabularyError(
                    f"coverage of {cls.name!r}: voxel count of {name!r} must be a "
                    f"non-negative integer, got {count!r}"
                )
            total += int(count)
        out[cls.name] = Coverage.PRESENT if total else Coverage.EMPTY
    return out
