"""NIfTI conversion (needs the ``nifti`` extra: nibabel).

Getting existing masks in and out: a folder of binary masks (TotalSegmentator's
layout, one ``<organ>.nii.gz`` per organ), a multi-label NIfTI with its label table,
or a single file become archives / masks; archives and masks go back to
``.nii.gz`` files with the same data and the same affine.

Geometry follows what MONAI reports for a NIfTI file: nibabel's ``img.affine``
(the sform when its code is set, else the qform), a RAS affine, except for headers
whose pixdim contradicts it, where MONAI (and medmask) take the form that agrees
with pixdim (:func:`effective_affine`). medmask's ``Space`` is LPS, so
``affine_lps = diag(-1, -1, 1, 1) @ affine_ras``. Arrays are ``(x, y, z)`` in
nibabel and ``(z, y, x)`` in medmask (a transpose).

Note: ``spacetransformer.get_space_from_nifti`` prefers the qform, which differs
from ``img.affine`` when both forms are set; this module does not use it.

Grids are compared with :data:`medmask.spaces.GRID_ATOL` (1e-3 mm, and 1e-3 on
direction cosines): float32 rounding of real sforms moves affines by ~1e-4 and is
the same grid; a shifted or rotated grid is not.

Example:
    >>> from medmask.nifti import folder_to_archive, archive_to_folder   # doctest: +SKIP
    >>> folder_to_archive("s0000/segmentations", "s0000.mska")          # doctest: +SKIP
    >>> archive_to_folder("s0000.mska", "restored/")                    # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import tempfile
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

from .errors import MaskValidationError, SpaceMismatchError
from .mapping import LabelMapping
from .ops import smallest_uint_dtype
from .segmask import SegmentationMask
from .spaces import GRID_ATOL, Space, describe_space, spaces_match
from .storage import MaskArchive

__all__ = [
    "affine_to_space",
    "space_to_affine",
    "effective_affine",
    "read_nifti",
    "nifti_to_segmask",
    "folder_to_archive",
    "labelmap_to_archive",
    "labelmap_to_msk",
    "segmask_to_nifti",
    "archive_to_folder",
    "archive_to_labelmap",
    "read_label_table",
    "resample_nearest",
    "safe_filename",
    "strip_suffix",
    "nifti_files",
    "MaskResampledWarning",
    "NIFTI_SUFFIXES",
]

#: File name endings recognised as NIfTI.
NIFTI_SUFFIXES = (".nii.gz", ".nii")
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


class MaskResampledWarning(UserWarning):
    """A mask was resampled onto the archive's grid (only when the caller asked for it)."""


def _nib():
    try:
        import nibabel
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("NIfTI support needs nibabel: pip install 'medmask[nifti]'") from None
    return nibabel


# -- geometry -------------------------------------------------------------------------------
def affine_to_space(affine: np.ndarray, shape_xyz: tuple[int, ...], *, atol: float = 1e-3) -> Space:
    """The ``(z, y, x)`` medmask space of a NIfTI grid.

    Args:
        affine: The 4x4 RAS affine (nibabel's ``img.affine``, or :func:`effective_affine`).
        shape_xyz: The NIfTI array shape ``(x, y, z)`` (extra dimensions ignored).
        atol: Tolerance on the orthogonality of the axes (largest allowed entry of
            ``R.T @ R - I`` for the normalised direction matrix ``R``).

    Returns:
        The space in ``(z, y, x)`` order (``.reverse_axis_order()`` gives ``(x, y, z)``).

    Raises:
        MaskValidationError: The affine is not a finite 4x4 matrix, has a zero-length
            axis, or is sheared (non-orthogonal axes).
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise MaskValidationError(f"affine must be a finite 4x4 matrix, got shape {a.shape}")
    if len(shape_xyz) < 3 or any(int(s) <= 0 for s in shape_xyz[:3]):
        raise MaskValidationError(f"shape must hold three positive sizes, got {tuple(shape_xyz)}")
    lps = _LPS @ a
    cols = lps[:3, :3]
    spacing = np.linalg.norm(cols, axis=0)
    if np.any(spacing <= 0):
        raise MaskValidationError(f"affine has a zero-length axis: {a.tolist()}")
    rot = cols / spacing
    err = float(np.abs(rot.T @ rot - np.eye(3)).max())
    if err > atol:
        raise MaskValidationError(
            f"affine is sheared (its axes are not orthogonal, deviation {err:.2g} > {atol}); "
            "medmask grids need orthogonal axes"
        )
    xyz = Space(
        shape=tuple(int(s) for s in shape_xyz[:3]),
        origin=tuple(float(v) for v in lps[:3, 3]),
        spacing=tuple(float(v) for v in spacing),
        x_orientation=tuple(float(v) for v in rot[:, 0]),
        y_orientation=tuple(float(v) for v in rot[:, 1]),
        z_orientation=tuple(float(v) for v in rot[:, 2]),
    )
    return xyz.reverse_axis_order()


def space_to_affine(space_zyx: Space) -> np.ndarray:
    """The 4x4 RAS affine (as nibabel/MONAI report it) of a ``(z, y, x)`` medmask space.

    Args:
        space_zyx: A medmask space (``(z, y, x)`` order, as ``SegmentationMask.space``).

    Returns:
        A float64 4x4 array; column ``k`` of the upper 3x3 block is the RAS step of
        NIfTI axis ``k`` (``x``, ``y``, ``z``), the last column the RAS centre of voxel 0.
    """
    xyz = space_zyx.reverse_axis_order()
    lps = np.eye(4)
    rot = np.column_stack([xyz.x_orientation, xyz.y_orientation, xyz.z_orientation])
    lps[:3, :3] = rot * np.asarray(xyz.spacing, dtype=np.float64)
    lps[:3, 3] = xyz.origin
    return _LPS @ lps


def _spacing(affine: np.ndarray, rank: int) -> np.ndarray:
    sp = np.sqrt(np.sum(np.asarray(affine, float)[:rank, :rank] ** 2, axis=0))
    sp[sp == 0] = 1.0
    return sp


def effective_affine(img) -> np.ndarray:
    """The RAS affine MONAI's NIfTI loading reports for a nibabel image.

    That is ``img.affine`` (the sform when its code is set, else the qform), except
    for headers whose pixdim contradicts it: then, like MONAI's
    ``correct_nifti_header_if_necessary``, take the form whose spacing agrees with
    pixdim (the qform when the sform is the odd one out, and vice versa), stored the
    way MONAI stores it (through the header's float32 fields), so that the affine is
    bit for bit the one ``LoadImage`` reports.

    Args:
        img: A ``nibabel.Nifti1Image`` (or ``Nifti2Image``).

    Returns:
        A float64 4x4 RAS affine.
    """
    affine = np.array(img.affine, dtype=np.float64)
    header = img.header
    rank = int(header["dim"][0])
    if rank >= 5:
        return affine
    pixdim = np.asarray(header.get_zooms()[:rank], dtype=np.float64)
    if np.allclose(pixdim, _spacing(affine, rank)):
        return affine
    sform, qform = img.get_sform(), img.get_qform()
    sform_ok = np.allclose(_spacing(sform, rank), pixdim)
    qform_ok = np.allclose(_spacing(qform, rank), pixdim)
    # As MONAI: copy the agreeing form into the other one's header fields (float32 srow,
    # or quaternion), then take nibabel's best affine; on a copy of the header, so that
    # the result is bit for bit what MONAI reports.
    fixed = header.copy()
    if header["sform_code"] != 0:
        if sform_ok or not qform_ok:
            return affine
        fixed.set_sform(qform)
        return np.array(fixed.get_best_affine(), dtype=np.float64)
    if header["qform_code"] != 0 and not qform_ok and sform_ok:
        fixed.set_qform(sform)
        return np.array(fixed.get_best_affine(), dtype=np.float64)
    return affine


def resample_nearest(array_zyx: np.ndarray, src: Space, dst: Space) -> np.ndarray:
    """Nearest-neighbour resampling of a label array from grid ``src`` onto grid ``dst``.

    Voxels of ``dst`` whose centre falls outside ``src`` become 0. Labels are never
    blended (nearest neighbour), so a binary mask stays binary.

    Args:
        array_zyx: The ``(z, y, x)`` array on ``src``.
        src: Its ``(z, y, x)`` space.
        dst: The target ``(z, y, x)`` space.

    Returns:
        A new array of ``dst.shape`` and the dtype of ``array_zyx``.
    """
    s, d = src.reverse_axis_order(), dst.reverse_axis_order()

    def index_to_world(sp: Space) -> tuple[np.ndarray, np.ndarray]:
        rot = np.column_stack([sp.x_orientation, sp.y_orientation, sp.z_orientation])
        return rot * np.asarray(sp.spacing, float), np.asarray(sp.origin, float)

    m_src, o_src = index_to_world(s)
    m_dst, o_dst = index_to_world(d)
    inv = np.linalg.inv(m_src)
    a = inv @ m_dst  # dst (x, y, z) index -> src (x, y, z) index
    b = inv @ (o_dst - o_src)
    nx, ny, nz = (int(v) for v in d.shape)
    sx, sy, sz = (int(v) for v in s.shape)
    out = np.zeros((nz, ny, nx), array_zyx.dtype)
    yy, xx = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
    base = a[:, 0, None, None] * xx + a[:, 1, None, None] * yy + b[:, None, None]
    for z in range(nz):
        idx = np.floor(base + a[:, 2, None, None] * z + 0.5).astype(np.int64)
        ix, iy, iz = idx
        ok = (ix >= 0) & (ix < sx) & (iy >= 0) & (iy < sy) & (iz >= 0) & (iz < sz)
        out[z][ok] = array_zyx[iz[ok], iy[ok], ix[ok]]
    return out


# -- reading --------------------------------------------------------------------------------
def _load(path: str | os.PathLike):
    """``nibabel.load`` with every failure turned into one readable MaskValidationError."""
    nib = _nib()
    try:
        return nib.load(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - nibabel raises many unrelated types
        raise MaskValidationError(
            f"{path}: cannot read as NIfTI ({type(exc).__name__}: {_first_line(exc)})"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_nifti(path: str | os.PathLike, *, allow_float: bool = False) -> tuple[np.ndarray, Space]:
    """Read a 3-D integer NIfTI as a ``(z, y, x)`` array and its space.

    Args:
        path: A ``.nii`` or ``.nii.gz`` file.
        allow_float: Accept float data whose values are all whole, non-negative numbers
            (converted to the smallest unsigned integer dtype). By default float data
            is refused: masks hold integer labels.

    Returns:
        ``(array, space)``: the array in ``(z, y, x)`` order (integer or bool dtype as
        stored) and its ``(z, y, x)`` space from :func:`effective_affine`.

    Raises:
        FileNotFoundError: No such file.
        MaskValidationError: Not a readable NIfTI (damaged, truncated, not gzip), not
            3-D (a 4-D file with a singleton 4th axis is accepted), float data (unless
            ``allow_float`` and whole numbers), negative values, or a sheared affine.
    """
    img = _load(path)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) > 3 and all(s == 1 for s in shape[3:]):
        shape = shape[:3]
    if len(shape) != 3:
        raise MaskValidationError(
            f"{path}: expected a 3-D image, got {len(img.shape)}-D shape {tuple(img.shape)}; "
            "medmask stores 3-D masks (split 4-D files into one file per volume first)"
        )
    try:
        data = np.asanyarray(img.dataobj).reshape(shape)
    except Exception as exc:  # noqa: BLE001 - truncated gzip gives EOFError, zlib.error, ...
        raise MaskValidationError(
            f"{path}: cannot read the voxel data ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    if data.dtype.kind == "f":
        if not allow_float:
            raise MaskValidationError(
                f"{path}: float data ({data.dtype}, stored as {img.get_data_dtype()}); masks hold "
                "integer labels (allow_float=True / --allow-float accepts whole-number floats)"
            )
        if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
            raise MaskValidationError(
                f"{path}: float data with non-integer values ({data.dtype}); masks hold integer labels"
            )
        if data.size and data.min() < 0:
            raise MaskValidationError(f"{path}: negative values; labels must be >= 0")
        data = data.astype(smallest_uint_dtype(int(data.max()) if data.size else 0))
    elif data.dtype.kind == "i":
        if data.size and data.min() < 0:
            raise MaskValidationError(
                f"{path}: negative values (min {int(data.min())}); labels must be >= 0"
            )
    elif data.dtype.kind not in "ub":
        raise MaskValidationError(f"{path}: unsupported data type {data.dtype}")
    try:
        space = affine_to_space(effective_affine(img), shape)
    except MaskValidationError as exc:
        raise MaskValidationError(f"{path}: {exc}") from None
    return np.ascontiguousarray(data.transpose(2, 1, 0)), space


def nifti_to_segmask(
    path: str | os.PathLike,
    name: str | None = None,
    *,
    binary: bool = True,
    mapping: Mapping[str, int] | None = None,
    allow_float: bool = False,
) -> SegmentationMask:
    """One NIfTI file as a :class:`SegmentationMask`.

    Args:
        path: The file.
        name: Name of the mask (default: the file name without ``.nii.gz``); used when
            ``binary``.
        binary: Require values 0/1 and return a bool mask ``{name: 1}``. Otherwise the
            values are labels, named by ``mapping`` (default: ``label_<n>``).
        mapping: ``{name: label}`` for a multi-label file; every non-zero value in the
            file must have a name.
        allow_float: See :func:`read_nifti`.

    Returns:
        The mask, with the space of the file.

    Raises:
        MaskValidationError: Non-binary values in a binary mask, labels missing from
            ``mapping``, float or 4-D data, an unreadable file.
    """
    array, space = read_nifti(path, allow_float=allow_float)
    if binary:
        if array.dtype != np.bool_ and array.size and array.max() > 1:
            values = np.unique(array)
            raise MaskValidationError(
                f"{path}: a binary mask holds values {values[:8].tolist()}"
                f"{' ...' if values.size > 8 else ''}; use the multi-label route "
                "(a label table: labelmap_to_archive, or 'medmask pack FILE --labels TABLE')"
            )
        return SegmentationMask(
            array.astype(bool, copy=False),
            {name or strip_suffix(Path(path).name): 1},
            space,
            copy=False,
        )
    present = [int(v) for v in np.unique(array) if v]
    if mapping is None:
        mapping = {f"label_{v}": v for v in present}
    _check_table_covers(path, present, mapping)
    try:
        return SegmentationMask(array, mapping, space, copy=False)
    except MaskValidationError as exc:
        raise MaskValidationError(f"{path}: {exc}") from None


def _check_table_covers(path: object, present: Iterable[int], labels: Mapping[str, int]) -> None:
    missing = sorted(set(present) - {int(v) for v in labels.values()})
    if missing:
        shown = ", ".join(map(str, missing[:12])) + (" ..." if len(missing) > 12 else "")
        raise MaskValidationError(
            f"{path}: labels [{shown}] are not in the label table ({len(labels)} entries); "
            "they would lose their voxels"
        )


def strip_suffix(filename: str) -> str:
    """The mask name of a file name: ``liver.nii.gz`` -> ``liver``.

    Args:
        filename: A file name (not a path).

    Returns:
        The name without ``.nii.gz`` / ``.nii``.
    """
    for suffix in NIFTI_SUFFIXES:
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


def nifti_files(folder: str | os.PathLike) -> list[Path]:
    """The NIfTI files directly inside ``folder``, sorted by name (hidden files skipped).

    Args:
        folder: A folder.

    Returns:
        Paths of the ``.nii.gz`` / ``.nii`` files.
    """
    folder = Path(folder)
    return sorted(
        p
        for p in folder.iterdir()
        if p.name.endswith(NIFTI_SUFFIXES) and not p.name.startswith(".") and p.is_file()
    )


def folder_to_archive(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    codec: str | None = None,
    atol: float = GRID_ATOL,
    resample: bool = False,
    allow_float: bool = False,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> list[str]:
    """Pack a folder of binary NIfTI masks (TotalSegmentator layout) into one archive.

    Names come from the file names (``liver.nii.gz`` -> ``liver``). Every file must be
    on the grid of the first (within ``atol``; the archive keeps the first file's
    grid) unless ``resample``. The archive is written atomically: on any error nothing
    is left at ``out`` (an archive already there is kept unchanged).

    Args:
        folder: The folder holding ``<name>.nii.gz`` files.
        out: The ``.mska`` to write.
        codec: ``None`` (version 2) or ``"zstd"`` (version 1, readable by medmask 0.1.x).
        atol: Grid tolerance (mm, and unitless for directions).
        resample: Resample masks on another grid onto the first file's grid (nearest
            neighbour; a :class:`MaskResampledWarning` names each one) instead of
            raising.
        allow_float: Accept float files holding 0/1 (see :func:`read_nifti`).
        progress: Optional wrapper for the file iterable (e.g. ``tqdm``).

    Returns:
        The stored names, in order.

    Raises:
        MaskValidationError: No NIfTI files, a non-binary, float, 4-D or unreadable mask.
        SpaceMismatchError: A file's grid (shape, spacing, origin or axes) differs from
            the first file's; the message names the file and both grids.
    """
    files = nifti_files(folder)
    if not files:
        raise MaskValidationError(f"{folder}: no .nii.gz / .nii files found")
    names = []
    with MaskArchive(out, "w", codec=codec) as ar:
        for f in progress(files) if progress else files:
            seg = nifti_to_segmask(f, allow_float=allow_float)
            name = strip_suffix(f.name)
            if ar.space is not None and not spaces_match(ar.space, seg.space, atol):
                if not resample:
                    raise SpaceMismatchError(
                        f"{f}: its grid differs from the archive's grid "
                        f"({_grid_differences(ar.space, seg.space)}): "
                        f"file {describe_space(seg.space)}; archive {describe_space(ar.space)} "
                        f"(taken from {files[0].name}; tolerance {atol}); "
                        "resample it first, or pass resample=True / --resample"
                    )
                warnings.warn(
                    f"{f}: resampled (nearest neighbour) from {describe_space(seg.space)} "
                    f"onto the archive's grid {describe_space(ar.space)}",
                    MaskResampledWarning,
                    stacklevel=2,
                )
                seg = SegmentationMask(
                    resample_nearest(seg.data, seg.space, ar.space), {name: 1}, ar.space, copy=False
                )
            ar.add_segmask(seg, name)
            names.append(name)
    return names


def _grid_differences(a: Space, b: Space) -> str:
    """Which parts of two grids differ, for messages: ``"origin by 1 mm"``."""
    if tuple(a.shape) != tuple(b.shape):
        return f"shape {tuple(b.shape)} vs {tuple(a.shape)} (z, y, x)"
    out = []
    for field, unit in (("spacing", " mm"), ("origin", " mm")):
        d = float(np.abs(np.subtract(getattr(a, field), getattr(b, field))).max())
        if d > GRID_ATOL:
            out.append(f"{field} by {d:.3g}{unit}")
    rot = max(
        float(np.abs(np.subtract(getattr(a, f), getattr(b, f))).max())
        for f in ("x_orientation", "y_orientation", "z_orientation")
    )
    if rot > GRID_ATOL:
        out.append(f"axes by {rot:.3g} (direction cosines)")
    return ", ".join(out) or "within tolerance"


def read_label_table(path: str | os.PathLike) -> dict[str, int]:
    """Read a label table.

    Accepted forms: JSON ``{name: label}``; JSON ``{label: name}`` (TotalSegmentator's
    ``class_map``, keys as strings); a JSON list of names (TotalSegmentator's class
    list, label = position + 1); or a text file of ``label name`` (or ``label,name``)
    lines or of bare names (label = line number), ``#`` comments allowed.

    Args:
        path: The table file.

    Returns:
        ``{name: label}`` in file order.

    Raises:
        MaskValidationError: The file cannot be understood, or two names share a label.
        OSError: The file cannot be read.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        obj = json.loads(text)
    except ValueError:
        obj = _NOT_JSON
    if obj is _NOT_JSON:
        table: dict[str, int] = {}
        lines = [ln.strip() for ln in text.splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("#")]
        for k, ln in enumerate(lines, start=1):
            parts = ln.replace(",", " ").replace("\t", " ").split(None, 1)
            if len(parts) == 2 and parts[0].isdigit():
                name, label = parts[1].strip(), int(parts[0])
            else:
                name, label = ln, k
            if name in table:
                raise MaskValidationError(f"{path}: name {name!r} appears twice")
            table[name] = label
        return _as_table(path, table)
    if isinstance(obj, list):
        if not all(isinstance(n, str) for n in obj):
            raise MaskValidationError(f"{path}: a JSON list label table must hold names (strings)")
        return _as_table(path, {n: k for k, n in enumerate(obj, start=1)})
    if isinstance(obj, dict):
        if obj and all(str(k).strip().isdigit() for k in obj):
            if not all(isinstance(v, str) for v in obj.values()):
                raise MaskValidationError(f"{path}: a {{label: name}} table must map to names")
            return _as_table(path, {v: int(k) for k, v in obj.items()})
        return _as_table(path, obj)
    raise MaskValidationError(f"{path}: label table must be a JSON object or list, or a text file")


_NOT_JSON = object()


def _as_table(path: object, table: Mapping) -> dict[str, int]:
    try:
        return dict(LabelMapping(table).items())
    except MaskValidationError as exc:
        raise MaskValidationError(f"{path}: {exc}") from None


def _labels_arg(labels: Mapping[str, int] | str | os.PathLike) -> dict[str, int]:
    if isinstance(labels, Mapping | LabelMapping):
        return dict(LabelMapping(labels).items())
    return read_label_table(labels)


def labelmap_to_msk(
    path: str | os.PathLike,
    labels: Mapping[str, int] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    codec: str | None = None,
    allow_float: bool = False,
) -> SegmentationMask:
    """A multi-label NIfTI plus its label table as one ``.msk`` (one label map).

    Args:
        path: The multi-label NIfTI.
        labels: ``{name: label}``, or the path of a label table (:func:`read_label_table`).
        out: The ``.msk`` to write (atomically).
        codec: ``None`` (version 2) or ``"zstd"`` (version 1).
        allow_float: See :func:`read_nifti`.

    Returns:
        The mask written.

    Raises:
        MaskValidationError: A label in the file is missing from the table, a table
            label does not fit the file's dtype, or the file is not usable.
    """
    seg = nifti_to_segmask(path, binary=False, mapping=_labels_arg(labels), allow_float=allow_float)
    seg.save(out, codec=codec)
    return seg


def labelmap_to_archive(
    path: str | os.PathLike,
    labels: Mapping[str, int] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    codec: str | None = None,
    allow_float: bool = False,
) -> dict[str, int]:
    """A multi-label NIfTI plus its label table as an archive of one binary mask per label.

    Every table entry becomes a mask (an empty one when its label is absent from the
    file, as TotalSegmentator writes empty files for absent organs). Written
    atomically: on error nothing is left at ``out``.

    Args:
        path: The multi-label NIfTI.
        labels: ``{name: label}``, or the path of a label table (:func:`read_label_table`).
        out: The ``.mska`` to write.
        codec: ``None`` (version 2) or ``"zstd"`` (version 1).
        allow_float: See :func:`read_nifti`.

    Returns:
        ``{name: voxel count}`` in table order.

    Raises:
        MaskValidationError: A label present in the file is not in the table (its
            voxels would be lost), or the file is not usable.
    """
    table = _labels_arg(labels)
    array, space = read_nifti(path, allow_float=allow_float)
    present = np.unique(array)
    _check_table_covers(path, (int(v) for v in present if v), table)
    counts = {}
    with MaskArchive(out, "w", codec=codec, space=space) as ar:
        for name, label in table.items():
            region = array == label
            counts[name] = int(np.count_nonzero(region))
            ar.add_segmask(SegmentationMask(region, {name: 1}, space, copy=False), name)
    return counts


# -- writing --------------------------------------------------------------------------------
def _umask() -> int:
    """The process umask, read without changing it where the system tells it (Linux)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", "rb") as fh:
        for line in fh:
            if line.startswith(b"Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def segmask_to_nifti(segmask: SegmentationMask, path: str | os.PathLike) -> Path:
    """Write a mask as a NIfTI (``.nii.gz`` compresses); bool masks become uint8 0/1.

    The sform and qform both carry the affine (codes 1, scanner), units are mm, and the
    file is written atomically (a temporary sibling renamed into place).

    Args:
        segmask: The mask.
        path: Destination (``.nii.gz`` or ``.nii``).

    Returns:
        The path written.

    Raises:
        OSError: The file cannot be written (nothing is left behind).
    """
    nib = _nib()
    data = segmask.data
    if data.dtype == np.bool_:
        data = data.view(np.uint8)
    affine = space_to_affine(segmask.space)
    img = nib.Nifti1Image(np.asarray(data).transpose(2, 1, 0), affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm")
    path = Path(path)
    # a fresh temporary sibling made with O_EXCL (mkstemp): never a link planted there
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with contextlib.suppress(OSError, AttributeError):  # mkstemp makes 0600: as nib.save
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as raw:
            if path.name.endswith(".gz"):
                with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
                    img.to_file_map({"image": nib.FileHolder(fileobj=gz)})
            else:
                img.to_file_map({"image": nib.FileHolder(fileobj=raw)})
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{k}" for p in ("COM", "LPT") for k in range(10)}


def safe_filename(name: str, taken: set[str] | None = None, *, max_len: int = 120) -> str:
    """A file name for a mask name that cannot escape its folder.

    Mask names come from files other people wrote and are never trusted as paths:
    separators, ``..``, NUL, control and other odd characters become ``_``; accents
    are folded to ASCII; leading dots are removed; Windows device names get a ``_``
    prefix; an empty result becomes ``mask``.

    Args:
        name: The mask name.
        taken: Names already used in the folder (lower case); collisions get a
            ``-2``, ``-3`` ... suffix, and the result is added to ``taken``.
        max_len: Longest base name.

    Returns:
        A plain file name (no directory part), without suffix.
    """
    norm = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    base = _UNSAFE.sub("_", norm).strip("._ ")[:max_len] or "mask"
    if base.upper().split(".")[0] in _RESERVED:
        base = f"_{base}"
    if taken is None:
        return base
    cand, k = base, 1
    while cand.lower() in taken:
        k += 1
        cand = f"{base}-{k}"
    taken.add(cand.lower())
    return cand


def archive_to_folder(
    archive: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    names: Iterable[str] | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> dict[str, Path]:
    """Export every mask (or ``names``) of an archive as ``<safe name>.nii.gz`` in ``out_dir``.

    File names come from :func:`safe_filename`: whatever the mask names hold
    (``/``, ``..``, absolute paths, odd characters), nothing is written outside
    ``out_dir``. Each file is written atomically.

    Args:
        archive: The ``.mska``.
        out_dir: The folder (created if missing).
        names: Only these masks (default: all, in archive order).
        progress: Optional wrapper for the name iterable (e.g. ``tqdm``).

    Returns:
        ``{mask name: file written}``.

    Raises:
        MaskNotFoundError: A name in ``names`` is not stored.
        CorruptFileError: The archive is damaged.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = out_dir.resolve()
    written: dict[str, Path] = {}
    taken: set[str] = set()
    with MaskArchive(archive) as ar:
        wanted = list(names) if names is not None else ar.all_names()
        for name in progress(wanted) if progress else wanted:
            target = out_dir / f"{safe_filename(name, taken)}.nii.gz"
            if target.parent.resolve() != root:  # defence in depth
                raise MaskValidationError(f"refusing to write {target} outside {out_dir}")
            segmask_to_nifti(ar[name], target)
            written[name] = target
    return written


def archive_to_labelmap(
    archive: str | os.PathLike, out: str | os.PathLike
) -> tuple[dict[str, int], int]:
    """Export an archive of masks as one multi-label NIfTI.

    Each binary mask gets the next label (1, 2, ... in archive order) under its own
    name; a multi-label mask contributes each of its labels under its label name.
    Where masks overlap the later one wins in the file, and the number of voxels
    that lost a label this way is returned: it is reported, never silently dropped.

    Args:
        archive: The ``.mska``.
        out: The ``.nii.gz`` to write (atomically).

    Returns:
        ``({name: label in the file}, overlap)``: ``overlap`` counts the voxel labels
        that were overwritten by a later mask (0 when no masks overlap).

    Raises:
        CorruptFileError: The archive is damaged.
        MaskValidationError: The archive is empty.
    """
    with MaskArchive(archive) as ar:
        if len(ar) == 0 or ar.space is None:
            raise MaskValidationError(f"{archive}: the archive holds no masks")
        parts: list[tuple[str, str, int]] = []  # (mask, name in the table, stored label)
        for mask_name, mapping in ar.read_all_mapping().items():
            items = [(n, v) for n, v in mapping.items() if v != 0]
            if len(items) <= 1:
                parts.append((mask_name, mask_name, items[0][1] if items else -1))
            else:
                parts.extend((mask_name, n, lab) for n, lab in items)
        table: dict[str, int] = {}
        for k, (mask_name, name, _lab) in enumerate(parts, start=1):
            key = name if name not in table else f"{mask_name}:{name}"
            while key in table:
                key += "'"
            table[key] = k
        lab = np.zeros(tuple(int(s) for s in ar.space.shape), smallest_uint_dtype(len(parts)))
        claimed = 0
        current, arr = None, None
        for k, (mask_name, _name, stored) in enumerate(parts, start=1):
            if mask_name != current:
                current, arr = mask_name, ar.read_array(mask_name)
            region = (arr != 0) if stored == -1 or arr.dtype == np.bool_ else (arr == stored)
            claimed += int(np.count_nonzero(region))
            lab[region] = k
        overlap = claimed - int(np.count_nonzero(lab))
        segmask_to_nifti(SegmentationMask(lab, table, ar.space, copy=False), out)
    return table, overlap
