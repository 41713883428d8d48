"""Reading DICOM SEG (BINARY, FRACTIONAL, LABELMAP) into mask records; see
:mod:`medmask.conversions.dicom_seg`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import MaskValidationError
from ...spaces import Space
from ..common import MAX_SEGMENTS, MAX_VOXELS, MaskRecord, NeedsOptionError
from ..names import unique_names
from .base import LABELMAP_SEG_SOP_CLASS, SEG_SOP_CLASS, _err, _pydicom, cielab_to_rgb
from .frames import FrameGeometry, Frames, _first, frame_geometry, pixel_frames
from .series import _space_index, _stack_geometry, read_series_geometry


# -- reading ------------------------------------------------------------------------------
@dataclass
class DicomSeg:
    """A DICOM SEG read by :func:`read_dicom_seg`.

    Attributes:
        space: The ``(z, y, x)`` LPS grid.
        records: One record per segment (a lazy iterator: arrays are built one by one).
        names: Segment names, in segment-number order.
        renamed: ``{new name: name in the file}`` for names made unique.
        seg_type: ``BINARY``, ``FRACTIONAL`` or ``LABELMAP``.
        notes: Things worth reporting (filled slices, thresholds).
    """

    space: Space
    records: Iterator[MaskRecord]
    names: list[str]
    renamed: dict[str, str] = field(default_factory=dict)
    seg_type: str = "BINARY"
    notes: list[str] = field(default_factory=list)


def _code(item) -> dict | None:
    if item is None or "CodeValue" not in item and "LongCodeValue" not in item:
        return None
    value = item.get("CodeValue") or item.get("LongCodeValue") or ""
    return {
        "scheme": str(item.get("CodingSchemeDesignator", "")),
        "value": str(value),
        "meaning": str(item.get("CodeMeaning", "")),
    }


def _segment_attrs(seg) -> dict:
    attrs: dict = {"label_value": int(seg.SegmentNumber)}
    for key, kw in (
        ("category", "SegmentedPropertyCategoryCodeSequence"),
        ("type", "SegmentedPropertyTypeCodeSequence"),
    ):
        c = _code(_first(seg, kw))
        if c:
            attrs[key] = c
    t = _first(seg, "SegmentedPropertyTypeCodeSequence")
    if t is not None:
        c = _code(_first(t, "SegmentedPropertyTypeModifierCodeSequence"))
        if c:
            attrs["type_modifier"] = c
    r = _first(seg, "AnatomicRegionSequence")
    if r is not None:
        c = _code(r)
        if c:
            attrs["region"] = c
        c = _code(_first(r, "AnatomicRegionModifierSequence"))
        if c:
            attrs["region_modifier"] = c
    if "RecommendedDisplayCIELabValue" in seg:
        lab = list(seg.RecommendedDisplayCIELabValue)
        if len(lab) == 3:
            attrs["color"] = cielab_to_rgb(lab)
    if seg.get("SegmentDescription"):
        attrs["description"] = str(seg.SegmentDescription)
    if seg.get("SegmentAlgorithmType"):
        attrs["algorithm_type"] = str(seg.SegmentAlgorithmType)
    return attrs


def read_dicom_seg(
    path: str | os.PathLike,
    *,
    threshold: float | None = None,
    reference: str | os.PathLike | None = None,
) -> DicomSeg:
    """Read a DICOM SEG as mask records (one per segment, overlaps kept).

    Args:
        path: The SEG file.
        threshold: For a truly fractional SEG: a voxel belongs to a segment when its value
            is at least ``threshold`` times the maximum (0 < T <= 1).
        reference: A folder holding the SEG's source series: the masks are placed on its
            full grid (for SEGs that cover only some slices).

    Returns:
        A :class:`DicomSeg` (its ``records`` are built lazily, one segment at a time).

    Raises:
        MaskValidationError: Not a SEG, a truly fractional SEG without ``threshold``,
            frames without plane positions or orientation, irregular spacing, frames not
            on the reference's grid, a reference that is not the SEG's series, or a header
            declaring more voxels/segments than allowed.
    """
    path = Path(path)
    seg = _open(path)
    geometry = frame_geometry(path, seg.ds, seg.nframes, seg.seg_type == "LABELMAP")
    notes: list[str] = []
    space, z_of = _place(seg, geometry, reference, notes)
    numbers = [int(s.SegmentNumber) for s in seg.segments]
    if len(set(numbers)) != len(numbers):
        raise _err(path, f"SegmentNumber values repeat ({numbers[:10]})")
    names, changed = unique_names(
        [str(s.get("SegmentLabel", "")) for s in seg.segments], empty="segment"
    )
    renamed = {names[k]: old for k, old in changed.items()}
    frames = pixel_frames(path, seg.ds, seg.rows, seg.cols, seg.nframes)
    cut = _cut(seg, frames, threshold, notes)
    records = _records(seg, names, frames, space, z_of, geometry.segment_of, cut)
    return DicomSeg(space, records, names, renamed, seg.seg_type, notes)


@dataclass
class _Seg:
    """A SEG's dataset and what its header says (checked)."""

    path: Path
    ds: object
    seg_type: str
    rows: int
    cols: int
    nframes: int
    segments: list  # the SegmentSequence items that are masks (no LABELMAP background)


def _open(path: Path) -> _Seg:
    """Read a SEG's dataset and check its header.

    Raises:
        MaskValidationError: Not readable DICOM, not a Segmentation, another
            SegmentationType, frame counts or sizes out of range, no (or too many) segments.
    """
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types
        raise MaskValidationError(
            f"{path}: not a readable DICOM file ({type(exc).__name__}: {exc})"
        ) from None
    sop = str(ds.get("SOPClassUID", ""))
    if sop not in (SEG_SOP_CLASS, LABELMAP_SEG_SOP_CLASS):
        raise _err(path, f"SOP class {sop or 'missing'} is not a DICOM Segmentation")
    seg_type = str(ds.get("SegmentationType", "LABELMAP" if sop == LABELMAP_SEG_SOP_CLASS else ""))
    if sop == LABELMAP_SEG_SOP_CLASS:
        seg_type = "LABELMAP"
    if seg_type not in ("BINARY", "FRACTIONAL", "LABELMAP"):
        raise _err(path, f"SegmentationType {seg_type!r} is not BINARY, FRACTIONAL or LABELMAP")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        nframes = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, ValueError, TypeError):
        raise _err(path, "Rows/Columns/NumberOfFrames missing or invalid") from None
    if rows <= 0 or cols <= 0 or nframes <= 0 or rows * cols * nframes > MAX_VOXELS:
        raise _err(path, f"{nframes} frames of {rows} x {cols} pixels is out of range")
    segs = list(ds.get("SegmentSequence", []))
    if not segs or len(segs) > MAX_SEGMENTS:
        raise _err(path, f"SegmentSequence holds {len(segs)} segments")
    background = [s for s in segs if int(s.get("SegmentNumber", -1)) == 0]
    if seg_type == "LABELMAP" and background:  # pixel value 0: the background, not a mask
        segs = [s for s in segs if int(s.get("SegmentNumber", -1)) != 0]
        if not segs:
            raise _err(path, "a LABELMAP SEG with only a background segment")
    return _Seg(path, ds, seg_type, rows, cols, nframes, segs)


def _place(
    seg: _Seg,
    geometry: FrameGeometry,
    reference: str | os.PathLike | None,
    notes: list[str],
) -> tuple[Space, np.ndarray]:
    """The grid of the masks and each frame's slice on it: the reference series' grid, or
    the one the frames span (slices without a frame noted as empty).

    Raises:
        MaskValidationError: A reference of another frame of reference or image size, or
            frames that do not make (or lie on) one regular grid.
    """
    path, ds = seg.path, seg.ds
    if reference is None:
        space, z_of = _stack_geometry(
            path,
            geometry.positions,
            geometry.orientation,
            geometry.pixel_spacing,
            seg.rows,
            seg.cols,
            geometry.between,
        )
        covered = np.unique(z_of).size
        if covered < space.shape[0]:
            notes.append(
                f"{space.shape[0] - covered} slice(s) between frames hold no segment (left empty)"
            )
        return space, z_of
    rss = ds.get("ReferencedSeriesSequence")
    ref_uid = (str(rss[0].get("SeriesInstanceUID", "")) or None) if rss else None
    series = read_series_geometry(reference, series_uid=ref_uid)
    if (
        ds.get("FrameOfReferenceUID")
        and series.frame_of_reference
        and str(ds.FrameOfReferenceUID) != series.frame_of_reference
    ):
        raise _err(
            path,
            f"--reference {reference} has another frame of reference "
            f"({series.frame_of_reference} vs {ds.FrameOfReferenceUID})",
            "is it the SEG's source series?",
        )
    if tuple(series.space.shape[1:]) != (seg.rows, seg.cols):
        raise _err(
            path,
            f"frames are {seg.rows} x {seg.cols} but the reference series' images are "
            f"{tuple(series.space.shape[1:])}",
        )
    return series.space, _space_index(path, series.space, geometry.positions)


def _cut(seg: _Seg, frames: Frames, threshold: float | None, notes: list[str]) -> int:
    """The smallest stored value that is part of a segment: 1, or for a FRACTIONAL SEG its
    maximum (values only 0 and the maximum: binary) or ``threshold`` x maximum.

    Raises:
        NeedsOptionError: A truly fractional SEG without ``threshold``.
        MaskValidationError: ``threshold`` outside (0, 1].
    """
    if seg.seg_type != "FRACTIONAL":
        return 1
    ds, path = seg.ds, seg.path
    maxval = int(ds.get("MaximumFractionalValue", 255) or 255)
    uniq = np.unique(frames(0, seg.nframes))
    between = uniq[(uniq != 0) & (uniq != maxval)]
    if not between.size:
        return maxval if threshold is None else max(1, int(np.ceil(threshold * maxval - 1e-9)))
    if threshold is None:
        raise NeedsOptionError(
            _err(
                path,
                f"a truly FRACTIONAL SEG ({str(ds.get('SegmentationFractionalType', ''))}; values "
                f"between 0 and {maxval} such as {int(between[0])})",
                "masks are binary: pass threshold=T / --threshold T (0 < T <= 1; a voxel is in a "
                "segment when its value >= T x maximum)",
            ).args[0]
        )
    if not 0 < threshold <= 1:
        raise _err(path, f"threshold {threshold} must be in (0, 1]")
    notes.append(f"fractional values thresholded at {threshold} x {maxval}")
    return max(1, int(np.ceil(threshold * maxval - 1e-9)))


def _records(
    seg: _Seg,
    names: list[str],
    frames: Frames,
    space: Space,
    z_of: np.ndarray,
    seg_of: np.ndarray,
    cut: int,
) -> Iterator[MaskRecord]:
    """One record per segment, built when the iterator reaches it.

    Raises:
        MaskValidationError: (while iterating) frames that name segments the
            SegmentSequence does not describe.
    """
    shape = tuple(int(s) for s in space.shape)
    bits = int(seg.ds.get("BitsAllocated", 1))
    if seg.seg_type == "LABELMAP":
        lab = np.zeros(shape, np.uint16 if bits > 8 else np.uint8)
        lab[z_of] = frames(0, seg.nframes)
        for s, name in zip(seg.segments, names, strict=True):
            yield MaskRecord(name, lab == int(s.SegmentNumber), _segment_attrs(s))
        return
    by_seg: dict[int, list[int]] = {}
    for i in range(seg.nframes):
        by_seg.setdefault(int(seg_of[i]), []).append(i)
    unknown = set(by_seg) - {int(s.SegmentNumber) for s in seg.segments}
    if unknown:
        raise _err(
            seg.path,
            f"frames refer to segments {sorted(unknown)} that SegmentSequence does not describe",
        )
    for s, name in zip(seg.segments, names, strict=True):
        arr = np.zeros(shape, bool)
        _fill(arr, by_seg.get(int(s.SegmentNumber), []), frames, z_of, bits, cut)
        yield MaskRecord(name, arr, _segment_attrs(s))


def _fill(
    arr: np.ndarray, idx: list[int], frames: Frames, z_of: np.ndarray, bits: int, cut: int
) -> None:
    """Set the voxels of one segment from its frames ``idx``: one unpack per run of
    consecutive frames; repeated frames of one slice (allowed) give their union."""
    k = 0
    while k < len(idx):
        j = k
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        block = frames(idx[k], idx[j] + 1)
        zs = z_of[idx[k] : idx[j] + 1]
        hit = block.view(bool) if bits == 1 else block >= cut
        if np.unique(zs).size == zs.size:  # one frame per slice: plain assignment
            arr[zs] = hit
        else:
            np.logical_or.at(arr, zs, hit)
        k = j + 1
