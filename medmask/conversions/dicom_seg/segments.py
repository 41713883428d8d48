"""One mask per segment of a SEG, built from its frames: the jobs that
:func:`~medmask.conversions.common.records_to_archive` runs on the case's threads.

A BINARY or FRACTIONAL segment is built from its own frames only (read from the file as a
stream), straight into the box of the grid that holds its voxels: empty slices and margins
are never allocated, and a segment without frames costs nothing. A LABELMAP SEG's frames
are painted once into one label volume that its segments compare against.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from ..common import MaskRecord
from .frames import Frames

__all__ = ["binary_segment", "LabelVolume", "frame_runs", "frame_values"]

#: Frames read at once when a whole SEG is scanned (its values, a label volume).
CHUNK_FRAMES = 64


def frame_runs(idx: np.ndarray) -> list[tuple[int, int]]:
    """``[(first, end), ...]``: the runs of consecutive frame numbers in sorted ``idx``."""
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [idx.size]])
    return [(int(idx[s]), int(idx[e - 1]) + 1) for s, e in zip(starts, ends, strict=True)]


#: The attributes of a segment, or a function that reads them (on the job's thread).
Attrs = dict | Callable[[], dict]


def _attrs(attrs: Attrs) -> dict:
    return attrs() if callable(attrs) else attrs


def _empty(name: str, attrs: dict) -> MaskRecord:
    return MaskRecord(name, np.zeros((0, 0, 0), bool), attrs, origin=(0, 0, 0))


def binary_segment(
    name: str,
    attrs: Attrs,
    frames: Frames,
    idx: np.ndarray,
    z_of: np.ndarray,
    bits: int,
    cut: int,
) -> Callable[[], MaskRecord]:
    """The job that builds one BINARY/FRACTIONAL segment as a boxed record.

    Args:
        name: The mask name.
        attrs: Its attributes (or a function that reads them).
        frames: The SEG's frame reader.
        idx: The segment's frame numbers, sorted.
        z_of: The grid slice of every frame of the SEG.
        bits: BitsAllocated (1: bit-packed).
        cut: The smallest stored value inside the segment (FRACTIONAL).

    Returns:
        A function returning the record: the box of the grid holding the segment's
        voxels (repeated frames of one slice: their union), or an empty record.
    """

    def build() -> MaskRecord:
        blocks = []
        for i0, i1 in frame_runs(idx):
            block = frames(i0, i1)
            hit = block.view(bool) if bits == 1 else block >= cut
            set_frames = hit.reshape(i1 - i0, -1).any(axis=1)
            if set_frames.any():
                blocks.append((z_of[i0:i1][set_frames], hit[set_frames]))
        if not blocks:
            return _empty(name, _attrs(attrs))
        plane = np.zeros(blocks[0][1].shape[1:], bool)
        for _zs, hit in blocks:
            plane |= hit.any(axis=0)
        ys, xs = np.flatnonzero(plane.any(axis=1)), np.flatnonzero(plane.any(axis=0))
        y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
        z0 = min(int(zs.min()) for zs, _h in blocks)
        z1 = max(int(zs.max()) for zs, _h in blocks) + 1
        box = np.zeros((z1 - z0, y1 - y0, x1 - x0), bool)
        for zs, hit in blocks:
            rel = zs - z0
            sub = hit[:, y0:y1, x0:x1]
            if np.unique(rel).size == rel.size:
                box[rel] |= sub
            else:  # several frames of the segment on one slice: their union
                np.logical_or.at(box, rel, sub)
        return MaskRecord(name, box, _attrs(attrs), origin=(z0, y0, x0))

    return build


def frame_values(frames: Frames, nframes: int) -> np.ndarray:
    """The distinct stored values of every frame, scanned a chunk at a time."""
    seen: set[int] = set()
    for i0 in range(0, nframes, CHUNK_FRAMES):
        seen.update(np.unique(frames(i0, min(nframes, i0 + CHUNK_FRAMES))).tolist())
    return np.array(sorted(seen), np.int64)


class LabelVolume:
    """The label volume of a LABELMAP SEG, painted from its frames on first use (once,
    whichever thread asks first) and dropped by :meth:`close`.

    Args:
        frames: The SEG's frame reader.
        nframes: Frames.
        shape: The grid ``(z, y, x)``.
        z_of: The grid slice of every frame.
        bits: BitsAllocated (8 or 16).
    """

    def __init__(
        self, frames: Frames, nframes: int, shape: tuple[int, ...], z_of: np.ndarray, bits: int
    ) -> None:
        self._args = (frames, nframes, shape, z_of, bits)
        self._lock = threading.Lock()
        self._volume: np.ndarray | None = None

    def get(self) -> np.ndarray:
        """The volume (built on the first call)."""
        with self._lock:
            if self._volume is None:
                frames, nframes, shape, z_of, bits = self._args
                lab = np.zeros(shape, np.uint16 if bits > 8 else np.uint8)
                for i0 in range(0, nframes, CHUNK_FRAMES):
                    i1 = min(nframes, i0 + CHUNK_FRAMES)
                    lab[z_of[i0:i1]] = frames(i0, i1)
                self._volume = lab
            return self._volume

    def segment(self, name: str, attrs: Attrs, number: int) -> Callable[[], MaskRecord]:
        """The job that builds segment ``number`` as a whole-grid record."""
        return lambda: MaskRecord(name, self.get() == number, _attrs(attrs))

    def close(self) -> None:
        """Drop the volume (it is painted again if asked for)."""
        with self._lock:
            self._volume = None
