"""Writing masks as a DICOM SEG (with highdicom) referencing their source series; see
:mod:`medmask.conversions.dicom_seg`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ...errors import MaskValidationError, SpaceMismatchError
from ...geometry import grid_differences
from ...io.atomic import write_atomic
from ...io.names import expect_name
from ...ops import smallest_uint_dtype
from ...spaces import GRID_ATOL, Space, describe_space, spaces_match
from ..common import MaskRecord
from ..labels import default_color
from .base import _highdicom, rgb_to_cielab
from .series import read_series_geometry


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
    expect_name(out, "dicom-seg", what="DICOM SEG")
    hd = _highdicom()
    series = read_series_geometry(source)
    if not spaces_match(series.space, space, GRID_ATOL):
        raise SpaceMismatchError(
            f"{source}: the source series' grid is not the archive's "
            f"({'; '.join(grid_differences(space, series.space))}): "
            f"series {describe_space(series.space)}; archive {describe_space(space)} (tolerance "
            f"{GRID_ATOL} mm); export onto the grid the masks were made on"
        )
    if count is None:
        records = list(records)
        count = len(records)
    if not count:
        raise MaskValidationError(f"{out}: no masks to write")
    frames = _Frames(series.z_index, tuple(int(s) for s in space.shape), count, labelmap, source)
    descriptions = []
    numbers: dict[str, int] = {}
    for k, rec in enumerate(progress(records) if progress else records):
        if k >= count:
            raise MaskValidationError(f"{out}: more masks than the {count} announced")
        frames.paint(k, rec)
        descriptions.append(_segment_description(hd, k, rec))
        numbers[rec.name] = k + 1
    if len(numbers) != count:
        raise MaskValidationError(f"{out}: {len(numbers)} masks, {count} announced")
    seg = _segmentation(hd, series, frames.pixels, descriptions, labelmap, series_description)
    write_atomic(Path(out), lambda fh: seg.save_as(fh))
    return numbers


class _Frames:
    """The SEG's pixel array, filled mask by mask: BINARY ``(frames, rows, columns,
    segments)`` bools, or LABELMAP ``(frames, rows, columns)`` segment numbers."""

    def __init__(
        self, z_index: np.ndarray, shape: tuple[int, ...], count: int, labelmap: bool, source
    ) -> None:
        nz, ny, nx = shape
        self.z_index = z_index
        self.lacking = np.ones(nz, bool)  # slices the series has no image for
        self.lacking[z_index] = False
        self.labelmap = labelmap
        self.source = source
        if labelmap:
            self.pixels = np.zeros((len(z_index), ny, nx), smallest_uint_dtype(count))
        else:
            self.pixels = np.zeros((len(z_index), ny, nx, count), bool)

    def paint(self, k: int, rec: MaskRecord) -> None:
        """Put the ``k``-th mask in.

        Raises:
            MaskValidationError: Voxels on a slice the series has no image for, or (LABELMAP)
                an overlap with an earlier mask.
        """
        arr = rec.array if rec.array.dtype == np.bool_ else rec.array != 0
        if self.lacking.any() and arr[self.lacking].any():
            k0 = int(np.flatnonzero(self.lacking & arr.any(axis=(1, 2)))[0])
            raise MaskValidationError(
                f"mask {rec.name!r} has voxels on slice {k0}, which the source series "
                f"{self.source} has no image for; a SEG can only cover the series' images"
            )
        arr = arr[self.z_index]
        if not self.labelmap:
            self.pixels[..., k] = arr
            return
        if np.any(self.pixels[arr]):
            raise MaskValidationError(
                f"mask {rec.name!r} overlaps an earlier mask: a LABELMAP SEG cannot hold "
                "overlaps; write a BINARY SEG (the default) instead"
            )
        self.pixels[arr] = k + 1


def _segment_description(hd, k: int, rec: MaskRecord):
    """highdicom's description of segment ``k + 1`` from the mask's name and attributes
    (``Tissue`` codes and the fixed palette where it has none)."""
    from pydicom.sr.codedict import codes

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
        desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [tm]
    rm = _coded_concept(hd, a, "region_modifier", None)
    if rm is not None and region is not None:
        desc.AnatomicRegionSequence[0].AnatomicRegionModifierSequence = [rm]
    return desc


def _segmentation(hd, series, pixels: np.ndarray, descriptions: list, labelmap: bool, title: str):
    """The highdicom Segmentation of ``pixels`` on the source ``series``."""
    kind = hd.seg.SegmentationTypeValues
    return hd.seg.Segmentation(
        source_images=series.datasets,
        pixel_array=pixels,
        segmentation_type=kind.LABELMAP if labelmap else kind.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=900,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medmask",
        manufacturer_model_name="medmask",
        software_versions=_version(),
        device_serial_number="0",
        series_description=title,
    )


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
    from ..._version import __version__

    return f"medmask {__version__}"
