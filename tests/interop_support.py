"""Builders of foreign files for the interchange tests and benchmark: a CT series written
with pydicom on a given grid, SEGs built with highdicom, TotalSegmentator-style label maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medmask.geometry import lps_matrix
from medmask.spaces import Space


def oblique_space(shape_zyx=(6, 10, 12), spacing_xyz=(0.7, 0.8, 2.0), origin=(-20.0, 15.0, 30.0)):
    """A ``(z, y, x)`` space with rotated axes (not aligned with the patient axes)."""
    c, s = np.cos(0.3), np.sin(0.3)
    x = (c, s, 0.0)
    y = (-s * 0.96, c * 0.96, 0.28)
    n = np.cross(x, y)
    y = tuple(np.cross(n, x) / np.linalg.norm(np.cross(n, x)))
    z = tuple(np.cross(x, y))
    xyz = Space(
        shape=tuple(shape_zyx[::-1]),
        origin=origin,
        spacing=spacing_xyz,
        x_orientation=x,
        y_orientation=y,
        z_orientation=z,
    )
    return xyz.reverse_axis_order()


def write_ct_series(folder: Path, space: Space, *, seed: int = 0) -> list[Path]:
    """A CT series (one pydicom file per slice) on ``space``; returns the files."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    m = lps_matrix(space)
    nz, ny, nx = (int(v) for v in space.shape)
    xyz = space.reverse_axis_order()
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    rng = np.random.default_rng(seed)
    files = []
    for k in range(nz):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"ct_{k:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality = "CT"
        ds.PatientName, ds.PatientID = "Phantom^Medmask", "MM0001"
        ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20260101", "120000", "1"
        ds.ReferringPhysicianName, ds.StudyID = "", "1"
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.Manufacturer = "medmask tests"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [float(v) for v in (m[:3, 3] + m[:3, 2] * k)]
        ds.ImageOrientationPatient = [float(v) for v in (*xyz.x_orientation, *xyz.y_orientation)]
        ds.PixelSpacing = [float(xyz.spacing[1]), float(xyz.spacing[0])]
        ds.SliceThickness = float(xyz.spacing[2])
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = rng.integers(0, 2000, (ny, nx), dtype=np.int16).tobytes()
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def highdicom_seg(
    series_dir: Path,
    masks: list[np.ndarray],
    names: list[str],
    out: Path,
    *,
    seg_type: str = "BINARY",
    fractional: list[np.ndarray] | None = None,
) -> Path:
    """A SEG written by highdicom on the series in ``series_dir`` (masks are ``(z, y, x)``)."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    from medmask.conversions.dicom_seg import read_series_geometry

    series = read_series_geometry(series_dir)
    dss = series.datasets  # sorted along the normal, as the masks' z axis
    descs = [
        hd.seg.SegmentDescription(
            segment_number=k + 1,
            segment_label=n,
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Organ,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for k, n in enumerate(names)
    ]
    if seg_type == "LABELMAP":
        px = np.zeros(masks[0].shape, np.uint8)
        for k, m in enumerate(masks):
            px[m] = k + 1
        kind = hd.seg.SegmentationTypeValues.LABELMAP
    elif seg_type == "FRACTIONAL":
        px = np.stack(fractional, axis=-1).astype(np.float32)
        kind = hd.seg.SegmentationTypeValues.FRACTIONAL
    else:
        px = np.stack(masks, axis=-1)
        kind = hd.seg.SegmentationTypeValues.BINARY
    seg = hd.seg.Segmentation(
        source_images=dss,
        pixel_array=px,
        segmentation_type=kind,
        segment_descriptions=descs,
        series_instance_uid=hd.UID(),
        series_number=2,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="tests",
        manufacturer_model_name="tests",
        software_versions="1",
        device_serial_number="1",
    )
    seg.save_as(out)
    del pydicom
    return out


def caret_labelmap(
    path: Path, data_xyz: np.ndarray, affine: np.ndarray, names: dict[int, str]
) -> Path:
    """A label map with TotalSegmentator's names extension, written as TotalSegmentator does."""
    import nibabel as nib

    img = nib.Nifti1Image(data_xyz, affine)
    body = "".join(
        f'<Label Key="{k}" Red="0.5" Green="0.25" Blue="1" Alpha="1"><![CDATA[{n}]]></Label>\n'
        for k, n in names.items()
    )
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?> <CaretExtension>  <Date><![CDATA[2013-07-14T05:45:09]]>'
        '</Date>   <VolumeInformation Index="0">   <LabelTable>\n'
        + body
        + "  </LabelTable>  <StudyMetaDataLinkSet>  </StudyMetaDataLinkSet>  <VolumeType><![CDATA[Label]]>"
        "</VolumeType>   </VolumeInformation></CaretExtension>\n"
    )
    img.header.extensions.append(nib.nifti1.Nifti1Extension(0, xml.encode("utf-8")))
    nib.save(img, str(path))
    return path


def world_voxels(mask_zyx: np.ndarray, space: Space) -> set[tuple[float, float, float]]:
    """World (LPS) positions of a mask's voxels, rounded to 1e-3 mm."""
    m = lps_matrix(space)
    idx = np.argwhere(mask_zyx)[:, ::-1].astype(float)  # (x, y, z)
    w = idx @ m[:3, :3].T + m[:3, 3]
    return {tuple(v) for v in np.round(w, 3)}


def world_voxels_affine(
    array_ijk: np.ndarray, affine: np.ndarray
) -> set[tuple[float, float, float]]:
    """World positions of the non-zero voxels of an array whose index -> LPS affine is given."""
    idx = np.argwhere(array_ijk).astype(float)
    w = idx @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]
    return {tuple(v) for v in np.round(w, 3)}


def assert_same_world_voxels(
    mask_zyx: np.ndarray, space: Space, array_ijk: np.ndarray, affine
) -> None:
    """Assert that ``array_ijk`` (with index -> LPS ``affine``) holds exactly the voxels of
    ``mask_zyx`` at the same world positions (within 1e-3 mm)."""
    m = lps_matrix(space)
    inv = np.linalg.inv(m)
    idx = np.argwhere(array_ijk).astype(float)
    w = idx @ np.asarray(affine, float)[:3, :3].T + np.asarray(affine, float)[:3, 3]
    mine = w @ inv[:3, :3].T + inv[:3, 3]  # (x, y, z) indices on ``space``
    r = np.round(mine)
    step = np.linalg.norm(m[:3, :3], axis=0)
    assert (np.abs(mine - r) * step).max(initial=0.0) < 1e-3
    got = np.zeros(mask_zyx.shape, bool)
    r = r.astype(int)
    inside = np.all((r >= 0) & (r < np.array(mask_zyx.shape[::-1])), axis=1)
    assert inside.all(), "voxels outside the grid"
    got[r[:, 2], r[:, 1], r[:, 0]] = True
    assert np.array_equal(got, mask_zyx)
