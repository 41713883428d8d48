"""The dataset of a SEG around its frames: the modules of the Segmentation IOD (PS3.3 A.51;
the Label Map Segmentation IOD for LABELMAP) as pydicom datasets, with the patient, study
and frame of reference of the source series, the segments' descriptions, the shared
functional groups and the dimensions. The frames themselves are :mod:`.encode`'s."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from ..labels import default_color
from .base import LABELMAP_SEG_SOP_CLASS, SEG_SOP_CLASS, _pydicom, rgb_to_cielab

__all__ = ["segment_item", "seg_dataset", "FROM_SOURCE", "ds_text"]

#: Attributes copied from the source series (patient, study, frame of reference), as
#: highdicom does; Type 2 ones are written empty when the source lacks them.
FROM_SOURCE = (
    ("PatientName", True),
    ("PatientID", True),
    ("PatientBirthDate", True),
    ("PatientSex", True),
    ("StudyInstanceUID", False),
    ("StudyDate", True),
    ("StudyTime", True),
    ("ReferringPhysicianName", True),
    ("StudyID", True),
    ("AccessionNumber", True),
    ("FrameOfReferenceUID", False),
    ("PositionReferenceIndicator", True),
)


def ds_text(values: object) -> list[str]:
    """Decimal strings (DS) of at most 16 characters, as DICOM requires (PS3.5 6.2), for
    numbers read from a source file (which may hold longer ones)."""
    from pydicom.valuerep import format_number_as_ds

    one = isinstance(values, str | bytes) or not isinstance(values, Sequence)
    return [format_number_as_ds(float(v)) for v in ([values] if one else values)]


def _code(value: str, scheme: str, meaning: str):
    ds = _pydicom().Dataset()
    ds.CodeValue, ds.CodingSchemeDesignator, ds.CodeMeaning = value, scheme, meaning[:64]
    return ds


def _coded(attrs: dict, key: str, default: tuple[str, str, str] | None):
    c = attrs.get(key)
    if isinstance(c, dict) and c.get("value"):
        return _code(str(c["value"]), str(c.get("scheme", "")), str(c.get("meaning", "")))
    return None if default is None else _code(*default)


_TISSUE = ("85756007", "SCT", "Tissue")


def segment_item(number: int, name: str, attrs: dict[str, Any], k: int):
    """One item of the SegmentSequence, from a mask's name and attributes.

    Args:
        number: The segment number (1, 2, ...).
        name: The segment label (the mask's name, cut to 64 characters).
        attrs: The mask's attributes (colour, coded terminology, description); ``Tissue``
            codes and the palette's colour where there are none.
        k: The mask's position, for its default colour.

    Returns:
        A pydicom ``Dataset``.
    """
    pydicom = _pydicom()
    item = pydicom.Dataset()
    item.SegmentedPropertyCategoryCodeSequence = [_coded(attrs, "category", _TISSUE)]
    item.SegmentNumber = int(number)
    item.SegmentLabel = name[:64]
    if isinstance(attrs.get("description"), str):
        item.SegmentDescription = attrs["description"][:64]
    item.SegmentAlgorithmType = "MANUAL"
    color = attrs.get("color") if isinstance(attrs.get("color"), list) else default_color(k)
    item.RecommendedDisplayCIELabValue = list(rgb_to_cielab(color))
    kind = _coded(attrs, "type", _TISSUE)
    modifier = _coded(attrs, "type_modifier", None)
    if modifier is not None:
        kind.SegmentedPropertyTypeModifierCodeSequence = [modifier]
    item.SegmentedPropertyTypeCodeSequence = [kind]
    region = _coded(attrs, "region", None)
    if region is not None:
        rmod = _coded(attrs, "region_modifier", None)
        if rmod is not None:
            region.AnatomicRegionModifierSequence = [rmod]
        item.AnatomicRegionSequence = [region]
    return item


def _background():
    """Segment 0 of a LABELMAP SEG: the background (DCM 125040)."""
    pydicom = _pydicom()
    item = pydicom.Dataset()
    item.SegmentedPropertyCategoryCodeSequence = [_code("125040", "DCM", "Background")]
    item.SegmentNumber = 0
    item.SegmentLabel = "Background"
    item.SegmentAlgorithmType = "MANUAL"
    item.SegmentedPropertyTypeCodeSequence = [_code("125040", "DCM", "Background")]
    return item


def _references(pydicom, datasets: Sequence) -> tuple[list, list]:
    """The ReferencedSeriesSequence and SourceImageSequence of the source images."""
    instances = []
    for src in datasets:
        ref = pydicom.Dataset()
        ref.ReferencedSOPClassUID = src.SOPClassUID
        ref.ReferencedSOPInstanceUID = src.SOPInstanceUID
        instances.append(ref)
    series = pydicom.Dataset()
    series.ReferencedInstanceSequence = instances
    series.SeriesInstanceUID = datasets[0].SeriesInstanceUID
    return [series], list(instances)


def _equipment(pydicom, source, version: str, when: datetime.datetime) -> list:
    acquisition = pydicom.Dataset()
    acquisition.Manufacturer = str(source.get("Manufacturer", "") or "")
    acquisition.ContributionDescription = "Acquisition equipment of the source image(s)"
    acquisition.PurposeOfReferenceCodeSequence = [_code("109101", "DCM", "Acquisition Equipment")]
    processing = pydicom.Dataset()
    processing.Manufacturer = "medmask"
    processing.ManufacturerModelName = "medmask"
    processing.SoftwareVersions = version
    processing.ContributionDateTime = when.strftime("%Y%m%d%H%M%S.%f")
    processing.ContributionDescription = "Software used to create this instance"
    processing.PurposeOfReferenceCodeSequence = [_code("109102", "DCM", "Processing Equipment")]
    return [acquisition, processing]


def _dimensions(pydicom, labelmap: bool) -> tuple[list, list]:
    org = pydicom.uid.generate_uid()
    organization = pydicom.Dataset()
    organization.DimensionOrganizationUID = org
    index = []
    pointers = [] if labelmap else [(0x0062000B, 0x0062000A, "Referenced Segment Number")]
    pointers.append((0x00200032, 0x00209113, "Image Position Patient"))
    for tag, group, label in pointers:
        item = pydicom.Dataset()
        item.DimensionOrganizationUID = org
        item.DimensionIndexPointer = tag
        item.FunctionalGroupPointer = group
        item.DimensionDescriptionLabel = label
        index.append(item)
    return [organization], index


def _shared(pydicom, source, spacing_z: float) -> list:
    orientation = pydicom.Dataset()
    orientation.ImageOrientationPatient = ds_text(source.ImageOrientationPatient)
    measures = pydicom.Dataset()
    thickness = source.get("SliceThickness")
    measures.SliceThickness = ds_text(thickness if thickness not in (None, "") else spacing_z)[0]
    measures.SpacingBetweenSlices = ds_text(spacing_z)[0]
    measures.PixelSpacing = ds_text(source.PixelSpacing)
    shared = pydicom.Dataset()
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelMeasuresSequence = [measures]
    return [shared]


def seg_dataset(
    datasets: Sequence,
    segments: Sequence,
    *,
    labelmap: bool,
    bits: int,
    overlap: str,
    spacing_z: float,
    title: str,
    version: str,
):
    """The SEG's file dataset, every module but the frames (Per-Frame Functional Groups,
    NumberOfFrames and Pixel Data, which the caller sets).

    Args:
        datasets: The source series' datasets (headers are enough), sorted along the slices.
        segments: The SegmentSequence items (:func:`segment_item`), numbered 1, 2, ...
        labelmap: A LABELMAP SEG (Label Map Segmentation Storage) instead of BINARY.
        bits: Bits allocated per pixel (1 for BINARY; 8 or 16 for LABELMAP).
        overlap: ``SegmentsOverlap``: ``"YES"``, ``"NO"`` or ``"UNDEFINED"``.
        spacing_z: The slice spacing (mm).
        title: The SeriesDescription.
        version: The SoftwareVersions.

    Returns:
        A ``pydicom.dataset.FileDataset`` (explicit VR little endian).
    """
    pydicom = _pydicom()
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    src = datasets[0]
    when = datetime.datetime.now()
    sop_class = LABELMAP_SEG_SOP_CLASS if labelmap else SEG_SOP_CLASS
    meta = pydicom.dataset.FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationVersionName = version.replace(" ", "")[:16]
    ds = pydicom.dataset.FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.InstanceCreationDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.InstanceCreationTime = ds.ContentTime = when.strftime("%H%M%S.%f")
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    for keyword, type2 in FROM_SOURCE:
        value = src.get(keyword)
        if value is not None or type2:
            setattr(ds, keyword, value if value is not None else "")
    ds.Modality = "SEG"
    ds.Manufacturer = ds.ManufacturerModelName = "medmask"
    ds.DeviceSerialNumber, ds.SoftwareVersions = "0", version
    ds.SeriesDescription = title[:64]
    ds.ReferencedSeriesSequence, ds.SourceImageSequence = _references(pydicom, datasets)
    ds.ContributingEquipmentSequence = _equipment(pydicom, src, version, when)
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber, ds.InstanceNumber = 900, 1
    organization, index = _dimensions(pydicom, labelmap)
    ds.DimensionOrganizationSequence, ds.DimensionIndexSequence = organization, index
    if labelmap:
        ds.DimensionOrganizationType = "3D"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(src.Rows), int(src.Columns)
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit, ds.PixelRepresentation = bits - 1, 0
    if labelmap:  # its VR is "US or SS": say which, pydicom does not guess it here
        ds[0x00280120] = pydicom.DataElement(0x00280120, "US", 0)
    ds.LossyImageCompression = "00"
    ds.SegmentationType = "LABELMAP" if labelmap else "BINARY"
    ds.SegmentSequence = ([_background()] if labelmap else []) + list(segments)
    ds.SegmentsOverlap = overlap
    ds.ContentLabel = "SEGMENTATION"
    ds.ContentDescription = ""
    ds.ContentCreatorName = ""
    ds.PresentationLUTShape = "IDENTITY"
    ds.SharedFunctionalGroupsSequence = _shared(pydicom, src, spacing_z)
    return ds
