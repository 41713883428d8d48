"""DICOM Segmentation objects (SEG) in and out (needs the ``dicom`` extra: pydicom, highdicom).

In (:func:`read_dicom_seg`): BINARY and FRACTIONAL SEGs (Segmentation Storage,
``1.2.840.10008.5.1.4.1.1.66.4``) and LABELMAP SEGs (``1.2.840.10008.5.1.4.1.1.66.7``).
Frames are read with pydicom and bit-unpacked with numpy (no per-segment highdicom
calls); one mask per segment, named by ``SegmentLabel``. The grid comes from the frames'
plane positions and orientation: axes x (columns) and y (rows) from
``ImageOrientationPatient`` and ``PixelSpacing``, z along the slice normal, slices sorted
along it, the spacing from ``SpacingBetweenSlices`` or the smallest gap between positions;
slices missing between frames (no segment there) are empty. This gives the same voxels at
the same world positions as highdicom's ``Segmentation.get_volume``. A FRACTIONAL SEG whose
values are only 0 and the maximum is read as binary; a truly fractional one needs a
threshold. ``reference`` (a folder holding the source series) puts the SEG onto the full
grid of its source series.

Out (:func:`write_dicom_seg`): a BINARY (default; overlaps allowed) or LABELMAP SEG (when
nothing overlaps) built with highdicom from the source series, whose grid must be the
archive's (1e-3 mm, direction cosines).

Attributes: ``SegmentLabel`` <-> name; ``SegmentedPropertyCategoryCodeSequence`` <->
``category``; ``SegmentedPropertyTypeCodeSequence`` <-> ``type`` (with its modifier
``type_modifier``); ``AnatomicRegionSequence`` <-> ``region`` (with ``region_modifier``);
``RecommendedDisplayCIELabValue`` <-> ``color`` (sRGB); ``SegmentDescription`` <->
``description``; ``SegmentNumber`` -> ``label_value``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MaskValidationError, SpaceMismatchError
from ..geometry import grid_differences, lps_matrix, lps_to_space
from ..spaces import GRID_ATOL, Space, describe_space, spaces_match
from .common import MAX_SEGMENTS, MAX_VOXELS, MaskRecord, NeedsOptionError
from .labels import default_color
from .names import unique_names

__all__ = [
    "read_dicom_seg",
    "write_dicom_seg",
    "read_series_geometry",
    "DicomSeg",
    "SEG_SOP_CLASS",
    "LABELMAP_SEG_SOP_CLASS",
    "rgb_to_cielab",
    "cielab_to_rgb",
]

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
LABELMAP_SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.7"
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def _pydicom():
    try:
        import pydicom
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('DICOM SEG support needs pydicom: pip install "medmask[dicom]"') from None
    return pydicom


def _highdicom():
    try:
        import highdicom
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            'writing DICOM SEG needs highdicom: pip install "medmask[dicom]"'
        ) from None
    return highdicom


# -- colours ------------------------------------------------------------------------------
_D65 = np.array([0.95047, 1.0, 1.08883])
_M = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])


def rgb_to_cielab(rgb: Iterable[int]) -> tuple[int, int, int]:
    """sRGB (0-255) as DICOM's scaled CIELab triplet (0-65535 each).

    Args:
        rgb: Three integers 0-255.

    Returns:
        ``(L, a, b)`` scaled as ``RecommendedDisplayCIELabValue`` stores them.
    """
    c = np.clip(np.asarray(list(rgb)[:3], float) / 255.0, 0, 1)
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = (_M @ lin) / _D65
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    L, a, b = 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])
    return (
        int(round(np.clip(L, 0, 100) * 65535 / 100)),
        int(round((np.clip(a, -128, 127) + 128) * 65535 / 255)),
        int(round((np.clip(b, -128, 127) + 128) * 65535 / 255)),
    )


def cielab_to_rgb(lab: Iterable[int]) -> list[int]:
    """DICOM's scaled CIELab triplet as sRGB 0-255 (the inverse of :func:`rgb_to_cielab`)."""
    L, a, b = (float(v) for v in list(lab)[:3])
    L, a, b = L * 100 / 65535, a * 255 / 65535 - 128, b * 255 / 65535 - 128
    fy = (L + 16) / 116
    f = np.array([fy + a / 500, fy, fy - b / 200])
    xyz = np.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * _D65
    lin = np.linalg.solve(_M, xyz)
    lin = np.clip(lin, 0, 1)
    c = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return [int(round(v)) for v in np.clip(c * 255, 0, 255)]


# -- geometry -----------------------------------------------------------------------------
def _err(path: object, what: str, fix: str = "") -> MaskValidationError:
    return MaskValidationError(f"{path}: {what}" + (f"; {fix}" if fix else ""))


def _floats(value: object, n: int) -> np.ndarray | None:
    try:
        arr = np.asarray([float(v) for v in value], dtype=np.float64)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return arr if arr.shape == (n,) and np.all(np.isfinite(arr)) else None


def _stack_geometry(
    path: object,
    positions: np.ndarray,
    orientation: np.ndarray,
    pixel_spacing: np.ndarray,
    rows: int,
    cols: int,
    spacing_between: float | None,
) -> tuple[Space, np.ndarray]:
    """The ``(z, y, x)`` space of frames at ``positions`` and each position's slice index."""
    row_cos, col_cos = orientation[:3], orientation[3:]
    normal = np.cross(row_cos, col_cos)
    if not np.isclose(np.linalg.norm(normal), 1.0, atol=1e-3):
        raise _err(
            path, f"ImageOrientationPatient {orientation.tolist()} is not two orthonormal axes"
        )
    # group positions lying within GRID_ATOL along the normal (sorted, one pass)
    d_all = positions @ normal
    order = np.argsort(d_all, kind="stable")
    ds_sorted = d_all[order]
    starts = np.concatenate([[True], np.diff(ds_sorted) > GRID_ATOL])
    group_sorted = np.cumsum(starts) - 1
    group = np.empty(len(positions), np.int64)
    group[order] = group_sorted
    u = positions[order][starts]
    d = ds_sorted[starts]
    if np.abs(positions - u[group]).max(initial=0.0) > GRID_ATOL * 10:
        raise _err(
            path,
            "frames at one slice position disagree within the plane",
            "medmask needs one regular grid; pass --reference DICOM_DIR",
        )
    inplane = (u - u[0]) - np.outer(d - d[0], normal)
    if np.abs(inplane).max(initial=0.0) > GRID_ATOL:
        raise _err(
            path,
            "frames are not stacked along the slice normal (plane positions shift within the "
            f"plane by up to {np.abs(inplane).max():.3g} mm)",
            "medmask needs one regular grid; resample the SEG or pass --reference DICOM_DIR",
        )
    gaps = np.diff(d)
    if spacing_between is not None and spacing_between > 0:
        step = float(spacing_between)
    elif gaps.size:
        step = float(gaps.min())
    else:
        step = float(spacing_between or 1.0)
    if gaps.size:
        k = gaps / step
        if np.abs(k - np.round(k)).max() * step > GRID_ATOL * 10 or np.any(np.round(k) < 1):
            raise _err(
                path,
                f"irregular slice spacing (gaps between plane positions: "
                f"{sorted(set(np.round(gaps, 4).tolist()))[:6]} mm)",
                "medmask needs regularly spaced slices; pass --reference DICOM_DIR to place "
                "the frames on the source series' grid",
            )
        index = np.concatenate([[0], np.cumsum(np.round(k).astype(np.int64))])
    else:
        index = np.zeros(1, np.int64)
    nz = int(index[-1]) + 1
    if nz * rows * cols > MAX_VOXELS:
        raise _err(path, f"grid of {nz} x {rows} x {cols} voxels exceeds {MAX_VOXELS:,}")
    m = np.eye(4)
    m[:3, 0] = row_cos * pixel_spacing[1]
    m[:3, 1] = col_cos * pixel_spacing[0]
    m[:3, 2] = normal * step
    m[:3, 3] = u[0]
    space = lps_to_space(m, (cols, rows, nz))
    pos_index = index[group]
    return space, pos_index


def _space_index(path: object, space: Space, positions: np.ndarray) -> np.ndarray:
    """The slice index of each frame position on a reference grid (error when off-grid)."""
    m = lps_matrix(space)
    inv = np.linalg.inv(m)
    ijk = (inv[:3, :3] @ positions.T).T + inv[:3, 3]
    nz = int(space.shape[0])
    step = np.linalg.norm(m[:3, :3], axis=0)
    off = np.abs(ijk - np.round(ijk)) * step
    if np.any(np.abs(ijk[:, :2]) * step[:2] > GRID_ATOL) or off.max(initial=0) > GRID_ATOL:
        raise _err(
            path,
            "frames do not lie on the reference series' slices (in-plane offset or between "
            f"slices by up to {float(max(off.max(initial=0), (np.abs(ijk[:, :2]) * step[:2]).max(initial=0))):.3g} mm)",
            "is --reference the SEG's source series?",
        )
    k = np.round(ijk[:, 2]).astype(np.int64)
    if k.min(initial=0) < 0 or k.max(initial=0) >= nz:
        raise _err(
            path,
            "frames lie outside the reference series",
            "is --reference the SEG's source series?",
        )
    return k


# -- source series ------------------------------------------------------------------------
@dataclass
class _Series:
    datasets: list
    space: Space
    series_uid: str
    frame_of_reference: str
    z_index: np.ndarray  # slice index of each dataset on ``space`` (gaps allowed)


def read_series_geometry(folder: str | os.PathLike, *, series_uid: str | None = None) -> _Series:
    """Read a DICOM image series from a folder: its datasets (sorted along the slice
    normal) and its ``(z, y, x)`` grid.

    Args:
        folder: A folder holding the series' files (others are skipped: non-DICOM files,
            other SOP classes, SEGs).
        series_uid: Pick this series when the folder holds several.

    Returns:
        The series (``datasets``, ``space``, ``series_uid``, ``frame_of_reference``).

    Raises:
        MaskValidationError: No image series, several series without ``series_uid``, or
            slices that do not make one regular grid.
    """
    pydicom = _pydicom()
    folder = Path(folder)
    if not folder.is_dir():
        raise MaskValidationError(f"{folder}: not a folder of DICOM files")
    groups: dict[str, list] = {}
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(f, force=False)
        except Exception:  # noqa: BLE001 - not DICOM: skip
            continue
        if "ImagePositionPatient" not in ds or "PixelSpacing" not in ds:
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    if not groups:
        raise MaskValidationError(
            f"{folder}: no DICOM image series found (files with ImagePositionPatient)"
        )
    if series_uid is not None:
        if series_uid not in groups:
            raise MaskValidationError(
                f"{folder}: does not hold series {series_uid} (it holds {sorted(groups)[:4]}); "
                "is it the SEG's source series?"
            )
        uid = series_uid
    elif len(groups) > 1:
        raise MaskValidationError(
            f"{folder}: holds {len(groups)} series ({sorted(groups)[:4]}); give a folder with one"
        )
    else:
        uid = next(iter(groups))
    dss = groups[uid]
    ori = _floats(dss[0].ImageOrientationPatient, 6)
    ps = _floats(dss[0].PixelSpacing, 2)
    if ori is None or ps is None:
        raise MaskValidationError(
            f"{folder}: series {uid} lacks a valid orientation or pixel spacing"
        )
    for ds in dss:
        o = _floats(ds.ImageOrientationPatient, 6)
        if (
            o is None
            or np.abs(o - ori).max() > GRID_ATOL
            or (int(ds.Rows), int(ds.Columns)) != (int(dss[0].Rows), int(dss[0].Columns))
        ):
            raise MaskValidationError(f"{folder}: series {uid} mixes orientations or image sizes")
    pos = np.array([_floats(ds.ImagePositionPatient, 3) for ds in dss])
    normal = np.cross(ori[:3], ori[3:])
    order = np.argsort(pos @ normal, kind="stable")
    dss = [dss[i] for i in order]
    pos = pos[order]
    if np.any(np.diff(pos @ normal) <= GRID_ATOL):
        raise MaskValidationError(f"{folder}: series {uid} has two images at one slice position")
    between = dss[0].get("SpacingBetweenSlices")
    space, z_index = _stack_geometry(
        folder,
        pos,
        ori,
        ps,
        int(dss[0].Rows),
        int(dss[0].Columns),
        float(between) if between not in (None, "") else None,
    )
    return _Series(dss, space, uid, str(dss[0].get("FrameOfReferenceUID", "")), z_index)


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


# -- writing ------------------------------------------------------------------------------
def write_dicom_seg(
    records: Iterable[MaskRecord],
    space: Space,
    out: str | os.PathLike,
    source: str | os.PathLike,
    *,
    labelmap: bool = False,
    count: int | None = None,
    series_description: str = "medmask segmentation",
    progress: Callable[[Iterable], Iterable] | None = None,
) -> dict[str, int]:
    """Write masks as a DICOM SEG referencing their source series (atomically).

    Args:
        records: The masks (bool ``(z, y, x)`` arrays on ``space``).
        space: Their grid; it must be the source series' grid.
        out: The ``.dcm`` to write.
        source: A folder holding the source image series.
        labelmap: Write a LABELMAP SEG (refused when masks overlap) instead of BINARY.
        count: The number of records, when ``records`` is a one-pass iterator (then no
            mask is held in memory beyond the SEG's own pixel array).
        series_description: The SEG's SeriesDescription.
        progress: Optional wrapper of the record iterable.

    Returns:
        ``{name: segment number}``.

    Raises:
        MaskValidationError: The name of ``out`` is not ``.dcm``, no masks, ``labelmap``
            with overlapping masks, or an unusable source series.
        SpaceMismatchError: The archive's grid is not the source series' grid (the
            message names what differs).
    """
    from ..io.names import expect_name
    from .nifti import write_atomic

    expect_name(out, "dicom", what="DICOM SEG")
    hd = _highdicom()
    pydicom = _pydicom()
    from pydicom.sr.codedict import codes

    series = read_series_geometry(source)
    if not spaces_match(series.space, space, GRID_ATOL):
        raise SpaceMismatchError(
            f"{source}: the source series' grid is not the archive's ({'; '.join(grid_differences(space, series.space))}): "
            f"series {describe_space(series.space)}; archive {describe_space(space)} (tolerance "
            f"{GRID_ATOL} mm); export onto the grid the masks were made on"
        )
    if count is None:
        records = list(records)
        count = len(records)
    if not count:
        raise MaskValidationError(f"{out}: no masks to write")
    nz, ny, nx = (int(s) for s in space.shape)
    descriptions = []
    numbers: dict[str, int] = {}
    zi = series.z_index
    lacking = np.ones(nz, bool)
    lacking[zi] = False
    if labelmap:
        pixels = np.zeros((len(zi), ny, nx), np.uint8 if count < 256 else np.uint16)
    else:
        pixels = np.zeros((len(zi), ny, nx, count), bool)
    for k, rec in enumerate(progress(records) if progress else records):
        if k >= count:
            raise MaskValidationError(f"{out}: more masks than the {count} announced")
        arr = rec.array if rec.array.dtype == np.bool_ else rec.array != 0
        if lacking.any() and arr[lacking].any():
            k0 = int(np.flatnonzero(lacking & arr.any(axis=(1, 2)))[0])
            raise MaskValidationError(
                f"mask {rec.name!r} has voxels on slice {k0}, which the source series {source} "
                "has no image for; a SEG can only cover the series' images"
            )
        arr = arr[zi]
        if labelmap:
            if np.any(pixels[arr]):
                raise MaskValidationError(
                    f"mask {rec.name!r} overlaps an earlier mask: a LABELMAP SEG cannot hold "
                    "overlaps; write a BINARY SEG (the default) instead"
                )
            pixels[arr] = k + 1
        else:
            pixels[..., k] = arr
        a = rec.attrs

        color = a.get("color") if isinstance(a.get("color"), list) else default_color(k)
        region = _coded_concept(hd, a, "region", None)
        desc = hd.seg.SegmentDescription(
            segment_number=k + 1,
            segment_label=rec.name[:64],
            segmented_property_category=_coded_concept(hd, a, "category", codes.SCT.Tissue),
            segmented_property_type=_coded_concept(hd, a, "type", codes.SCT.Tissue),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            anatomic_regions=[region] if region is not None else None,
            display_color=hd.color.CIELabColor(*_lab_floats(rgb_to_cielab(color))),
        )
        if isinstance(a.get("description"), str):
            desc.SegmentDescription = a["description"][:64]
        tm = _coded_concept(hd, a, "type_modifier", None)
        if tm is not None:
            desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
                tm
            ]
        rm = _coded_concept(hd, a, "region_modifier", None)
        if rm is not None and region is not None:
            desc.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [rm]
        descriptions.append(desc)
        numbers[rec.name] = k + 1
    if len(numbers) != count:
        raise MaskValidationError(f"{out}: {len(numbers)} masks, {count} announced")
    seg = hd.seg.Segmentation(
        source_images=series.datasets,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.LABELMAP
        if labelmap
        else hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=900,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medmask",
        manufacturer_model_name="medmask",
        software_versions=_version(),
        device_serial_number="0",
        series_description=series_description,
    )
    del pydicom
    write_atomic(Path(out), lambda fh: seg.save_as(fh))
    return numbers


def _coded_concept(hd, attrs: dict, key: str, default):
    c = attrs.get(key)
    if isinstance(c, dict) and c.get("value"):
        return hd.sr.CodedConcept(
            str(c["value"]), str(c.get("scheme", "")), str(c.get("meaning", ""))[:64]
        )
    return default


def _lab_floats(scaled: tuple[int, int, int]) -> tuple[float, float, float]:
    L, a, b = scaled
    return L * 100 / 65535, a * 255 / 65535 - 128, b * 255 / 65535 - 128


def _version() -> str:
    from .. import __version__

    return f"medmask {__version__}"
