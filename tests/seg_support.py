"""DICOM SEGs built frame by frame with pydicom (the ingest tests): any number of frames,
segments on chosen slices, identifiers and algorithm descriptions of one's choice, without
a source image series."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class SegGrid:
    """Where the frames lie: ``rows`` x ``cols`` pixels, axis-aligned unless ``orientation``
    is given, slice ``k`` at ``origin + k * step`` along the normal."""

    rows: int
    cols: int
    spacing: tuple[float, float] = (0.8, 0.7)  # (row spacing, column spacing)
    step: float = 2.0
    origin: tuple[float, float, float] = (-40.0, 12.5, 100.0)
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)

    def position(self, k: float) -> list[float]:
        o = np.asarray(self.orientation, float)
        normal = np.cross(o[:3], o[3:])
        return [float(v) for v in np.asarray(self.origin) + normal * self.step * k]


@dataclass
class SegIds:
    """The identifiers written into a SEG (``None``: left out)."""

    patient: str = "P0001"
    study: str | None = None
    series: str | None = None
    frame_of_reference: str | None = None
    referenced_series: str | None = "1.2.826.0.1.3680043.8.498.1"
    algorithm: tuple[str, str] | None = ("TotalSegmentator", "2.4.0")
    sop_instance: str | None = None
    extra: dict = field(default_factory=dict)


def write_seg(
    path: Path,
    grid: SegGrid,
    segments: list[tuple[str, list[tuple[float, np.ndarray]]]],
    *,
    ids: SegIds | None = None,
    instance_number: int = 1,
) -> Path:
    """A BINARY SEG whose segment ``k + 1`` (named ``segments[k][0]``) has one frame per
    ``(slice position, (rows, cols) bool frame)`` of ``segments[k][1]``, frames in segment
    order, bit-packed as the standard says (little bit order, frames back to back)."""
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ids = ids or SegIds()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    meta.MediaStorageSOPInstanceUID = ids.sop_instance or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID = ids.patient
    ds.StudyInstanceUID = ids.study or generate_uid()
    ds.SeriesInstanceUID = ids.series or generate_uid()
    ds.FrameOfReferenceUID = ids.frame_of_reference or generate_uid()
    ds.Modality, ds.InstanceNumber = "SEG", instance_number
    for key, value in ids.extra.items():
        setattr(ds, key, value)
    if ids.referenced_series:
        ref = Dataset()
        ref.SeriesInstanceUID = ids.referenced_series
        ref.ReferencedInstanceSequence = Sequence([])
        ds.ReferencedSeriesSequence = Sequence([ref])
    ds.SegmentationType = "BINARY"
    ds.Rows, ds.Columns = grid.rows, grid.cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    ds.SegmentSequence = Sequence(
        [_segment(k + 1, name, ids) for k, (name, _f) in enumerate(segments)]
    )
    shared = Dataset()
    ori, meas = Dataset(), Dataset()
    ori.ImageOrientationPatient = list(grid.orientation)
    meas.PixelSpacing = list(grid.spacing)
    meas.SliceThickness = grid.step
    meas.SpacingBetweenSlices = grid.step
    shared.PlaneOrientationSequence = Sequence([ori])
    shared.PixelMeasuresSequence = Sequence([meas])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame, frames = [], []
    for k, (_name, items) in enumerate(segments):
        for z, frame in items:
            item, pos, sid = Dataset(), Dataset(), Dataset()
            pos.ImagePositionPatient = grid.position(z)
            sid.ReferencedSegmentNumber = k + 1
            item.PlanePositionSequence = Sequence([pos])
            item.SegmentIdentificationSequence = Sequence([sid])
            per_frame.append(item)
            frames.append(np.asarray(frame, bool).ravel())
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.NumberOfFrames = len(frames)
    bits = np.concatenate(frames) if frames else np.zeros(0, bool)
    packed = np.packbits(bits, bitorder="little").tobytes()
    ds.PixelData = packed + (b"\0" if len(packed) % 2 else b"")
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def _segment(number: int, name: str, ids: SegIds):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    def code(value: str, meaning: str) -> Dataset:
        c = Dataset()
        c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, "SCT", meaning
        return c

    seg = Dataset()
    seg.SegmentNumber = number
    seg.SegmentLabel = name
    seg.SegmentedPropertyCategoryCodeSequence = Sequence([code("85756007", "Tissue")])
    seg.SegmentedPropertyTypeCodeSequence = Sequence([code("91772007", "Organ")])
    if ids.algorithm:
        seg.SegmentAlgorithmType = "AUTOMATIC"
        seg.SegmentAlgorithmName = ids.algorithm[0]
        ident = Dataset()
        ident.AlgorithmName, ident.AlgorithmVersion = ids.algorithm
        family = code("123109", "Artificial Intelligence")
        family.CodingSchemeDesignator = "DCM"
        ident.AlgorithmFamilyCodeSequence = Sequence([family])
        seg.SegmentationAlgorithmIdentificationSequence = Sequence([ident])
    else:
        seg.SegmentAlgorithmType = "MANUAL"
    return seg


def square_frames(
    grid: SegGrid, slices: list[float], top: int, left: int, size: int
) -> list[tuple[float, np.ndarray]]:
    """Frames holding one ``size`` x ``size`` square at ``(top, left)`` on each slice."""
    frame = np.zeros((grid.rows, grid.cols), bool)
    frame[top : top + size, left : left + size] = True
    return [(z, frame) for z in slices]
