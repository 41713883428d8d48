"""Before a benchmark times anything, medmask's output must equal its peer's: a speed-up of
a wrong answer is no speed-up. These checks raise (they are not ``assert``: they also run
under ``python -O``) and stop the benchmark with a message naming what differs."""

from __future__ import annotations

import numpy as np


class OutputsDiffer(AssertionError):
    """medmask's output and its peer's (or the source's) are not the same."""


def require(ok: bool, what: str) -> None:
    """Raise :class:`OutputsDiffer` with ``what`` unless ``ok``."""
    if not ok:
        raise OutputsDiffer(f"{what}: not timed, the outputs differ")


def require_equal(what: str, got, expected) -> None:
    """``got`` and ``expected`` (arrays, or anything ``np.asarray`` takes) have the same shape
    and values (a boolean and a 0/1 integer array of the same voxels are equal).

    Raises:
        OutputsDiffer: A different shape, or the number of voxels that differ.
    """
    a, b = np.asarray(got), np.asarray(expected)
    if a.shape != b.shape:
        raise OutputsDiffer(f"{what}: shape {a.shape} against {b.shape}: not timed")
    if a.dtype == bool or b.dtype == bool:
        a, b = a != 0, b != 0
    differ = int(np.count_nonzero(a != b))
    if differ:
        raise OutputsDiffer(f"{what}: {differ} of {a.size} values differ: not timed")
