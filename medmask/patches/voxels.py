"""One mask's voxels, packed, for exact uniform draws and membership tests.

A mask's bounding-box crop is kept with its x rows bit-packed (one bit per voxel) and the
running count of set voxels per row. A uniform draw over the mask's voxels is then a random
integer, a binary search over the rows and one row unpacked: a few microseconds, exact (every
voxel equally likely, every draw a voxel of the mask), and the packed rows take an eighth of
the box in bytes. nnU-Net's precomputed coordinates (:mod:`.coords`) are the alternative.
"""

from __future__ import annotations

import numpy as np

from ..bbox import BBox
from ..errors import MaskValidationError

__all__ = ["MaskVoxels", "popcount_rows"]

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount_rows(packed: np.ndarray) -> np.ndarray:
    """Set bits of each row of a ``(z, y, bytes)`` packed array, as ``(z * y,)`` int64."""
    if hasattr(np, "bitwise_count"):  # NumPy >= 2.0
        bits = np.bitwise_count(packed)
    else:  # pragma: no cover - NumPy 1.x
        bits = _POPCOUNT[packed]
    return bits.sum(axis=2, dtype=np.int64).ravel()


class MaskVoxels:
    """The voxels of one mask: draw them uniformly, or ask whether a voxel is one.

    Args:
        crop: The mask's bounding-box crop (``(z, y, x)``; non-zero voxels are the mask).
        box: Its half-open box ``(z0, z1, y0, y1, x0, x1)`` on the grid.
        name: The mask's name, for messages.

    Raises:
        MaskValidationError: The crop has no voxel (nothing to draw), or its shape is not
            the box's.
    """

    def __init__(self, crop: np.ndarray, box: BBox, name: str = "mask") -> None:
        crop = np.asarray(crop)
        shape = (box[1] - box[0], box[3] - box[2], box[5] - box[4])
        if crop.ndim != 3 or crop.shape != shape:
            raise MaskValidationError(
                f"crop of shape {crop.shape} does not fill its box {tuple(box)}", mask=name
            )
        bits = crop if crop.dtype == np.bool_ else crop != 0
        self.name = name
        self.box = tuple(int(v) for v in box)
        self.packed = np.packbits(bits, axis=2)
        self.cum = np.cumsum(popcount_rows(self.packed))
        if self.cum.size == 0 or self.cum[-1] == 0:
            raise MaskValidationError(
                "the mask has no voxels: no foreground centre can be drawn from it", mask=name
            )

    @property
    def total(self) -> int:
        """Number of voxels of the mask."""
        return int(self.cum[-1])

    @property
    def nbytes(self) -> int:
        """Bytes held (packed rows and running counts)."""
        return int(self.packed.nbytes + self.cum.nbytes)

    def voxel(self, k: int) -> tuple[int, int, int]:
        """The ``k``-th voxel of the mask in ``(z, y, x)`` raster order, on the grid.

        Raises:
            IndexError: ``k`` is not in ``[0, total)``.
        """
        if not 0 <= k < self.total:
            raise IndexError(f"voxel {k} of a mask of {self.total} voxels")
        row = int(np.searchsorted(self.cum, k, side="right"))
        before = int(self.cum[row - 1]) if row else 0
        z, y = divmod(row, self.packed.shape[1])
        x = int(np.flatnonzero(np.unpackbits(self.packed[z, y]))[k - before])
        return self.box[0] + z, self.box[2] + y, self.box[4] + x

    def draw(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """A voxel of the mask, every voxel equally likely: ``(z, y, x)`` on the grid."""
        return self.voxel(int(rng.integers(self.total)))

    def sample(self, rng: np.random.Generator, k: int) -> np.ndarray:
        """``min(k, total)`` distinct voxels drawn uniformly, as ``(n, 3)`` int32 ``(z, y, x)``."""
        n = min(int(k), self.total)
        picks = np.sort(rng.choice(self.total, size=n, replace=False))
        rows = np.searchsorted(self.cum, picks, side="right")
        out = np.empty((n, 3), np.int32)
        ny = self.packed.shape[1]
        for row in np.unique(rows):
            sel = rows == row
            before = int(self.cum[row - 1]) if row else 0
            z, y = divmod(int(row), ny)
            xs = np.flatnonzero(np.unpackbits(self.packed[z, y]))[picks[sel] - before]
            out[sel] = np.column_stack(
                [
                    np.full(xs.size, self.box[0] + z),
                    np.full(xs.size, self.box[2] + y),
                    xs + self.box[4],
                ]
            )
        return out

    def __contains__(self, zyx: object) -> bool:
        """Whether grid voxel ``(z, y, x)`` belongs to the mask."""
        z, y, x = zyx  # type: ignore[misc]
        b = self.box
        if not (b[0] <= z < b[1] and b[2] <= y < b[3] and b[4] <= x < b[5]):
            return False
        dx = x - b[4]
        return bool((self.packed[z - b[0], y - b[2], dx >> 3] >> (7 - (dx & 7))) & 1)

    def __repr__(self) -> str:
        return f"MaskVoxels({self.name!r}, {self.total:,} voxels, box {self.box})"
