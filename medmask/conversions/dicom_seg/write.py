"""Writing an archive's masks as a DICOM SEG referencing their source series; see
:mod:`medmask.conversions.dicom_seg`.

The SEG is built here, not by highdicom's constructor: on the real case (117 masks, 179
slices) that constructor took about 9 s (it casts every segment of every slice, 21,000
``astype`` calls, and pydicom then encodes some 11,000 nested datasets of per-frame
functional groups), and filling its ``(frames, rows, columns, segments)`` array another 13 s.
Here each mask is read from its bounding-box crop and only its non-empty slices become
frames; the repeated per-frame groups are encoded once per slice (:mod:`.encode`); the rest
of the dataset is :mod:`.build`'s. highdicom reads the result back in the tests (and
pydicom with its validation raising), voxel for voxel.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import MaskValidationError, SpaceMismatchError
from ...geometry import grid_differences
from ...io.atomic import write_atomic
from ...io.names import expect_name
from ...ops import OVERLAP_RULES, smallest_uint_dtype
from ...spaces import GRID_ATOL, describe_space, spaces_match
from ...storage import Layer, MaskArchive, load_mask, paint_label_map
from ..common import is_archive
from ..overlaps import taken_by
from .base import _pydicom
from .build import ds_text, seg_dataset, segment_item
from .encode import FrameItems, pack_binary_frames
from .series import read_series_geometry

__all__ = ["write_dicom_seg", "SegExport"]


@dataclass
class SegExport:
    """What :func:`write_dicom_seg` wrote.

    Attributes:
        numbers: ``{name: segment number}``.
        frames: Frames written (one per non-empty slice of each segment; LABELMAP: per
            non-empty slice).
        voxels: ``{name: voxels}`` (LABELMAP: as painted, see ``lost``).
        lost: LABELMAP: ``{name: voxels lost to overlapping masks}`` (the masks that lost
            some), as :func:`medmask.storage.paint_label_map` reports them.
        emptied: LABELMAP: masks that lost all their voxels.
        taken_by: LABELMAP: ``{name: [the masks that took its voxels]}``, for ``lost``.
    """

    numbers: dict[str, int]
    frames: int
    voxels: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    emptied: list[str] = field(default_factory=list)
    taken_by: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Part:
    """One segment: a mask, or one label of a multi-label mask."""

    name: str
    mask: str
    stored: int | None
    attrs: dict


def _parts(ar: MaskArchive, names: Iterable[str] | None) -> list[_Part]:
    """The segments, in archive order (or ``names``' order): one per mask, or one per label
    of a multi-label mask (``mask:label name``).

    Raises:
        MaskNotFoundError: A name that is not stored (close matches suggested).
    """
    infos = {i.name: i for i in ar.infos()}
    out = []
    for name in list(names) if names is not None else list(infos):
        if name not in infos:
            ar.info(name)  # raises MaskNotFoundError with close matches
        info = infos[name]
        items = [(n, v) for n, v in info.mapping.items() if v]
        if info.dtype in (None, "bool") or len(items) <= 1:
            out.append(_Part(name, name, None, dict(info.attrs or {})))
        else:
            out.extend(_Part(n if n == name else f"{name}:{n}", name, v, {}) for n, v in items)
    return out


def write_dicom_seg(
    archive: str | os.PathLike,
    out: str | os.PathLike,
    source: str | os.PathLike,
    *,
    labelmap: bool = False,
    overlap: str = "last",
    names: Iterable[str] | None = None,
    series_description: str = "medmask segmentation",
    progress: Callable[[Iterable], Iterable] | None = None,
) -> SegExport:
    """Write an archive's masks as a DICOM SEG referencing their source series (atomically).

    BINARY (the default): one segment per mask (a multi-label mask: one per label),
    overlaps kept; a frame per slice that holds voxels of a segment. LABELMAP: the masks
    painted into one label map by :func:`medmask.storage.paint_label_map`, the painter of
    every medmask label map, so overlaps follow ``overlap`` (the rules of NIfTI label maps)
    and what each mask lost is reported; segment 0 is the background.

    Args:
        archive: The ``.mska`` (or a ``.msk``: its labels), a local file.
        out: The ``.dcm`` to write.
        source: A folder holding the source image series; its grid must be the archive's.
        labelmap: Write a LABELMAP SEG instead of BINARY.
        overlap: LABELMAP: which mask keeps a voxel several masks claim
            (:data:`medmask.ops.OVERLAP_RULES`: ``"last"``, ``"first"``, ``"smaller"``).
        names: Only these masks, in this order (default: all, archive order).
        series_description: The SEG's SeriesDescription.
        progress: Optional wrapper of the iterable of segments (a progress bar).

    Returns:
        A :class:`SegExport`.

    Raises:
        MaskValidationError: The name of ``out`` is not ``.dcm``, no masks, an unknown
            ``overlap`` rule, voxels on a slice the series has no image for, or an unusable
            source series.
        SpaceMismatchError: The archive's grid is not the source series' grid (the
            message names what differs).
        MaskNotFoundError: A name in ``names`` is not stored.
    """
    expect_name(out, "dicom-seg", what="DICOM SEG")
    if overlap not in OVERLAP_RULES:
        raise MaskValidationError(f"overlap must be one of {OVERLAP_RULES}, got {overlap!r}")
    series = read_series_geometry(source, headers_only=True)
    with _as_archive(archive) as path, MaskArchive(path) as ar:
        if len(ar) == 0 or ar.space is None:
            raise MaskValidationError(f"{out}: no masks to write")
        _check_grid(ar.space, series.space, source)
        parts = _parts(ar, names)
        if not parts:
            raise MaskValidationError(f"{out}: no masks to write")
        frames = _Frames(series, ar.space, labelmap, source)
        if labelmap:
            result = frames.paint(ar, parts, overlap, progress)
        else:
            result = frames.binary(ar, parts, progress)
    ds = _dataset(series, parts, frames, labelmap, series_description)
    write_atomic(Path(out), lambda fh: ds.save_as(fh, enforce_file_format=True))
    return result


class _as_archive:
    """An archive's path as it is, or a ``.msk`` as a temporary one-mask archive."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> Path:
        if is_archive(self.path):
            return self.path
        seg = load_mask(self.path)
        self._tmp = tempfile.TemporaryDirectory(prefix="medmask-seg-")
        tmp = Path(self._tmp.name) / "mask.mska"
        with MaskArchive(tmp, "w", space=seg.space) as ar:
            ar.add(self.path.name.split(".")[0], seg)
        return tmp

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def _check_grid(space, series_space, source) -> None:
    if not spaces_match(series_space, space, GRID_ATOL):
        raise SpaceMismatchError(
            f"{source}: the source series' grid is not the archive's "
            f"({'; '.join(grid_differences(space, series_space))}): "
            f"series {describe_space(series_space)}; archive {describe_space(space)} (tolerance "
            f"{GRID_ATOL} mm); export onto the grid the masks were made on"
        )


class _Frames:
    """The frames of the SEG, built mask by mask (BINARY) or from one label map."""

    def __init__(self, series, space, labelmap: bool, source) -> None:
        nz = int(space.shape[0])
        self.source = source
        self.labelmap = labelmap
        self.spacing_z = float(space.spacing[0])
        self.slices: list = [None] * nz  # the source dataset of each slice
        for ds, z in zip(series.datasets, series.z_index, strict=True):
            self.slices[int(z)] = ds
        self.items = FrameItems(
            [
                None if ds is None else (ds.SOPClassUID, ds.SOPInstanceUID, _text(ds))
                for ds in self.slices
            ],
            labelmap=labelmap,
        )
        self.pixels: list[np.ndarray] = []
        self.bits = 1
        self.overlap = "NO"

    def _check_slices(self, name: str, zs: np.ndarray) -> None:
        lacking = [int(z) for z in zs if self.slices[int(z)] is None]
        if lacking:
            raise MaskValidationError(
                f"mask {name!r} has voxels on slice {lacking[0]}, which the source series "
                f"{self.source} has no image for; a SEG can only cover the series' images"
            )

    def binary(self, ar: MaskArchive, parts: list[_Part], progress) -> SegExport:
        shape = tuple(int(s) for s in ar.space.shape)
        claimed = np.zeros(shape, bool)  # voxels of the masks so far (SegmentsOverlap)
        numbers, voxels = {}, {}
        for k, part in enumerate(progress(parts) if progress else parts):
            crop, box = ar.read_cropped(part.mask)
            numbers[part.name] = k + 1
            if box is None:
                voxels[part.name] = 0
                continue
            hit = crop != 0 if part.stored is None else crop == part.stored
            z0, z1, y0, y1, x0, x1 = box
            region = claimed[z0:z1, y0:y1, x0:x1]
            if self.overlap == "NO" and np.any(region & hit):
                self.overlap = "YES"
            region |= hit
            filled = np.flatnonzero(hit.any(axis=(1, 2)))
            self._check_slices(part.name, filled + z0)
            voxels[part.name] = int(np.count_nonzero(hit))
            for z in filled:
                frame = np.zeros(shape[1:], bool)
                frame[y0:y1, x0:x1] = hit[z]
                self.pixels.append(frame)
                self.items.add(int(z0 + z), k + 1)
        return SegExport(numbers, len(self.items), voxels)

    def paint(self, ar: MaskArchive, parts: list[_Part], overlap: str, progress) -> SegExport:
        layers = [Layer(p.name, p.mask, k + 1, p.stored) for k, p in enumerate(parts)]
        list(progress(parts) if progress else parts)  # one step: the painting below
        dtype = smallest_uint_dtype(len(parts))
        res = paint_label_map(ar, layers, overlap=overlap, dtype=dtype, report=True)
        self.bits = 8 * np.dtype(dtype).itemsize
        filled = np.flatnonzero(res.array.reshape(res.array.shape[0], -1).any(axis=1))
        self._check_slices("(label map)", filled)
        for z in filled:
            self.pixels.append(res.array[z])
            self.items.add(int(z))
        numbers = {p.name: k + 1 for k, p in enumerate(parts)}
        winners = taken_by(ar, layers, res)
        return SegExport(
            numbers, len(self.items), dict(res.voxels), dict(res.lost), res.emptied, winners
        )

    def pixel_data(self) -> tuple[bytes, str]:
        """The Pixel Data value and its VR."""
        if self.bits == 1:
            return pack_binary_frames(self.pixels), "OB"
        raw = np.stack(self.pixels).astype(f"<u{self.bits // 8}").tobytes() if self.pixels else b""
        return raw + (b"\x00" if len(raw) % 2 else b""), "OB" if self.bits == 8 else "OW"


def _text(ds) -> str:
    """A source image's ImagePositionPatient as DS text (each value at most 16 characters)."""
    return "\\".join(ds_text(ds.ImagePositionPatient))


def _dataset(series, parts: list[_Part], frames: _Frames, labelmap: bool, title: str):
    """The SEG's dataset with its frames."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    from ..._version import __version__

    pydicom = _pydicom()
    segments = [segment_item(k + 1, p.name, p.attrs, k) for k, p in enumerate(parts)]
    ds = seg_dataset(
        series.datasets,
        segments,
        labelmap=labelmap,
        bits=frames.bits,
        overlap="NO" if labelmap else frames.overlap,
        spacing_z=frames.spacing_z,
        title=title,
        version=f"medmask {__version__}",
    )
    ds.NumberOfFrames = len(frames.items)
    value = frames.items.value()
    ds[0x52009230] = RawDataElement(Tag(0x52009230), "SQ", len(value), value, 0, False, True)
    pixels, vr = frames.pixel_data()
    ds[0x7FE00010] = pydicom.DataElement(0x7FE00010, vr, pixels)
    # the dataset is built in the encoding it is written in: pydicom then writes the raw
    # per-frame groups as they are, instead of decoding them to look for ambiguous VRs
    ds.set_original_encoding(False, True, ds._character_set)
    return ds
