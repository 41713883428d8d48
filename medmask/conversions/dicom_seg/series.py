"""The source image series of a DICOM SEG: its datasets and ``(z, y, x)`` grid, and where
frame positions fall on it (used by reading with ``reference=`` and by writing)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import MaskValidationError
from ...geometry import lps_matrix, lps_to_space
from ...spaces import GRID_ATOL, Space
from ..common import MAX_VOXELS
from .base import _err, _floats, _pydicom


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


def _image_series(
    where: str | os.PathLike | Sequence[str | os.PathLike], headers_only: bool
) -> tuple[Path, dict[str, list]]:
    """``(folder for messages, {SeriesInstanceUID: datasets})`` of the image files (those
    with a plane position and pixel spacing) in a folder or a list of files.

    Raises:
        MaskValidationError: A folder that is not one.
    """
    pydicom = _pydicom()
    if isinstance(where, str | os.PathLike):
        folder = Path(where)
        if not folder.is_dir():
            raise MaskValidationError(f"{folder}: not a folder of DICOM files")
        files = sorted(p for p in folder.rglob("*") if p.is_file())
    else:
        files = sorted(Path(f) for f in where)
        folder = Path(os.path.commonpath([str(f) for f in files])) if files else Path(".")
    groups: dict[str, list] = {}
    for f in files:
        try:
            ds = pydicom.dcmread(f, force=False, stop_before_pixels=headers_only)
        except Exception:  # noqa: BLE001 - not DICOM: skip
            continue
        if "ImagePositionPatient" not in ds or "PixelSpacing" not in ds:
            continue
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append(ds)
    return folder, groups


def _pick_series(folder: Path, groups: dict[str, list], series_uid: str | None) -> str:
    """The series to read: ``series_uid``, or the only one.

    Raises:
        MaskValidationError: None, not ``series_uid``, or several without ``series_uid``.
    """
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
        return series_uid
    if len(groups) > 1:
        raise MaskValidationError(
            f"{folder}: holds {len(groups)} series ({sorted(groups)[:4]}); give a folder with one"
        )
    return next(iter(groups))


def read_series_geometry(
    folder: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    series_uid: str | None = None,
    headers_only: bool = False,
) -> _Series:
    """Read a DICOM image series: its datasets (sorted along the slice normal) and its
    ``(z, y, x)`` grid.

    Args:
        folder: A folder holding the series' files (searched recursively), or the files
            themselves; other files are skipped (non-DICOM files, other SOP classes, SEGs).
        series_uid: Pick this series when there are several.
        headers_only: Read the datasets without their pixel data (enough for the grid).

    Returns:
        The series (``datasets``, ``space``, ``series_uid``, ``frame_of_reference``).

    Raises:
        MaskValidationError: No image series, several series without ``series_uid``, or
            slices that do not make one regular grid.
    """
    folder, groups = _image_series(folder, headers_only)
    uid = _pick_series(folder, groups, series_uid)
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
