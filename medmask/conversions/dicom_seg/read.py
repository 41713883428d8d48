"""Reading DICOM SEG (BINARY, FRACTIONAL, LABELMAP) into mask records; see
:mod:`medmask.conversions.dicom_seg`.

A SEG is opened without its pixel data (:mod:`.pixels` reads frames from the file as a
stream); each segment becomes one job (:mod:`.segments`) that
:func:`~medmask.conversions.common.records_to_archive` runs on the case's threads. Several
instances of one SEG series (``instances=``) are read as one segmentation on one grid.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from ...errors import MaskValidationError
from ...spaces import GRID_ATOL, Space
from ..common import MAX_SEGMENTS, MAX_VOXELS, MaskRecord, NeedsOptionError
from ..names import unique_names
from .base import LABELMAP_SEG_SOP_CLASS, SEG_SOP_CLASS, _err, _pydicom, cielab_to_rgb
from .frames import FrameGeometry, Frames, _first, frame_geometry
from .header import seg_identifiers
from .items import segment_items
from .pixels import FrameSource, decoded_frames, pixel_data_at
from .segments import LabelVolume, binary_segment, frame_values
from .series import _space_index, _stack_geometry, read_series_geometry

__all__ = ["DicomSeg", "read_dicom_seg"]

#: A folder holding the source series, or its files.
Reference = str | os.PathLike | Sequence[str | os.PathLike] | None


# -- reading ------------------------------------------------------------------------------
@dataclass
class DicomSeg:
    """A DICOM SEG read by :func:`read_dicom_seg` (its frames are read as they are needed:
    close it, or use it in a ``with`` block, when done).

    Attributes:
        space: The ``(z, y, x)`` LPS grid.
        jobs: One function per segment, in segment order, that builds its record (the
            box of the grid holding its voxels); independent of each other, safe to run
            on several threads.
        names: Segment names, in segment order.
        renamed: ``{new name: name in the file}`` for names made unique.
        seg_type: ``BINARY``, ``FRACTIONAL`` or ``LABELMAP`` (several instances of
            different types: joined with ``+``).
        notes: Things worth reporting (filled slices, thresholds).
        ids: The identifiers of the SEG (:func:`~.header.seg_identifiers`; with several
            instances, ``SOPInstanceUID`` lists them all).
    """

    space: Space
    jobs: list[Callable[[], MaskRecord]]
    names: list[str]
    renamed: dict[str, str] = field(default_factory=dict)
    seg_type: str = "BINARY"
    notes: list[str] = field(default_factory=list)
    ids: dict = field(default_factory=dict)
    _sources: list = field(default_factory=list, repr=False)

    @property
    def records(self) -> Iterator[MaskRecord]:
        """The segments as whole-grid records, built one at a time."""
        shape = tuple(int(s) for s in self.space.shape)
        for job in self.jobs:
            rec = job()
            yield MaskRecord(rec.name, rec.full(shape), rec.attrs)

    def close(self) -> None:
        """Close the SEG files (and drop label volumes)."""
        for src in self._sources:
            src.close()

    def __enter__(self) -> DicomSeg:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    attrs: dict = {"label_value": int(seg.get("SegmentNumber"))}
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
    lab = seg.get("RecommendedDisplayCIELabValue")
    if hasattr(lab, "__len__") and len(lab) == 3:  # a list, or pydicom's MultiValue
        attrs["color"] = cielab_to_rgb(lab)
    description = seg.get("SegmentDescription")
    if description:
        attrs["description"] = str(description)
    algorithm = seg.get("SegmentAlgorithmType")
    if algorithm:
        attrs["algorithm_type"] = str(algorithm)
    return attrs


def read_dicom_seg(
    path: str | os.PathLike,
    *,
    threshold: float | None = None,
    reference: Reference = None,
    instances: Sequence[str | os.PathLike] = (),
) -> DicomSeg:
    """Read a DICOM SEG as mask records (one per segment, overlaps kept).

    Args:
        path: The SEG file.
        threshold: For a truly fractional SEG: a voxel belongs to a segment when its value
            is at least ``threshold`` times the maximum (0 < T <= 1).
        reference: The SEG's source series (a folder holding it, or its files): the masks
            are placed on its full grid (for SEGs that cover only some slices).
        instances: Other files of the same SEG series (a segmentation split into several
            instances): their segments join ``path``'s, on one grid.

    Returns:
        A :class:`DicomSeg` (its segments are built by its ``jobs``, or one at a time by
        iterating its ``records``); close it when done.

    Raises:
        MaskValidationError: Not a SEG, a truncated or damaged file, a truly fractional
            SEG without ``threshold``, frames without plane positions or orientation,
            irregular spacing, frames not on the reference's grid, a reference that is not
            the SEG's series, instances on different frames of reference or grids, or a
            header declaring more voxels/segments than allowed.
    """
    segs = [_open(Path(p)) for p in (path, *instances)]
    try:
        return _read(segs, threshold, reference)
    except BaseException:
        for s in segs:
            s.frames.close()
        raise


def _read(segs: list[_Seg], threshold: float | None, reference: Reference) -> DicomSeg:
    for s in segs:
        s.geometry = frame_geometry(s.path, s.ds, s.nframes, s.seg_type == "LABELMAP")
    _check_instances(segs)
    notes: list[str] = []
    space, z_ofs = _place(segs, reference, notes)
    labels = [str(x.get("SegmentLabel", "")) for s in segs for x in s.segments]
    names, changed = unique_names(labels, empty="segment")
    renamed = {names[k]: old for k, old in changed.items()}
    jobs: list[Callable[[], MaskRecord]] = []
    sources: list = []
    taken = 0
    for s, z_of in zip(segs, z_ofs, strict=True):
        own = names[taken : taken + len(s.segments)]
        taken += len(s.segments)
        jobs += _jobs(s, own, space, z_of, threshold, notes, sources)
        sources.append(s.frames)
    ids = seg_identifiers(segs[0].ds, segs[0].described)
    if len(segs) > 1:
        ids["SOPInstanceUID"] = [str(s.ds.get("SOPInstanceUID", "")) for s in segs]
    kinds = "+".join(dict.fromkeys(s.seg_type for s in segs))
    return DicomSeg(space, jobs, names, renamed, kinds, notes, ids, sources)


@dataclass
class _Seg:
    """A SEG instance: its header (checked), frame reader and frame geometry."""

    path: Path
    ds: object
    seg_type: str
    rows: int
    cols: int
    nframes: int
    segments: list  # the SegmentSequence items that are masks (no LABELMAP background)
    described: list  # every SegmentSequence item (the background's too)
    frames: Frames
    geometry: FrameGeometry | None = None


def _read_header(path: Path) -> tuple[object, tuple[int, int] | None]:
    """The dataset without pixel data, and where the pixel data is (``None``: decode it).

    Raises:
        MaskValidationError: Not readable DICOM, or truncated/damaged.
    """
    pydicom = _pydicom()
    try:
        with open(path, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            transfer = str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2.1"))
            return ds, pixel_data_at(fh, path, transfer)
    except (MaskValidationError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise MaskValidationError(
            f"{path}: not a readable DICOM file, or truncated or damaged "
            f"({type(exc).__name__}: {text})"
        ) from None


def _open(path: Path) -> _Seg:
    """Read a SEG's header, check it, and open its frames (not read yet).

    Raises:
        MaskValidationError: Not readable DICOM, truncated, not a Segmentation, another
            SegmentationType, frame counts or sizes out of range, no (or too many) segments.
    """
    ds, where = _read_header(path)
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
    segs = described = segment_items(ds)
    if not segs or len(segs) > MAX_SEGMENTS:
        raise _err(path, f"SegmentSequence holds {len(segs)} segments")
    try:
        numbers = [int(s.get("SegmentNumber")) for s in segs]
    except (TypeError, ValueError):
        raise _err(path, "a segment without a valid SegmentNumber") from None
    if seg_type == "LABELMAP" and 0 in numbers:  # pixel value 0: the background, not a mask
        segs = [s for s, n in zip(segs, numbers, strict=True) if n != 0]
        numbers = [n for n in numbers if n != 0]
        if not segs:
            raise _err(path, "a LABELMAP SEG with only a background segment")
    if len(set(numbers)) != len(numbers):
        raise _err(path, f"SegmentNumber values repeat ({numbers[:10]})")
    bits = int(ds.get("BitsAllocated", 1))
    if where is None:
        frames: Frames = decoded_frames(path, rows, cols, nframes)
    else:
        frames = FrameSource(path, where[0], where[1], rows, cols, nframes, bits)
    return _Seg(path, ds, seg_type, rows, cols, nframes, segs, described, frames)


def _check_instances(segs: list[_Seg]) -> None:
    """Instances of one series must share a frame of reference and a frame grid.

    Raises:
        MaskValidationError: Segments on different frames of reference (the reason and the
            files named), or frames of different sizes, orientations or pixel spacings.
    """
    first = segs[0]
    for other in segs[1:]:
        a = str(first.ds.get("FrameOfReferenceUID", "") or "")
        b = str(other.ds.get("FrameOfReferenceUID", "") or "")
        if a and b and a != b:
            raise _err(
                other.path,
                f"its segments are on another frame of reference ({b}) than those of "
                f"{first.path.name} ({a}): positions in different frames of reference are "
                "not comparable, so one archive (one grid) cannot hold them",
                "pack each instance on its own",
            )
        ga, gb = first.geometry, other.geometry
        assert ga is not None and gb is not None
        if (
            (first.rows, first.cols) != (other.rows, other.cols)
            or np.abs(ga.orientation - gb.orientation).max() > GRID_ATOL
            or np.abs(ga.pixel_spacing - gb.pixel_spacing).max() > GRID_ATOL
        ):
            raise _err(
                other.path,
                f"its frames ({other.rows} x {other.cols}, orientation "
                f"{np.round(gb.orientation, 4).tolist()}, spacing {gb.pixel_spacing.tolist()}) "
                f"are not those of {first.path.name} ({first.rows} x {first.cols}, "
                f"{np.round(ga.orientation, 4).tolist()}, {ga.pixel_spacing.tolist()})",
                "one archive holds one grid: pack each instance on its own",
            )


def _place(
    segs: list[_Seg], reference: Reference, notes: list[str]
) -> tuple[Space, list[np.ndarray]]:
    """The grid of the masks and each frame's slice on it, per instance: the reference
    series' grid, or the one the frames span (slices without a frame noted as empty).

    Raises:
        MaskValidationError: A reference of another frame of reference or image size, or
            frames that do not make (or lie on) one regular grid.
    """
    first = segs[0]
    geo = [s.geometry for s in segs]
    positions = np.concatenate([g.positions for g in geo])  # type: ignore[union-attr]
    splits = np.cumsum([s.nframes for s in segs])[:-1]
    if reference is None:
        g0 = geo[0]
        assert g0 is not None
        try:
            space, z_all = _stack_geometry(
                first.path,
                positions,
                g0.orientation,
                g0.pixel_spacing,
                first.rows,
                first.cols,
                g0.between,
            )
        except MaskValidationError as exc:
            raise _without_reference(first, exc) from None
        covered = np.unique(z_all).size
        if covered < space.shape[0]:
            notes.append(
                f"{space.shape[0] - covered} slice(s) between frames hold no segment (left empty)"
            )
        return space, np.split(z_all, splits)
    series = _reference_series(first, reference)
    return series.space, np.split(_space_index(first.path, series.space, positions), splits)


def _without_reference(seg: _Seg, exc: MaskValidationError) -> MaskValidationError:
    """The error of a SEG whose own plane positions make no grid, saying which series it
    needs."""
    rss = seg.ds.get("ReferencedSeriesSequence") or []
    uid = str(rss[0].get("SeriesInstanceUID", "")) if rss else ""
    which = f"its referenced series {uid}" if uid else "the series it was made on"
    return MaskValidationError(
        f"{exc} (the SEG's own plane positions do not make one grid, and "
        f"{which} was not given: pass it with --reference DICOM_DIR, or put its images "
        "beside the SEG when packing a tree)"
    )


def _reference_series(seg: _Seg, reference: Reference):
    """The source series given as ``reference``, checked against the SEG.

    Raises:
        MaskValidationError: Another frame of reference or image size.
    """
    path, ds = seg.path, seg.ds
    rss = ds.get("ReferencedSeriesSequence")
    ref_uid = (str(rss[0].get("SeriesInstanceUID", "")) or None) if rss else None
    series = read_series_geometry(reference, series_uid=ref_uid, headers_only=True)
    where = reference if isinstance(reference, str | os.PathLike) else "the reference series"
    if (
        ds.get("FrameOfReferenceUID")
        and series.frame_of_reference
        and str(ds.FrameOfReferenceUID) != series.frame_of_reference
    ):
        raise _err(
            path,
            f"--reference {where} has another frame of reference "
            f"({series.frame_of_reference} vs {ds.FrameOfReferenceUID})",
            "is it the SEG's source series?",
        )
    if tuple(series.space.shape[1:]) != (seg.rows, seg.cols):
        raise _err(
            path,
            f"frames are {seg.rows} x {seg.cols} but the reference series' images are "
            f"{tuple(series.space.shape[1:])}",
        )
    return series


def _cut(seg: _Seg, threshold: float | None, notes: list[str]) -> int:
    """The smallest stored value that is part of a segment: 1, or for a FRACTIONAL SEG its
    maximum (values only 0 and the maximum: binary) or ``threshold`` x maximum. The frames
    are scanned a chunk at a time.

    Raises:
        NeedsOptionError: A truly fractional SEG without ``threshold``.
        MaskValidationError: ``threshold`` outside (0, 1].
    """
    if seg.seg_type != "FRACTIONAL":
        return 1
    ds, path = seg.ds, seg.path
    maxval = int(ds.get("MaximumFractionalValue", 255) or 255)
    if threshold is not None and not 0 < threshold <= 1:
        raise _err(path, f"threshold {threshold} must be in (0, 1]")
    uniq = frame_values(seg.frames, seg.nframes)
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
    notes.append(f"fractional values thresholded at {threshold} x {maxval}")
    return max(1, int(np.ceil(threshold * maxval - 1e-9)))


def _jobs(
    seg: _Seg,
    names: list[str],
    space: Space,
    z_of: np.ndarray,
    threshold: float | None,
    notes: list[str],
    sources: list,
) -> list[Callable[[], MaskRecord]]:
    """One job per segment of an instance.

    Raises:
        MaskValidationError: Frames that name segments the SegmentSequence does not
            describe.
    """
    bits = int(seg.ds.get("BitsAllocated", 1))
    shape = tuple(int(s) for s in space.shape)
    pairs = list(zip(seg.segments, names, strict=True))
    if seg.seg_type == "LABELMAP":
        volume = LabelVolume(seg.frames, seg.nframes, shape, z_of, bits)
        sources.append(volume)
        return [
            volume.segment(n, partial(_segment_attrs, s), int(s.get("SegmentNumber")))
            for s, n in pairs
        ]
    assert seg.geometry is not None
    seg_of = seg.geometry.segment_of
    known = {int(s.get("SegmentNumber")) for s in seg.segments}
    unknown = sorted(set(np.unique(seg_of).tolist()) - known)
    if unknown:
        raise _err(
            seg.path,
            f"frames refer to segments {unknown[:10]} that SegmentSequence does not describe",
        )
    cut = _cut(seg, threshold, notes)
    order = np.argsort(seg_of, kind="stable")
    bounds = np.searchsorted(seg_of[order], sorted(known) + [max(known) + 1])
    frames_of = {
        number: np.sort(order[bounds[k] : bounds[k + 1]]) for k, number in enumerate(sorted(known))
    }
    return [
        binary_segment(
            n,
            partial(_segment_attrs, s),
            seg.frames,
            frames_of[int(s.get("SegmentNumber"))],
            z_of,
            bits,
            cut,
        )
        for s, n in pairs
    ]
