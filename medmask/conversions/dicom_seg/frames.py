"""The frames of a DICOM SEG: where each one lies (plane positions, orientation, pixel
spacing, the segment it belongs to). Their pixels are read by :mod:`.pixels`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...spaces import GRID_ATOL
from .base import _err, _floats

__all__ = ["FrameGeometry", "frame_geometry", "Frames"]

#: ``frames(i0, i1)``: the pixels of frames ``i0 .. i1 - 1`` as ``(frames, rows, columns)``.
Frames = Callable[[int, int], np.ndarray]


def _first(ds, keyword: str):
    seq = ds.get(keyword)
    return seq[0] if seq else None


def _fg(ds, i: int, keyword: str, shared_only: bool = False):
    """The functional group item ``keyword`` of frame ``i`` (per-frame, else shared)."""
    per = None if shared_only else ds.get("PerFrameFunctionalGroupsSequence")
    if per is not None and i < len(per):
        item = _first(per[i], keyword)
        if item is not None:
            return item
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        return _first(shared[0], keyword)
    return None


_IPP_EXPLICIT = re.compile(rb"\x20\x00\x32\x00DS(..)", re.S)
_IPP_IMPLICIT = re.compile(rb"\x20\x00\x32\x00(....)", re.S)
_RSN_EXPLICIT = re.compile(rb"\x62\x00\x0b\x00US\x02\x00(..)", re.S)
_RSN_IMPLICIT = re.compile(rb"\x62\x00\x0b\x00\x02\x00\x00\x00(..)", re.S)


def _frame_meta_fast(
    ds, nframes: int, need_segments: bool
) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """Plane positions and segment numbers of every frame, and whether pixel spacing is
    absent per frame, scanned from the raw bytes of
    the per-frame functional groups (pydicom's element-by-element parse costs ~0.5 s for a
    thousand frames). ``None`` when the fast path does not apply or its result does not
    check out (one position and one segment number per frame); callers then parse with
    pydicom."""
    try:
        el = ds.get_item(0x52009230)
    except KeyError:
        return None
    raw = getattr(el, "value", None)
    if not isinstance(raw, bytes):
        return None
    ts = str(ds.file_meta.get("TransferSyntaxUID", ""))
    if ts == "1.2.840.10008.1.2.2":  # big endian: not worth a fast path
        return None
    implicit = ts == "1.2.840.10008.1.2"
    if b"\x20\x00\x37\x00" in raw:  # per-frame orientations: checked frame by frame
        return None
    ipp = list((_IPP_IMPLICIT if implicit else _IPP_EXPLICIT).finditer(raw))
    if len(ipp) != nframes:
        return None
    pos = np.empty((nframes, 3))
    for i, m in enumerate(ipp):
        n = int.from_bytes(m.group(1), "little")
        try:
            vals = [float(v) for v in raw[m.end() : m.end() + n].decode("ascii").split("\\")]
        except (UnicodeDecodeError, ValueError):
            return None
        if len(vals) != 3:
            return None
        pos[i] = vals
    if not np.all(np.isfinite(pos)):
        return None
    seg = np.zeros(nframes, np.int64)
    if need_segments:
        rsn = list((_RSN_IMPLICIT if implicit else _RSN_EXPLICIT).finditer(raw))
        if len(rsn) != nframes:
            return None
        seg[:] = [int.from_bytes(m.group(1), "little") for m in rsn]
    # the third item: orientation and pixel measures are shared (absent per frame)
    return pos, seg, b"\x28\x00\x30\x00" not in raw


@dataclass
class FrameGeometry:
    """Where the frames of a SEG lie.

    Attributes:
        positions: ``(frames, 3)`` ImagePositionPatient of each frame.
        segment_of: The segment number of each frame (zeros for a LABELMAP SEG).
        orientation: ImageOrientationPatient (six direction cosines, shared by all frames).
        pixel_spacing: PixelSpacing (row spacing, column spacing).
        between: SpacingBetweenSlices, when given.
    """

    positions: np.ndarray
    segment_of: np.ndarray
    orientation: np.ndarray
    pixel_spacing: np.ndarray
    between: float | None


def frame_geometry(path: object, ds, nframes: int, labelmap: bool) -> FrameGeometry:
    """The geometry of every frame: the fast byte scan when it applies, else pydicom.

    Raises:
        MaskValidationError: No orientation or pixel spacing, a frame without a plane
            position, another orientation, or (not ``labelmap``) no segment number.
    """
    fast = _frame_meta_fast(ds, nframes, not labelmap)
    shared_only = fast is not None and fast[2]
    ori = None
    item = _fg(ds, 0, "PlaneOrientationSequence", shared_only)
    if item is not None:
        ori = _floats(item.get("ImageOrientationPatient", []), 6)
    if ori is None:
        raise _err(
            path,
            "no ImageOrientationPatient (PlaneOrientationSequence)",
            "medmask needs a SEG on a patient grid",
        )
    pm = _fg(ds, 0, "PixelMeasuresSequence", shared_only)
    ps = _floats(pm.get("PixelSpacing", []), 2) if pm is not None else None
    if ps is None:
        raise _err(path, "no PixelSpacing (PixelMeasuresSequence)")
    between = None
    if pm is not None and pm.get("SpacingBetweenSlices") not in (None, ""):
        between = float(pm.SpacingBetweenSlices)
    if fast is not None:
        positions, seg_of = fast[0], fast[1]
    else:
        positions, seg_of = _frames_parsed(path, ds, nframes, ori, labelmap)
    return FrameGeometry(positions, seg_of, ori, ps, between)


def _frames_parsed(
    path: object, ds, nframes: int, ori: np.ndarray, labelmap: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Plane positions and segment numbers, parsed frame by frame with pydicom."""
    positions = np.empty((nframes, 3))
    seg_of = np.zeros(nframes, np.int64)
    for i in range(nframes):
        pp = _fg(ds, i, "PlanePositionSequence")
        p = _floats(pp.get("ImagePositionPatient", []), 3) if pp is not None else None
        if p is None:
            raise _err(
                path,
                f"frame {i + 1} has no ImagePositionPatient (PlanePositionSequence)",
                "a SEG without plane positions cannot be placed on a grid",
            )
        if i > 0:
            o = _fg(ds, i, "PlaneOrientationSequence")
            if (
                o is not None
                and np.abs(_floats(o.get("ImageOrientationPatient", []), 6) - ori).max() > GRID_ATOL
            ):
                raise _err(path, f"frame {i + 1} has another orientation")
        positions[i] = p
        if not labelmap:
            si = _fg(ds, i, "SegmentIdentificationSequence")
            if si is None or "ReferencedSegmentNumber" not in si:
                raise _err(path, f"frame {i + 1} names no segment (SegmentIdentificationSequence)")
            seg_of[i] = int(si.ReferencedSegmentNumber)
    return positions, seg_of
