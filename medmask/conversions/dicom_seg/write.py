"""Writing masks as a DICOM SEG (with highdicom) referencing their source series; see
:mod:`medmask.conversions.dicom_seg`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ...errors import MaskValidationError, SpaceMismatchError
from ...geometry import grid_differences
from ...spaces import GRID_ATOL, Space, describe_space, spaces_match
from ..common import MaskRecord
from ..labels import default_color
from .base import _highdicom, _pydicom, rgb_to_cielab
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
    from ...io.atomic import write_atomic
    from ...io.names import expect_name

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
    from ... import __version__

    return f"medmask {__version__}"
