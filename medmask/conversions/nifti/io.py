"""NIfTI file I/O: read one file (binary mask or label map, its label table), list a
folder's NIfTI files, write one mask as a NIfTI. Every NIfTI file is read by
:func:`load_nifti` (one place; keep it small)."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ...errors import MaskValidationError
from ...geometry import (
    affine_to_space,
    effective_affine,
    space_to_affine,
)
from ...io.atomic import write_atomic
from ...ops import smallest_uint_dtype
from ...segmask import SegmentationMask
from ...spaces import Space
from ..common import NeedsOptionError
from ..labels import caret_xml, check_table_covers, parse_caret_xml
from ..names import NIFTI_SUFFIXES, strip_suffix
from .images import looks_like_image


class MaskResampledWarning(UserWarning):
    """A mask was resampled onto the archive's grid (only when the caller asked for it)."""


def _nib():
    try:
        import nibabel
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError('NIfTI support needs nibabel: pip install "medmask[nifti]"') from None
    return nibabel


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- reading --------------------------------------------------------------------------------
def load_nifti(path: str | os.PathLike):
    """Open a NIfTI file with nibabel (the one place medmask reads NIfTI files).

    Args:
        path: A ``.nii`` or ``.nii.gz`` file.

    Returns:
        A ``nibabel`` image (voxel data not yet read).

    Raises:
        FileNotFoundError: No such file.
        MaskValidationError: nibabel cannot read it (damaged, not NIfTI, not gzip).
    """
    nib = _nib()
    try:
        if str(path).endswith(".gz"):  # inflated by zlib-ng when installed (~6x faster)
            from .._inflate import load_gzipped_nifti

            img = load_gzipped_nifti(path)
            if img is not None:
                return img
        return nib.load(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - nibabel raises many unrelated types
        raise MaskValidationError(
            f"{path}: cannot read as NIfTI ({type(exc).__name__}: {_first_line(exc)})"
        ) from None


def read_nifti(
    path: str | os.PathLike, *, allow_float: bool = False, binarize: bool = False
) -> tuple[np.ndarray, Space]:
    """Read a 3-D integer NIfTI as a ``(z, y, x)`` array and its space.

    Args:
        path: A ``.nii`` or ``.nii.gz`` file.
        allow_float: Accept float data whose values are all whole, non-negative numbers
            (converted to the smallest unsigned integer dtype). By default float data
            is refused: masks hold integer labels.
        binarize: Return a bool array, any non-zero voxel True (for 0/255 masks and
            the like; float data is accepted as long as it is finite). Data that looks
            like an image (:func:`~medmask.conversions.nifti.images.looks_like_image`) is
            refused all the same.

    Returns:
        ``(array, space)``: the array in ``(z, y, x)`` order (integer or bool dtype as
        stored) and its ``(z, y, x)`` space from :func:`~medmask.geometry.effective_affine`.

    Raises:
        FileNotFoundError: No such file.
        MaskValidationError: Not a readable NIfTI (damaged, truncated, not gzip), not
            3-D (a 4-D file with a singleton 4th axis is accepted), float data (unless
            ``allow_float`` and whole numbers), negative values, or a sheared affine;
            data that looks like an image says so.
    """
    img = load_nifti(path)
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
    if data.dtype.kind not in "fiub":
        raise MaskValidationError(f"{path}: unsupported data type {data.dtype}")
    if binarize:
        if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
            raise MaskValidationError(f"{path}: non-finite values; cannot binarise")
        image = looks_like_image(data, Path(path).name)
        if image:  # --binarize is for 0/255 masks: an image would become one huge mask
            raise MaskValidationError(f"{path}: {image}; --binarize reads masks stored as 0/N")
        data = data != 0
    elif data.dtype.kind == "f":
        image = looks_like_image(data, Path(path).name)
        if image:
            raise MaskValidationError(f"{path}: float data with {image}")
        if not allow_float:
            raise MaskValidationError(
                f"{path}: float data ({data.dtype}, stored as {img.get_data_dtype()}); masks hold "
                "integer labels (allow_float=True / --allow-float accepts whole-number floats)"
            )
        data = data.astype(smallest_uint_dtype(int(data.max()) if data.size else 0))
    elif data.dtype.kind == "i" and data.size and data.min() < 0:
        raise MaskValidationError(
            f"{path}: {looks_like_image(data) or f'negative values (min {int(data.min())})'}; "
            "labels must be >= 0"
        )
    try:
        space = affine_to_space(effective_affine(img), shape)
    except MaskValidationError as exc:
        raise MaskValidationError(f"{path}: {exc}") from None
    return np.ascontiguousarray(data.transpose(2, 1, 0)), space


def nifti_label_table(path: str | os.PathLike) -> tuple[dict[str, int], dict[str, dict]] | None:
    """The label table TotalSegmentator writes into a NIfTI header, if the file has one.

    Looks for a header extension with code 0 holding a ``<CaretExtension>`` XML (see
    :func:`~medmask.conversions.labels.parse_caret_xml`).

    Args:
        path: The NIfTI file.

    Returns:
        ``({name: label}, {name: attrs})``, or ``None`` when the header holds no such table.

    Raises:
        MaskValidationError: The file is unreadable, or the table in it is malformed.
    """
    img = load_nifti(path)
    for ext in getattr(img.header, "extensions", []):
        raw = ext.get_content()
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        if ext.get_code() == 0 and b"<CaretExtension" in bytes(raw[:4096]):
            table, attrs = parse_caret_xml(raw, where=f"{path}: header extension")
            return (table, attrs) if table else None
    return None


def nifti_to_segmask(
    path: str | os.PathLike,
    name: str | None = None,
    *,
    binary: bool = True,
    mapping: Mapping[str, int] | None = None,
    allow_float: bool = False,
    binarize: bool = False,
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
        binarize: With ``binary``: any non-zero value is part of the mask (0/255 masks).

    Returns:
        The mask, with the space of the file.

    Raises:
        MaskValidationError: Non-binary values in a binary mask, labels missing from
            ``mapping``, float or 4-D data, an unreadable file.
    """
    array, space = read_nifti(path, allow_float=allow_float, binarize=binary and binarize)
    if binary:
        if array.dtype != np.bool_ and array.size and array.max() > 1:
            image = looks_like_image(array, Path(path).name)
            if image:
                raise MaskValidationError(f"{path}: {image}")
            values = np.unique(array)
            if values.size == 2 and values[0] == 0:
                hint = (
                    f"it holds exactly two values (0 and {int(values[1])}): binarize=True / "
                    "--binarize reads every non-zero voxel as part of the mask"
                )
            else:  # never --binarize here: it would merge the labels into one mask
                hint = (
                    "it looks like a label map: pack it on its own with its label table "
                    "(labelmap_to_archive, or 'medmask pack FILE --labels TABLE')"
                )
            raise NeedsOptionError(
                f"{path}: a binary mask holds values {values[:8].tolist()}"
                f"{' ...' if values.size > 8 else ''}; {hint}"
            )
        # values are 0/1 now: one-byte integers are already booleans (no copy)
        mask = array.view(bool) if array.dtype.itemsize == 1 else array != 0
        return SegmentationMask(
            mask,
            {name or strip_suffix(Path(path).name): 1},
            space,
            copy=False,
        )
    present = [int(v) for v in np.unique(array) if v]
    if mapping is None:
        mapping = {f"label_{v}": v for v in present}
    check_table_covers(path, present, mapping)
    try:
        return SegmentationMask(array, mapping, space, copy=False)
    except MaskValidationError as exc:
        raise MaskValidationError(f"{path}: {exc}") from None


def nifti_files(folder: str | os.PathLike) -> list[Path]:
    """The NIfTI files directly inside ``folder``, sorted by name (hidden files skipped).

    Args:
        folder: A folder.

    Returns:
        Paths of the ``.nii.gz`` / ``.nii`` files.

    Raises:
        FileNotFoundError: No such folder (the message says where a relative path starts).
        NotADirectoryError: ``folder`` is a file.
    """
    folder = Path(folder)
    if not folder.exists():
        where = "" if folder.is_absolute() else f" (relative to {os.getcwd()})"
        raise FileNotFoundError(f"{folder}: no such folder of NIfTI masks{where}")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: a file, not a folder of NIfTI masks")
    return sorted(
        p
        for p in folder.iterdir()
        if p.name.endswith(NIFTI_SUFFIXES) and not p.name.startswith(".") and p.is_file()
    )


def segmask_to_nifti(
    segmask: SegmentationMask,
    path: str | os.PathLike,
    *,
    label_names: Mapping[str, int] | None = None,
    colors: Mapping[str, Iterable[int]] | None = None,
) -> Path:
    """Write a mask as a NIfTI (``.nii.gz`` compresses); bool masks become uint8 0/1.

    The sform and qform both carry the affine (codes 1, scanner), units are mm, and the
    file is written atomically (a temporary sibling renamed into place).

    Args:
        segmask: The mask.
        path: Destination (``.nii.gz`` or ``.nii``).
        label_names: Write this ``{name: label}`` table into the header as
            TotalSegmentator's names extension (code 0 ``<CaretExtension>``).
        colors: ``{name: [r, g, b]}`` for that extension.

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
    if label_names:
        img.header.extensions.append(nib.nifti1.Nifti1Extension(0, caret_xml(label_names, colors)))
    path = Path(path)

    def write(raw) -> None:
        if path.name.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
                img.to_file_map({"image": nib.FileHolder(fileobj=gz)})
        else:
            img.to_file_map({"image": nib.FileHolder(fileobj=raw)})

    return write_atomic(path, write)
