"""NIfTI conversion (needs the ``nifti`` extra: nibabel).

Geometry follows what MONAI reports for a NIfTI file: nibabel's ``img.affine``
(the sform when its code is set, else the qform), a RAS affine, except for headers
whose pixdim contradicts it, where MONAI (and medmask) take the form that agrees
with pixdim (:func:`effective_affine`). medmask's
``Space`` is LPS, so ``affine_ras = diag(-1, -1, 1, 1) @ affine_lps``. Arrays
are ``(x, y, z)`` in nibabel and ``(z, y, x)`` in medmask (a transpose).

Note: ``spacetransformer.get_space_from_nifti`` prefers the qform, which differs
from ``img.affine`` when both forms are set; this module does not use it.

Example:
    >>> from medmask.nifti import folder_to_archive, archive_to_folder   # doctest: +SKIP
    >>> folder_to_archive("s0000/segmentations", "s0000.mska")          # doctest: +SKIP
    >>> archive_to_folder("s0000.mska", "restored/")                    # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import unicodedata
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
    "effective_affine",
    "space_to_affine",
    "read_nifti",
    "nifti_to_segmask",
    "folder_to_archive",
    "labelmap_to_archive",
    "labelmap_to_msk",
    "segmask_to_nifti",
    "archive_to_folder",
    "archive_to_labelmap",
    "read_label_table",
    "safe_filename",
    "NIFTI_SUFFIXES",
]

NIFTI_SUFFIXES = (".nii.gz", ".nii")
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _nib():
    try:
        import nibabel
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("NIfTI support needs nibabel: pip install 'medmask[nifti]'") from None
    return nibabel


# -- geometry -------------------------------------------------------------------------------
def affine_to_space(affine: np.ndarray, shape_xyz: tuple[int, ...], *, atol: float = 1e-4) -> Space:
    """The ``(z, y, x)`` medmask space of a NIfTI grid.

    Args:
        affine: The 4x4 RAS affine (nibabel's ``img.affine``).
        shape_xyz: The NIfTI array shape ``(x, y, z)`` (extra dimensions ignored).
        atol: Tolerance on the orthogonality of the axes.

    Returns:
        The space in ``(z, y, x)`` order (``.reverse_axis_order()`` gives ``(x, y, z)``).

    Raises:
        MaskValidationError: The affine is not 4x4, singular, or sheared.
    """
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise MaskValidationError(f"affine must be a finite 4x4 matrix, got shape {a.shape}")
    lps = _LPS @ a
    cols = lps[:3, :3]
    spacing = np.linalg.norm(cols, axis=0)
    if np.any(spacing <= 0):
        raise MaskValidationError(f"affine has a zero-length axis: {a.tolist()}")
    rot = cols / spacing
    if not np.allclose(rot.T @ rot, np.eye(3), atol=atol * 10):
        raise MaskValidationError(
            "affine is sheared (its axes are not orthogonal); medmask grids need orthogonal axes"
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
    """The 4x4 RAS affine (as nibabel/MONAI report it) of a ``(z, y, x)`` medmask space."""
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
    for headers whose pixdim contradicts it: then, like MONAI, take the form whose
    spacing agrees with pixdim (the qform when the sform is the odd one out).
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
    if header["sform_code"] != 0 and not sform_ok and qform_ok:
        return np.array(qform, dtype=np.float64)
    if header["sform_code"] == 0 and header["qform_code"] != 0 and not qform_ok and sform_ok:
        return np.array(sform, dtype=np.float64)
    return affine


# -- reading --------------------------------------------------------------------------------
def read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, Space]:
    """Read a 3-D integer NIfTI as a ``(z, y, x)`` array and its space.

    Raises:
        MaskValidationError: Not 3-D (a 4-D file with a singleton 4th axis is accepted),
            float data with non-integer values, or negative values.
    """
    nib = _nib()
    img = nib.load(str(path))
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise MaskValidationError(f"{path}: expected a 3-D image, got shape {img.shape}")
    data = np.asanyarray(img.dataobj).reshape(shape)
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
            raise MaskValidationError(
                f"{path}: float data with non-integer values ({data.dtype}); masks hold integer labels"
            )
        if data.size and data.min() < 0:
            raise MaskValidationError(f"{path}: negative values; labels must be >= 0")
        data = data.astype(smallest_uint_dtype(int(data.max()) if data.size else 0))
    elif data.dtype.kind not in "iub":
        raise MaskValidationError(f"{path}: unsupported data type {data.dtype}")
    return np.ascontiguousarray(data.transpose(2, 1, 0)), affine_to_space(
        effective_affine(img), shape
    )


def nifti_to_segmask(
    path: str | os.PathLike,
    name: str | None = None,
    *,
    binary: bool = True,
    mapping: Mapping[str, int] | None = None,
) -> SegmentationMask:
    """One NIfTI file as a :class:`SegmentationMask`.

    Args:
        path: The file.
        name: Name of the mask (default: the file name without ``.nii.gz``); used when
            ``binary``.
        binary: Require values 0/1 and return a bool mask ``{name: 1}``. Otherwise the
            values are labels, named by ``mapping`` (default: ``label_<n>``).
        mapping: ``{name: label}`` for a multi-label file.

    Raises:
        MaskValidationError: Non-binary values in a binary mask, float or 4-D data.
    """
    array, space = read_nifti(path)
    if binary:
        if array.dtype != np.bool_ and array.size and array.max() > 1:
            values = np.unique(array)
            raise MaskValidationError(
                f"{path}: a binary mask holds values {values[:8].tolist()}; "
                "use the multi-label route (labels table) for label maps"
            )
        return SegmentationMask(
            array.astype(bool, copy=False),
            {name or strip_suffix(Path(path).name): 1},
            space,
            copy=False,
        )
    if mapping is None:
        mapping = {f"label_{int(v)}": int(v) for v in np.unique(array) if v}
    return SegmentationMask(array, mapping, space, copy=False)


def strip_suffix(filename: str) -> str:
    """``liver.nii.gz`` -> ``liver``."""
    for suffix in NIFTI_SUFFIXES:
        if filename.endswith(suffix):
            return filename[: -len(suffix)]
    return filename


def nifti_files(folder: str | os.PathLike) -> list[Path]:
    """The NIfTI files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(NIFTI_SUFFIXES))


def folder_to_archive(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    codec: str | None = None,
    atol: float = GRID_ATOL,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> list[str]:
    """Pack a folder of binary NIfTI masks (TotalSegmentator layout) into one archive.

    Names come from the file names. Every file must be on the grid of the first
    (within ``atol``; the archive keeps the first file's grid). The archive is
    written atomically: on any error nothing is left at ``out``.

    Args:
        folder: The folder holding ``<name>.nii.gz`` files.
        out: The ``.mska`` to write.
        codec: ``None`` (version 2) or ``"zstd"`` (version 1).
        atol: Grid tolerance (mm, and unitless for directions).
        progress: Optional wrapper for the file iterable (e.g. ``tqdm``).

    Returns:
        The stored names, in order.

    Raises:
        MaskValidationError: No NIfTI files, a non-binary or non-3-D mask.
        SpaceMismatchError: A file's grid differs from the first file's; the message
            names both grids and the file.
    """
    files = nifti_files(folder)
    if not files:
        raise MaskValidationError(f"{folder}: no .nii.gz / .nii files found")
    names = []
    with MaskArchive(out, "w", codec=codec) as ar:
        for f in progress(files) if progress else files:
            seg = nifti_to_segmask(f)
            name = strip_suffix(f.name)
            if ar.space is not None and not spaces_match(ar.space, seg.space, atol):
                raise SpaceMismatchError(
                    f"{f}: grid {describe_space(seg.space)} differs from the archive's grid "
                    f"{describe_space(ar.space)} (taken from {files[0].name}; tolerance {atol})"
                )
            ar.add_segmask(seg, name)
            names.append(name)
    return names


def read_label_table(path: str | os.PathLike) -> dict[str, int]:
    """Read a label table: JSON ``{name: label}``, JSON ``{label: name}``, a JSON list of
    names (TotalSegmentator's class list, label = position + 1), or a text file of
    ``label name`` / ``name`` lines.

    Raises:
        MaskValidationError: The file cannot be understood.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
        table: dict[str, int] = {}
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        for k, ln in enumerate(lines, start=1):
            parts = ln.replace(",", " ").replace("\t", " ").split(None, 1)
            if len(parts) == 2 and parts[0].isdigit():
                table[parts[1].strip()] = int(parts[0])
            else:
                table[ln] = k
        return dict(LabelMapping(table).items())
    if isinstance(obj, list):
        return dict(LabelMapping({str(n): k for k, n in enumerate(obj, start=1)}).items())
    if isinstance(obj, dict):
        if obj and all(str(k).isdigit() for k in obj):
            return dict(LabelMapping({str(v): int(k) for k, v in obj.items()}).items())
        return dict(LabelMapping(obj).items())
    raise MaskValidationError(f"{path}: label table must be a JSON object or list, or a text file")


def labelmap_to_msk(
    path: str | os.PathLike,
    labels: Mapping[str, int],
    out: str | os.PathLike,
    *,
    codec: str | None = None,
) -> SegmentationMask:
    """A multi-label NIfTI plus its label table as one ``.msk``."""
    seg = nifti_to_segmask(path, binary=False, mapping=labels)
    seg.save(out, codec=codec)
    return seg


def labelmap_to_archive(
    path: str | os.PathLike,
    labels: Mapping[str, int],
    out: str | os.PathLike,
    *,
    codec: str | None = None,
) -> dict[str, int]:
    """A multi-label NIfTI plus its label table as an archive of one binary mask per label.

    Returns:
        ``{name: voxel count}``; labels present in the file but not in the table raise.
    """
    array, space = read_nifti(path)
    present = {int(v) for v in np.unique(array) if v}
    missing = present - set(labels.values())
    if missing:
        raise MaskValidationError(f"{path}: labels {sorted(missing)} are not in the label table")
    counts = {}
    with MaskArchive(out, "w", codec=codec, space=space) as ar:
        for name, label in labels.items():
            region = array == label
            counts[name] = int(region.sum())
            ar.add_segmask(SegmentationMask(region, {name: 1}, space, copy=False), name)
    return counts


# -- writing --------------------------------------------------------------------------------
def segmask_to_nifti(segmask: SegmentationMask, path: str | os.PathLike) -> None:
    """Write a mask as a NIfTI (``.nii.gz`` compresses); bool masks become uint8 0/1.

    The sform and qform both carry the affine (codes 1, scanner), atomically written.
    """
    nib = _nib()
    data = segmask.data
    if data.dtype == np.bool_:
        data = data.view(np.uint8)
    img = nib.Nifti1Image(np.asarray(data).transpose(2, 1, 0), space_to_affine(segmask.space))
    img.set_sform(img.affine, code=1)
    img.set_qform(img.affine, code=1)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}{''.join(path.suffixes)}")
    try:
        nib.save(img, str(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_filename(name: str, taken: set[str] | None = None, *, max_len: int = 120) -> str:
    """A file name for a mask name that cannot escape its folder.

    Separators, ``..``, NUL, control and other odd characters become ``_``; leading
    dots are removed; an empty result becomes ``mask``; collisions (case-insensitive)
    with names in ``taken`` get a ``-2``, ``-3`` ... suffix (``taken`` is updated).
    """
    norm = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    base = _UNSAFE.sub("_", norm).strip("._ ")[:max_len] or "mask"
    if base.upper().split(".")[0] in {"CON", "PRN", "AUX", "NUL", "COM1", "LPT1"}:
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

    Returns:
        ``{mask name: file written}``. File names never leave ``out_dir``.
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
            if target.resolve().parent != root:  # defence in depth
                raise MaskValidationError(f"refusing to write {target} outside {out_dir}")
            segmask_to_nifti(ar[name], target)
            written[name] = target
    return written


def archive_to_labelmap(
    archive: str | os.PathLike, out: str | os.PathLike
) -> tuple[dict[str, int], int]:
    """Export an archive of masks as one multi-label NIfTI (label k+1 for the k-th mask).

    Returns:
        ``({name: label}, overlap)``: ``overlap`` counts voxels claimed by more than
        one mask (the later mask wins in the file); it is reported, not hidden.
    """
    with MaskArchive(archive) as ar:
        names = ar.all_names()
        dtype = smallest_uint_dtype(len(names))
        lab = np.zeros(tuple(int(s) for s in ar.space.shape), dtype)
        claimed = 0
        for k, name in enumerate(names):
            region = ar.read_array(name) != 0
            claimed += int(region.sum())
            lab[region] = k + 1
        overlap = claimed - int(np.count_nonzero(lab))
        table = {n: k + 1 for k, n in enumerate(names)}
        segmask_to_nifti(SegmentationMask(lab, table, ar.space, copy=False), out)
    return table, overlap
