"""NIfTI in and out (needs the ``nifti`` extra: nibabel).

In: a folder of binary masks (TotalSegmentator's layout, one ``<organ>.nii.gz`` per
organ), a multi-label NIfTI with its label table (read from TotalSegmentator's header
extension when present), or a single file. Out: one ``.nii.gz`` per mask, or one label
map with TotalSegmentator's names extension and a ``.json`` table.

Geometry (:mod:`medmask.geometry`) follows what MONAI reports for a NIfTI file. Every
NIfTI file is read by :func:`load_nifti` (one place; keep it small).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MaskValidationError, SpaceMismatchError
from ..geometry import (
    affine_to_space,
    effective_affine,
    grid_differences,
    resample_nearest,
    space_to_affine,
)
from ..ops import smallest_uint_dtype
from ..segmask import SegmentationMask
from ..spaces import GRID_ATOL, Space, describe_space, spaces_match
from ..storage import MaskArchive
from .common import NeedsOptionError
from .labels import caret_xml, check_table_covers, labels_arg, parse_caret_xml
from .names import NIFTI_SUFFIXES, safe_filename, strip_suffix

__all__ = [
    "load_nifti",
    "read_nifti",
    "nifti_to_segmask",
    "nifti_label_table",
    "folder_to_archive",
    "labelmap_to_archive",
    "labelmap_to_msk",
    "segmask_to_nifti",
    "archive_to_folder",
    "archive_to_labelmap",
    "export_labelmap",
    "LabelmapExport",
    "nifti_files",
    "MaskResampledWarning",
    "OVERLAP_RULES",
    "NIFTI_SUFFIXES",
]


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
            from ._inflate import load_gzipped_nifti

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


def _looks_like_image(data: np.ndarray) -> str | None:
    """Why an array looks like an image rather than a mask, or ``None``."""
    if not data.size:
        return None
    lo, hi = float(data.min()), float(data.max())
    if data.dtype.kind == "f" and (not np.isfinite(lo) or not np.isfinite(hi)):
        return "it holds non-finite values"
    reasons = []
    if lo < 0:
        reasons.append(f"negative values (min {lo:g})")
    if data.dtype.kind == "f":
        sample = data.ravel()[:: max(1, data.size // 100_000)]
        if np.any(sample != np.round(sample)):
            reasons.append("fractional values")
    if hi - lo > 1000:
        reasons.append(f"a value range of {lo:g}..{hi:g}")
    if not reasons:
        return None
    return (
        " and ".join(reasons)
        + ": it looks like an image (a CT or MR volume), not a mask; pack the masks "
        "(e.g. CASE/segmentations/ or the label map), not the image"
    )


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
            the like; float data is accepted as long as it is finite).

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
        data = data != 0
    elif data.dtype.kind == "f":
        image = _looks_like_image(data)
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
            f"{path}: {_looks_like_image(data) or f'negative values (min {int(data.min())})'}; "
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
            image = _looks_like_image(array)
            if image:
                raise MaskValidationError(f"{path}: {image}")
            values = np.unique(array)
            if values.size == 2 and values[0] == 0:
                hint = (
                    f"it holds exactly two values (0 and {int(values[1])}): binarize=True / "
                    "--binarize reads every non-zero voxel as part of the mask"
                )
            else:
                hint = (
                    "for a label map give its label table (labelmap_to_archive, or "
                    "'medmask pack FILE --labels TABLE'); binarize=True / --binarize reads "
                    "every non-zero voxel as part of one mask"
                )
            raise NeedsOptionError(
                f"{path}: a binary mask holds values {values[:8].tolist()}"
                f"{' ...' if values.size > 8 else ''}; {hint}"
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
    binarize: bool = False,
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
        binarize: Read every non-zero voxel as part of the mask (0/255 masks).
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
            seg = nifti_to_segmask(f, allow_float=allow_float, binarize=binarize)
            name = strip_suffix(f.name)
            if ar.space is not None and not spaces_match(ar.space, seg.space, atol):
                if not resample:
                    raise SpaceMismatchError(
                        f"{f}: its grid differs from the archive's grid "
                        f"({'; '.join(grid_differences(ar.space, seg.space, atol))}): "
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


def _table_for(
    path: object, labels: Mapping[str, int] | str | os.PathLike | None
) -> tuple[dict[str, int], dict[str, dict]]:
    if labels is not None:
        if isinstance(labels, str | os.PathLike):
            from .labels import read_label_table_attrs

            return read_label_table_attrs(labels)
        return labels_arg(labels), {}
    found = nifti_label_table(path)
    if found is None:
        raise NeedsOptionError(
            f"{path}: a label map needs its label table: this file has no TotalSegmentator "
            "names extension; give labels= / --labels TABLE (JSON, text, ITK-SNAP, dataset.json)"
        )
    return found


def labelmap_to_msk(
    path: str | os.PathLike,
    labels: Mapping[str, int] | str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    codec: str | None = None,
    allow_float: bool = False,
) -> SegmentationMask:
    """A multi-label NIfTI plus its label table as one ``.msk`` (one label map).

    Args:
        path: The multi-label NIfTI.
        labels: ``{name: label}``, the path of a label table, or ``None`` for the table
            in the file's header (TotalSegmentator's names extension).
        out: The ``.msk`` to write (atomically).
        codec: ``None`` (version 2) or ``"zstd"`` (version 1).
        allow_float: See :func:`read_nifti`.

    Returns:
        The mask written.

    Raises:
        MaskValidationError: A label in the file is missing from the table, a table
            label does not fit the file's dtype, no table, or the file is not usable.
    """
    table, _ = _table_for(path, labels)
    seg = nifti_to_segmask(path, binary=False, mapping=table, allow_float=allow_float)
    seg.save(out, codec=codec)
    return seg


def labelmap_to_archive(
    path: str | os.PathLike,
    labels: Mapping[str, int] | str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    codec: str | None = None,
    allow_float: bool = False,
    drop_unlisted: bool = False,
) -> dict[str, int]:
    """A multi-label NIfTI plus its label table as an archive of one binary mask per label.

    Every table entry becomes a mask (an empty one when its label is absent from the
    file, as TotalSegmentator writes empty files for absent organs). Colours from the
    table (TotalSegmentator's extension, ITK-SNAP) and the label value are stored as
    attributes. Written atomically: on error nothing is left at ``out``.

    Args:
        path: The multi-label NIfTI.
        labels: ``{name: label}``, the path of a label table, or ``None`` for the
            table in the file's header (TotalSegmentator's names extension).
        out: The ``.mska`` to write.
        codec: ``None`` (version 2) or ``"zstd"`` (version 1).
        allow_float: See :func:`read_nifti`.
        drop_unlisted: Drop the voxels of labels the table does not name instead of
            refusing.

    Returns:
        ``{name: voxel count}`` in table order.

    Raises:
        MaskValidationError: A label present in the file is not in the table (its
            voxels would be lost; the message names them), no table, or the file is
            not usable.
    """
    table, attrs = _table_for(path, labels)
    array, space = read_nifti(path, allow_float=allow_float)
    present = np.unique(array)
    check_table_covers(path, (int(v) for v in present if v), table, drop_unlisted=drop_unlisted)
    counts = {}
    with MaskArchive(out, "w", codec=codec, space=space) as ar:
        keep_attrs = ar.supports_attrs
        for name, label in table.items():
            region = array == label
            counts[name] = int(np.count_nonzero(region))
            a = {**attrs.get(name, {}), "label_value": int(label)} if keep_attrs else None
            ar.add_segmask(SegmentationMask(region, {name: 1}, space, copy=False), name, attrs=a)
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


def write_atomic(path: Path, write: Callable[[object], None]) -> Path:
    """Write ``path`` through ``write(binary file)`` via a fresh temporary sibling.

    The temporary is made with ``O_EXCL`` (never a link planted there), gets the usual
    permissions (``0666 & ~umask``) and is renamed into place; on any error it is removed.

    Args:
        path: Destination.
        write: Called with the open temporary file.

    Returns:
        ``path``.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with contextlib.suppress(OSError, AttributeError):  # mkstemp makes 0600: as nib.save
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as raw:
            write(raw)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


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


def archive_to_folder(
    archive: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    names: Iterable[str] | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> dict[str, Path]:
    """Export every mask (or ``names``) of an archive as ``<safe name>.nii.gz`` in ``out_dir``.

    File names come from :func:`~medmask.conversions.names.safe_filename`: whatever the
    mask names hold (``/``, ``..``, absolute paths, odd characters), nothing is written
    outside ``out_dir``. Each file is written atomically.

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


#: How overlapping masks are settled in a label map: ``"last"`` (a later mask in the
#: numbering wins, the default), ``"first"`` (an earlier mask keeps its voxels),
#: ``"smaller"`` (the mask with fewer voxels wins, so small structures survive).
OVERLAP_RULES = ("last", "first", "smaller")


@dataclass
class LabelmapExport:
    """What :func:`export_labelmap` wrote.

    Attributes:
        path: The label map written.
        table: ``{name: label}`` as written (also in the header extension).
        voxels: ``{name: voxels of the mask}``.
        lost: ``{name: voxels the mask lost to overlaps}`` (only masks that lost some).
        emptied: Names of non-empty masks that lost all their voxels.
        overlap_rule: The rule applied (see :data:`OVERLAP_RULES`).
    """

    path: Path
    table: dict[str, int]
    voxels: dict[str, int]
    lost: dict[str, int] = field(default_factory=dict)
    emptied: list[str] = field(default_factory=list)
    overlap_rule: str = "last"

    @property
    def overlap(self) -> int:
        """Voxel labels overwritten by another mask (0 when no masks overlap)."""
        return sum(self.lost.values())


def _parts(ar: MaskArchive) -> list[tuple[str, str, int]]:
    """``(mask, name in the table, stored label)`` per label the archive holds."""
    parts: list[tuple[str, str, int]] = []
    for mask_name, mapping in ar.read_all_mapping().items():
        items = [(n, v) for n, v in mapping.items() if v != 0]
        if len(items) <= 1:
            parts.append((mask_name, mask_name, items[0][1] if items else -1))
        else:
            parts.extend((mask_name, n, lab) for n, lab in items)
    return parts


def export_labelmap(
    archive: str | os.PathLike,
    out: str | os.PathLike,
    *,
    labels: Mapping[str, int] | str | os.PathLike | None = None,
    overlap: str = "last",
    write_json: bool = True,
) -> LabelmapExport:
    """Export an archive of masks as one multi-label NIfTI with its names.

    Numbering: ``labels`` (a subset of the archive's masks and/or a chosen numbering,
    e.g. TotalSegmentator's class map or an nnU-Net ``dataset.json``), else 1, 2, ...
    in archive order (a multi-label mask contributes each of its labels). The names go
    into the header as TotalSegmentator's ``<CaretExtension>`` (code 0), so that
    TotalSegmentator's tools show them, and into ``X.json`` beside the file.

    Overlaps are settled by ``overlap`` (:data:`OVERLAP_RULES`); every mask that loses
    voxels is counted in the result, and a mask losing all of them is listed in
    ``emptied``: nothing is dropped silently.

    Args:
        archive: The ``.mska``.
        out: The ``.nii.gz`` / ``.nii`` to write (atomically).
        labels: Optional ``{name: label}`` or a table file.
        overlap: ``"last"``, ``"first"`` or ``"smaller"``.
        write_json: Also write ``<stem>.json`` (``{name: label}``) beside ``out``.

    Returns:
        A :class:`LabelmapExport`.

    Raises:
        MaskValidationError: The archive is empty, a table name is not stored (with
            close matches), or an unknown overlap rule / output name.
        CorruptFileError: The archive is damaged.
    """
    from ..errors import close_matches
    from ..io.names import expect_name, split_suffix

    if overlap not in OVERLAP_RULES:
        raise MaskValidationError(f"overlap must be one of {OVERLAP_RULES}, got {overlap!r}")
    expect_name(out, "nifti", what="label map")
    out = Path(out)
    with MaskArchive(archive) as ar:
        if len(ar) == 0 or ar.space is None:
            raise MaskValidationError(f"{archive}: the archive holds no masks")
        parts = _parts(ar)
        by_name = {name: (mask, lab) for mask, name, lab in parts}
        if labels is not None:
            wanted = labels_arg(labels) if not isinstance(labels, str | os.PathLike) else None
            if wanted is None:
                from .labels import read_label_table

                wanted = read_label_table(labels)
            unknown = [n for n in wanted if n not in by_name]
            if unknown:
                hint = close_matches(unknown[0], list(by_name))
                raise MaskValidationError(
                    f"{archive}: the label table names {len(unknown)} masks the archive does not "
                    f"hold: {unknown[:8]}{' ...' if len(unknown) > 8 else ''}{hint}"
                )
            plan = [(n, by_name[n][0], by_name[n][1], int(v)) for n, v in wanted.items()]
        else:
            table: dict[str, int] = {}
            plan = []
            for k, (mask_name, name, lab) in enumerate(parts, start=1):
                key = name if name not in table else f"{mask_name}:{name}"
                while key in table:
                    key += "'"
                table[key] = k
                plan.append((key, mask_name, lab, k))
        colors = {}
        regions: list[tuple[str, int, np.ndarray]] = []
        current, arr = None, None
        for key, mask_name, stored, value in plan:
            if mask_name != current:
                current, arr = mask_name, ar.read_array(mask_name)
                info_attrs = getattr(ar.info(mask_name), "attrs", None) or {}
                color = info_attrs.get("color")
            region = (arr != 0) if stored == -1 or arr.dtype == np.bool_ else (arr == stored)
            if color is not None:
                colors[key] = color
            regions.append((key, value, region))
        voxels = {key: int(np.count_nonzero(r)) for key, _v, r in regions}
        order = list(range(len(regions)))
        if overlap == "first":
            order.reverse()
        elif overlap == "smaller":
            order.sort(key=lambda i: -voxels[regions[i][0]])  # biggest first, smallest last
        top = max((v for _k, v, _r in regions), default=0)
        lab = np.zeros(tuple(int(s) for s in ar.space.shape), smallest_uint_dtype(top))
        for i in order:
            _key, value, region = regions[i]
            lab[region] = value
        lost: dict[str, int] = {}
        for key, value, region in regions:
            kept = int(np.count_nonzero(lab[region] == value)) if voxels[key] else 0
            if kept < voxels[key]:
                lost[key] = voxels[key] - kept
        table_out = {key: value for key, value, _r in regions}
        segmask_to_nifti(
            SegmentationMask(lab, table_out, ar.space, copy=False),
            out,
            label_names=table_out,
            colors=colors,
        )
    if write_json:
        import json

        stem = split_suffix(out)[0]
        js = out.with_name(f"{stem}.json")
        payload = json.dumps(table_out, indent=1) + "\n"
        write_atomic(js, lambda fh: fh.write(payload.encode("utf-8")))
    emptied = [k for k, n in lost.items() if n == voxels[k]]
    return LabelmapExport(out, table_out, voxels, lost, emptied, overlap)


def archive_to_labelmap(
    archive: str | os.PathLike, out: str | os.PathLike
) -> tuple[dict[str, int], int]:
    """Export an archive of masks as one multi-label NIfTI (compatibility wrapper).

    The same as :func:`export_labelmap` with the default numbering and overlap rule
    (later masks win), without the ``.json`` file.

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
    res = export_labelmap(archive, out, write_json=False)
    return res.table, res.overlap
