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
from ...ops import smallest_uint_dtype
from ...segmask import SegmentationMask
from ...spaces import GRID_ATOL, Space, describe_space, spaces_match
from ...storage import MaskArchive, PreparedMask, save_mask
from ..common import MaskRecord, NeedsOptionError, records_to_archive
from ..labels import check_table_covers, labels_arg
from ..names import safe_filename, strip_suffix
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
) -> tuple[dict[str, int], dict[str, dict]]:
    if labels is not None:
        if isinstance(labels, str | os.PathLike):
            from ..labels import read_label_table_attrs

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
    for info in ar.infos():
        mask_name = info.name
        items = [(n, v) for n, v in info.mapping.items() if v != 0]
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
    if overlap not in OVERLAP_RULES:
        raise MaskValidationError(f"overlap must be one of {OVERLAP_RULES}, got {overlap!r}")
    expect_name(out, "nifti", what="label map")
    out = Path(out)
    with MaskArchive(archive) as ar:
        if len(ar) == 0 or ar.space is None:
            raise MaskValidationError(f"{archive}: the archive holds no masks")
        plan = _numbering(archive, _parts(ar), labels)
        regions, colors = _regions(ar, plan)
        lab, voxels, lost = _paint(regions, overlap, tuple(int(s) for s in ar.space.shape))
        table_out = {key: value for key, value, _r in regions}
        segmask_to_nifti(
            SegmentationMask(lab, table_out, ar.space, copy=False),
            out,
            label_names=table_out,
            colors=colors,
        )
    if write_json:
        _write_table_json(out, table_out)
    emptied = [k for k, n in lost.items() if n == voxels[k]]
    return LabelmapExport(out, table_out, voxels, lost, emptied, overlap)


#: One label of a label-map export: ``(name in the table, mask, stored label or -1 for
#: "any non-zero voxel", value in the label map)``.
_Planned = tuple[str, str, int, int]


def _numbering(
    archive: object,
    parts: list[tuple[str, str, int]],
    labels: Mapping[str, int] | str | os.PathLike | None,
) -> list[_Planned]:
    """The labels to paint, in order: the table's (``labels``), else 1, 2, ... over every
    part in archive order (a repeated name becomes ``mask:name``).

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
        return [(n, by_name[n][0], by_name[n][1], int(v)) for n, v in wanted.items()]
    table: dict[str, int] = {}
    plan = []
    for k, (mask_name, name, lab) in enumerate(parts, start=1):
        key = name if name not in table else f"{mask_name}:{name}"
        while key in table:
            key += "'"
        table[key] = k
        plan.append((key, mask_name, lab, k))
    return plan


def _regions(
    ar: MaskArchive, plan: list[_Planned]
) -> tuple[list[tuple[str, int, np.ndarray]], dict[str, object]]:
    """``([(name, value, bool region), ...], {name: colour})``: each mask read once."""
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
    return regions, colors


def _paint(
    regions: list[tuple[str, int, np.ndarray]], overlap: str, shape: tuple[int, ...]
) -> tuple[np.ndarray, dict[str, int], dict[str, int]]:
    """The label map of ``regions`` under the overlap rule: ``(label map, {name: voxels},
    {name: voxels lost to overlaps})``."""
    voxels = {key: int(np.count_nonzero(r)) for key, _v, r in regions}
    order = list(range(len(regions)))
    if overlap == "first":
        order.reverse()
    elif overlap == "smaller":
        order.sort(key=lambda i: -voxels[regions[i][0]])  # biggest first, smallest last
    top = max((v for _k, v, _r in regions), default=0)
    lab = np.zeros(shape, smallest_uint_dtype(top))
    for i in order:
        _key, value, region = regions[i]
        lab[region] = value
    lost: dict[str, int] = {}
    for key, value, region in regions:
        kept = int(np.count_nonzero(lab[region] == value)) if voxels[key] else 0
        if kept < voxels[key]:
            lost[key] = voxels[key] - kept
    return lab, voxels, lost


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
