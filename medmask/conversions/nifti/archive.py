"""NIfTI <-> archive workflows: a folder of masks or a label map into an archive, an
archive out as a folder of masks or as one label map (built on :mod:`.io`)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from ...errors import MaskValidationError, SpaceMismatchError, close_matches
from ...geometry import (
    grid_differences,
    resample_nearest,
)
from ...io.atomic import write_atomic
from ...io.names import expect_name, split_suffix
from ...labeltable import LabelTable
from ...ops import OVERLAP_RULES as _OVERLAP_RULES
from ...ops import smallest_uint_dtype
from ...segmask import SegmentationMask
from ...spaces import GRID_ATOL, Space, describe_space, spaces_match
from ...storage import Layer, MaskArchive, PreparedMask, paint_label_map, save_mask
from ..common import MaskRecord, NeedsOptionError, records_to_archive
from ..labels import check_table_covers, labels_arg
from ..names import safe_filename, strip_suffix
from ..overlaps import taken_by
from ..pipeline import ordered_map
from .io import (
    MaskResampledWarning,
    nifti_files,
    nifti_label_table,
    nifti_to_segmask,
    read_nifti,
    segmask_to_nifti,
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
    threads: int | None = None,
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
        progress: Optional wrapper for the iterable of stored masks (e.g. ``tqdm``).
        threads: Files read and encoded at once (default:
            :func:`medmask.conversions.pipeline.current_threads`: every core); they are
            stored in file order, and at most a few masks are in memory.

    Returns:
        The stored names, in order.

    Raises:
        FileNotFoundError: No such folder (the message says where a relative path starts).
        MaskValidationError: No NIfTI files, a non-binary, float, 4-D or unreadable mask.
        SpaceMismatchError: A file's grid (shape, spacing, origin or axes) differs from
            the first file's; the message names the file and both grids.
    """
    files = nifti_files(folder)
    if not files:
        raise MaskValidationError(f"{folder}: no .nii.gz / .nii files found")
    first = [nifti_to_segmask(files[0], allow_float=allow_float, binarize=binarize)]
    names = []
    with MaskArchive(out, "w", codec=codec, space=first[0].space) as ar:

        def job(f: Path) -> tuple[Path, str, SegmentationMask | PreparedMask]:
            seg = (
                first.pop()
                if f is files[0]
                else nifti_to_segmask(f, allow_float=allow_float, binarize=binarize)
            )
            name = strip_suffix(f.name)
            if not spaces_match(ar.space, seg.space, atol):
                return f, name, seg  # settled in file order below
            return f, name, ar.prepare(name, seg)

        done = ordered_map(job, files, threads=threads)
        for f, name, ready in progress(done) if progress else done:
            if isinstance(ready, SegmentationMask):
                seg = _onto_grid(f, name, ready, ar.space, files[0].name, atol, resample)
                ready = ar.prepare(name, seg)
            ar.add(name, ready)
            names.append(name)
    return names


def _onto_grid(
    f: Path,
    name: str,
    seg: SegmentationMask,
    space: Space,
    first: str,
    atol: float,
    resample: bool,
) -> SegmentationMask:
    """A mask on another grid than the archive's, resampled onto it (with a
    :class:`MaskResampledWarning`) when ``resample``.

    Raises:
        SpaceMismatchError: Not ``resample``; the message names the file and both grids.
    """
    if not resample:
        raise SpaceMismatchError(
            f"{f}: its grid differs from the archive's grid "
            f"({'; '.join(grid_differences(space, seg.space, atol))}): "
            f"file {describe_space(seg.space)}; archive {describe_space(space)} "
            f"(taken from {first}; tolerance {atol}); "
            "resample it first, or pass resample=True / --resample"
        )
    warnings.warn(
        f"{f}: resampled (nearest neighbour) from {describe_space(seg.space)} "
        f"onto the archive's grid {describe_space(space)}",
        MaskResampledWarning,
        stacklevel=3,
    )
    return SegmentationMask(
        resample_nearest(seg.data, seg.space, space), {name: 1}, space, copy=False
    )


def _table_for(
    path: object, labels: Mapping[str, int] | str | os.PathLike | None
) -> tuple[LabelTable, dict[str, dict]]:
    """The table that splits the label map ``path`` into masks (one name per label).

    Raises:
        MaskValidationError: Names share a label (a merge cannot be split), or no table.
    """
    if labels is not None:
        if isinstance(labels, str | os.PathLike):
            from ..labels import read_label_table_attrs

            table, attrs = read_label_table_attrs(labels)
            return table.require_one_to_one(labels), attrs
        return labels_arg(labels).require_one_to_one(path), {}
    found = nifti_label_table(path)
    if found is None:
        raise NeedsOptionError(
            f"{path}: a label map needs its label table: this file has no TotalSegmentator "
            "names extension; give labels= / --labels TABLE (JSON, text, ITK-SNAP, dataset.json)"
        )
    return LabelTable(found[0]).require_one_to_one(path), found[1]


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
    save_mask(seg, out, codec=codec)
    return seg


def labelmap_to_archive(
    path: str | os.PathLike,
    labels: Mapping[str, int] | str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    codec: str | None = None,
    allow_float: bool = False,
    drop_unlisted: bool = False,
    threads: int | None = None,
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
        threads: Labels cut out and encoded at once (default: every core).

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
    counts = dict.fromkeys(table, 0)

    def job(name: str, label: int) -> MaskRecord:
        region = array == label
        counts[name] = int(np.count_nonzero(region))
        return MaskRecord(name, region, {**attrs.get(name, {}), "label_value": int(label)})

    jobs = [partial(job, name, label) for name, label in table.items()]
    records_to_archive(jobs, space, out, codec=codec, threads=threads)
    return counts


def archive_to_folder(
    archive: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    names: Iterable[str] | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Export every mask (or ``names``) of an archive as ``<safe name>.nii.gz`` in ``out_dir``.

    File names come from :func:`~medmask.conversions.names.safe_filename`: whatever the
    mask names hold (``/``, ``..``, absolute paths, odd characters), nothing is written
    outside ``out_dir``. Each file is written atomically. A folder that already holds
    files this export would not write (another case's masks) is refused unless ``force``
    (see :func:`check_folder_for`); the files it would write are replaced.

    Args:
        archive: The ``.mska``.
        out_dir: The folder (created if missing).
        names: Only these masks (default: all, in archive order).
        progress: Optional wrapper for the name iterable (e.g. ``tqdm``).
        force: Write into a folder that holds other files too.

    Returns:
        ``{mask name: file written}``.

    Raises:
        NeedsOptionError: ``out_dir`` holds other files and not ``force``.
        MaskNotFoundError: A name in ``names`` is not stored.
        CorruptFileError: The archive is damaged.
    """
    out_dir = Path(out_dir)
    taken: set[str] = set()
    with MaskArchive(archive) as ar:
        wanted = list(names) if names is not None else ar.all_names()
        for name in wanted:
            ar.info(name)  # a missing name fails before anything is written
        planned = {name: out_dir / f"{safe_filename(name, taken)}.nii.gz" for name in wanted}
        check_folder_for(out_dir, planned.values(), force=force)
        out_dir.mkdir(parents=True, exist_ok=True)
        root = out_dir.resolve()
        for name in progress(wanted) if progress else wanted:
            target = planned[name]
            if target.parent.resolve() != root:  # defence in depth
                raise MaskValidationError(f"refusing to write {target} outside {out_dir}")
            segmask_to_nifti(ar[name], target)
    return planned


def check_folder_for(out_dir: Path, files: Iterable[Path], *, force: bool = False) -> None:
    """Refuse to write ``files`` into a folder that holds anything else (unless ``force``):
    unpacking a second archive there would mix two cases' masks without a word.

    Hidden files (``.DS_Store``...) are ignored; a folder that does not exist yet is fine.

    Args:
        out_dir: The folder.
        files: The files that will be written into it.
        force: Allow it.

    Raises:
        NeedsOptionError: Other files are there; the message names some of them.
    """
    if force or not out_dir.is_dir():
        return
    mine = {Path(f).name for f in files}
    others = sorted(p.name for p in out_dir.iterdir() if p.name not in mine and p.name[:1] != ".")
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise NeedsOptionError(
            f"{out_dir}: the folder holds {len(others)} file(s) this unpack would not write "
            f"({shown}); writing here would mix them with this archive's masks: unpack into "
            "an empty or new folder, or pass force=True / --force to write beside them"
        )


#: How overlapping masks are settled in a label map (:data:`medmask.ops.OVERLAP_RULES`, the
#: one rule set of the painter): ``"last"`` (a later mask in the numbering wins, the
#: default), ``"first"`` (an earlier mask keeps its voxels), ``"smaller"`` (the mask with
#: fewer voxels wins, so small structures survive).
OVERLAP_RULES = _OVERLAP_RULES


@dataclass
class LabelmapExport:
    """What :func:`export_labelmap` wrote.

    Attributes:
        path: The label map written.
        table: ``{name: label}`` as written (several names may share a label: a merge).
        voxels: ``{name: voxels of the mask}``.
        lost: ``{name: voxels the mask lost to overlaps}`` (only masks that lost some).
        emptied: Names of non-empty masks that lost all their voxels.
        overlap_rule: The rule applied (see :data:`OVERLAP_RULES`).
        taken_by: ``{name: [the masks that took its voxels]}`` for the masks in ``lost``.
    """

    path: Path
    table: dict[str, int]
    voxels: dict[str, int]
    lost: dict[str, int] = field(default_factory=dict)
    emptied: list[str] = field(default_factory=list)
    overlap_rule: str = "last"
    taken_by: dict[str, list[str]] = field(default_factory=dict)

    @property
    def overlap(self) -> int:
        """Voxel labels overwritten by another mask (0 when no masks overlap)."""
        return sum(self.lost.values())


def _parts(ar: MaskArchive) -> list[tuple[str, str, int | None]]:
    """``(mask, name in the table, stored label)`` per label the archive holds (``None``:
    every non-zero voxel of a one-label mask)."""
    parts: list[tuple[str, str, int | None]] = []
    for info in ar.infos():
        items = [(n, v) for n, v in info.mapping.items() if v != 0]
        if len(items) <= 1:
            one = items[0][1] if items and info.dtype not in (None, "bool") else None
            parts.append((info.name, info.name, one))
        else:
            parts.extend((info.name, n, lab) for n, lab in items)
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
    e.g. TotalSegmentator's class map or an nnU-Net ``dataset.json``; several names may
    share a label, a merge: ``{"kidney_left": 3, "kidney_right": 3}``), else 1, 2, ... in
    archive order (a multi-label mask contributes each of its labels). The names go into
    the header as TotalSegmentator's ``<CaretExtension>`` (code 0; one name per label,
    :meth:`~medmask.labeltable.LabelTable.class_table` for a merge), so that
    TotalSegmentator's tools show them, and the whole table into ``X.json`` beside the file.

    The masks are painted by :func:`medmask.storage.paint_label_map`, the painter every
    label map of medmask goes through; overlaps are settled by ``overlap``
    (:data:`OVERLAP_RULES`); every mask that loses voxels is counted in the result, and a
    mask losing all of them is listed in ``emptied``: nothing is dropped silently.

    Args:
        archive: The ``.mska``.
        out: The ``.nii.gz`` / ``.nii`` to write (atomically).
        labels: Optional ``{name: label}`` (a mapping or a
            :class:`~medmask.labeltable.LabelTable`) or a table file.
        overlap: ``"last"``, ``"first"`` or ``"smaller"``.
        write_json: Also write ``<stem>.json`` (``{name: label}``) beside ``out``.

    Returns:
        A :class:`LabelmapExport`.

    Raises:
        MaskValidationError: The archive is empty, a table name is not stored (with
            close matches), or an unknown overlap rule / output name.
        CorruptFileError: The archive is damaged.
    """
    if overlap not in OVERLAP_RULES:
        raise MaskValidationError(f"overlap must be one of {OVERLAP_RULES}, got {overlap!r}")
    expect_name(out, "nifti", what="label map")
    out = Path(out)
    with MaskArchive(archive) as ar:
        if len(ar) == 0 or ar.space is None:
            raise MaskValidationError(f"{archive}: the archive holds no masks")
        table, layers = _numbering(archive, _parts(ar), labels)
        dtype = smallest_uint_dtype(table.max_label())
        res = paint_label_map(ar, layers, overlap=overlap, dtype=dtype, report=True)
        winners = taken_by(ar, layers, res)
        classes = table.class_table()  # one name per label in the file's own table
        colors = _class_colors(ar, table, {ly.key: ly.mask for ly in layers})
        segmask_to_nifti(
            SegmentationMask(res.array, classes, ar.space, copy=False),
            out,
            label_names=classes,
            colors=colors,
        )
    if write_json:
        _write_table_json(out, table.to_dict())
    return LabelmapExport(out, table.to_dict(), res.voxels, res.lost, res.emptied, overlap, winners)


def _numbering(
    archive: object,
    parts: list[tuple[str, str, int | None]],
    labels: Mapping[str, int] | str | os.PathLike | None,
) -> tuple[LabelTable, list[Layer]]:
    """The table and the painter's layers, in order: the table's (``labels``), else 1, 2,
    ... over every part in archive order (a repeated name becomes ``mask:name``).

    Raises:
        MaskValidationError: The table names masks the archive does not hold.
    """
    by_name = {name: (mask, lab) for mask, name, lab in parts}
    if labels is not None:
        wanted = labels_arg(labels)
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            hint = close_matches(unknown[0], list(by_name))
            raise MaskValidationError(
                f"{archive}: the label table names {len(unknown)} masks the archive does not "
                f"hold: {unknown[:8]}{' ...' if len(unknown) > 8 else ''}{hint}"
            )
        layers = [Layer(n, by_name[n][0], int(v), by_name[n][1]) for n, v in wanted.items()]
        return wanted, layers
    table: dict[str, int] = {}
    layers = []
    for k, (mask_name, name, lab) in enumerate(parts, start=1):
        key = name if name not in table else f"{mask_name}:{name}"
        while key in table:
            key += "'"
        table[key] = k
        layers.append(Layer(key, mask_name, k, lab))
    return LabelTable(table), layers


def _class_colors(
    ar: MaskArchive, table: LabelTable, masks: Mapping[str, str]
) -> dict[str, object]:
    """``{class name: stored colour}`` (the colour of a label's first name that has one)."""
    colors: dict[str, object] = {}
    stored = {i.name: i.attrs.get("color") for i in ar.infos() if i.attrs}
    for label in table.labels():
        for name in table.names_of(label):
            color = stored.get(masks[name])
            if color is not None:
                colors.setdefault(table.class_name(label), color)
    return colors


def _write_table_json(out: Path, table: Mapping[str, int]) -> None:
    """``{name: label}`` as ``<stem>.json`` beside the label map ``out`` (atomically)."""
    stem = split_suffix(out)[0]
    payload = json.dumps(dict(table), indent=1) + "\n"
    write_atomic(out.with_name(f"{stem}.json"), lambda fh: fh.write(payload.encode("utf-8")))


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
