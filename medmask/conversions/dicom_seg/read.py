"""Reading DICOM SEG (BINARY, FRACTIONAL, LABELMAP) into mask records; see
:mod:`medmask.conversions.dicom_seg`."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import MaskValidationError
from ...spaces import GRID_ATOL, Space
from ..common import MAX_SEGMENTS, MAX_VOXELS, MaskRecord, NeedsOptionError
from ..names import unique_names
from .base import (
    _UNCOMPRESSED,
    LABELMAP_SEG_SOP_CLASS,
    SEG_SOP_CLASS,
    _err,
    _floats,
    _pydicom,
    cielab_to_rgb,
)
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


def _first(ds, keyword: str):
    seq = ds.get(keyword)
    return seq[0] if seq else None


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
    pydicom = _pydicom()
    path = Path(path)
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
    # geometry of every frame (the fast scan first: it needs the per-frame groups unparsed)
    fast = _frame_meta_fast(ds, nframes, seg_type != "LABELMAP")
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
    positions = np.empty((nframes, 3))
    seg_of = np.empty(nframes, np.int64)
    if fast is not None:
        positions, seg_of = fast[0], fast[1]
    for i in range(0 if fast is None else nframes, nframes):
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
        if seg_type != "LABELMAP":
            si = _fg(ds, i, "SegmentIdentificationSequence")
            if si is None or "ReferencedSegmentNumber" not in si:
                raise _err(path, f"frame {i + 1} names no segment (SegmentIdentificationSequence)")
            seg_of[i] = int(si.ReferencedSegmentNumber)
    notes: list[str] = []
    if reference is not None:
        ref_uid = None
        rss = ds.get("ReferencedSeriesSequence")
        if rss:
            ref_uid = str(rss[0].get("SeriesInstanceUID", "")) or None
        series = read_series_geometry(reference, series_uid=ref_uid)
        if (
            ds.get("FrameOfReferenceUID")
            and series.frame_of_reference
            and str(ds.FrameOfReferenceUID) != series.frame_of_reference
        ):
            raise _err(
                path,
                f"--reference {reference} has another frame of reference ({series.frame_of_reference} vs {ds.FrameOfReferenceUID})",
                "is it the SEG's source series?",
            )
        space = series.space
        if tuple(space.shape[1:]) != (rows, cols):
            raise _err(
                path,
                f"frames are {rows} x {cols} but the reference series' images are {tuple(space.shape[1:])}",
            )
        z_of = _space_index(path, space, positions)
    else:
        space, z_of = _stack_geometry(path, positions, ori, ps, rows, cols, between)
        covered = np.unique(z_of).size
        if covered < space.shape[0]:
            notes.append(
                f"{space.shape[0] - covered} slice(s) between frames hold no segment (left empty)"
            )
    # segments
    numbers = [int(s.SegmentNumber) for s in segs]
    names, changed = unique_names([str(s.get("SegmentLabel", "")) for s in segs], empty="segment")
    renamed = {names[k]: old for k, old in changed.items()}
    if len(set(numbers)) != len(numbers):
        raise _err(path, f"SegmentNumber values repeat ({numbers[:10]})")
    transfer = str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2.1"))
    bits = int(ds.get("BitsAllocated", 1))
    shape = tuple(int(s) for s in space.shape)
    frame_px = rows * cols

    if transfer in _UNCOMPRESSED and "PixelData" in ds:
        raw = np.frombuffer(ds.PixelData, np.uint8)
        if bits == 1:
            need = (nframes * frame_px + 7) // 8
            if raw.size < need:
                raise _err(
                    path,
                    f"PixelData holds {raw.size:,} bytes, {need:,} needed for {nframes} frames",
                )

            def frames(i0: int, i1: int) -> np.ndarray:
                b0 = i0 * frame_px
                b1 = i1 * frame_px
                chunk = np.unpackbits(raw[b0 // 8 : (b1 + 7) // 8], bitorder="little")
                return chunk[b0 % 8 : b0 % 8 + (b1 - b0)].reshape(i1 - i0, rows, cols)
        elif bits in (8, 16):
            dt = np.dtype(np.uint8 if bits == 8 else "<u2")
            need = nframes * frame_px * dt.itemsize
            if raw.size < need:
                raise _err(
                    path,
                    f"PixelData holds {raw.size:,} bytes, {need:,} needed for {nframes} frames",
                )
            vals = raw[:need].view(dt).reshape(nframes, rows, cols)

            def frames(i0: int, i1: int) -> np.ndarray:
                return vals[i0:i1]
        else:
            raise _err(path, f"BitsAllocated {bits} is not 1, 8 or 16")
    else:  # compressed: let pydicom decode (needs its pixel-data plugins)
        try:
            allpx = ds.pixel_array.reshape(nframes, rows, cols)
        except Exception as exc:  # noqa: BLE001
            raise _err(path, f"cannot decode the pixel data ({transfer}: {exc})") from None

        def frames(i0: int, i1: int) -> np.ndarray:
            return allpx[i0:i1]

    maxval = 1
    if seg_type == "FRACTIONAL":
        maxval = int(ds.get("MaximumFractionalValue", 255) or 255)
        sample = frames(0, nframes)
        uniq = np.unique(sample)
        fractional = bool(np.any((uniq != 0) & (uniq != maxval)))
        if fractional:
            if threshold is None:
                raise NeedsOptionError(
                    _err(
                        path,
                        f"a truly FRACTIONAL SEG ({str(ds.get('SegmentationFractionalType', ''))}; values "
                        f"between 0 and {maxval} such as {int(uniq[(uniq != 0) & (uniq != maxval)][0])})",
                        "masks are binary: pass threshold=T / --threshold T (0 < T <= 1; a voxel is in a "
                        "segment when its value >= T x maximum)",
                    ).args[0]
                )
            if not 0 < threshold <= 1:
                raise _err(path, f"threshold {threshold} must be in (0, 1]")
            notes.append(f"fractional values thresholded at {threshold} x {maxval}")
    cut = 1
    if seg_type == "FRACTIONAL":
        cut = maxval if threshold is None else max(1, int(np.ceil(threshold * maxval - 1e-9)))

    def records() -> Iterator[MaskRecord]:
        if seg_type == "LABELMAP":
            lab = np.zeros(shape, np.uint16 if bits > 8 else np.uint8)
            lab[z_of] = frames(0, nframes)
            for s, name in zip(segs, names, strict=True):
                yield MaskRecord(name, lab == int(s.SegmentNumber), _segment_attrs(s))
            return
        by_seg: dict[int, list[int]] = {}
        for i in range(nframes):
            by_seg.setdefault(int(seg_of[i]), []).append(i)
        unknown = set(by_seg) - set(numbers)
        if unknown:
            raise _err(
                path,
                f"frames refer to segments {sorted(unknown)} that SegmentSequence does not describe",
            )
        for s, name in zip(segs, names, strict=True):
            arr = np.zeros(shape, bool)
            idx = by_seg.get(int(s.SegmentNumber), [])
            k = 0
            while k < len(idx):  # runs of consecutive frames: one unpack each
                j = k
                while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
                    j += 1
                block = frames(idx[k], idx[j] + 1)
                zs = z_of[idx[k] : idx[j] + 1]
                hit = block.view(bool) if bits == 1 else block >= cut
                if np.unique(zs).size == zs.size:  # one frame per slice: plain assignment
                    arr[zs] = hit
                else:  # repeated frames of one slice (allowed): their union
                    np.logical_or.at(arr, zs, hit)
                k = j + 1
            yield MaskRecord(name, arr, _segment_attrs(s))

    return DicomSeg(space, records(), names, renamed, seg_type, notes)
