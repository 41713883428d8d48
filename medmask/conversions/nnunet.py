"""nnU-Net's raw dataset layout out of a folder of archives (``medmask unpack-tree``):
``labelsTr/<case>.nii.gz`` (one label map per archive) and ``dataset.json``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..errors import MaskValidationError
from ..io.atomic import write_atomic
from ..io.formats.builtin import NnunetDataset
from ..io.target import Target
from ..labeltable import LabelTable
from ..storage import MaskArchive
from .common import ConversionReport
from .labels import labels_arg, nnunet_dataset_json
from .names import safe_filename
from .nifti import export_labelmap
from .targets import local_folder

__all__ = ["archives_to_nnunet", "NnunetFormat"]

Progress = Callable[[Iterable], Iterable] | None


def archives_to_nnunet(
    packed: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    labels: Mapping[str, int] | str | os.PathLike | None = None,
    overlap: str = "last",
    missing_empty: bool = False,
    progress: Progress = None,
) -> ConversionReport:
    """A folder of archives as an nnU-Net raw dataset of label maps.

    Writes ``out_dir/labelsTr/<case>.nii.gz`` (one label map per archive, TotalSegmentator
    names in the header) and ``out_dir/dataset.json`` (``labels`` with ``background: 0``).
    Images are not part of medmask archives: put them into ``imagesTr/`` yourself.

    Args:
        packed: A folder of ``.mska`` files (searched recursively).
        out_dir: The dataset folder.
        labels: Numbering (a subset of the masks; a mapping, a
            :class:`~medmask.labeltable.LabelTable` or a table file); several names may
            share a label (``{"kidney_left": 3, "kidney_right": 3}``: one kidney class,
            one ``dataset.json`` entry per label, named by the table's
            :meth:`~medmask.labeltable.LabelTable.class_name`); default: the first
            archive's names in order (every archive must then hold the same names).
        overlap: Overlap rule (see :func:`~medmask.conversions.nifti.export_labelmap`).
        missing_empty: A table name absent from an archive is an empty label there instead
            of an error.
        progress: Optional wrapper of the archive iterable.

    Returns:
        A report: ``masks`` are the case names; ``lost`` sums voxels lost per mask name.

    Raises:
        MaskValidationError: No archives, differing names without a table, or a table name
            missing from an archive (without ``missing_empty``).
    """
    files = sorted(
        p for p in Path(packed).rglob("*.mska") if p.is_file() and not p.name.startswith(".")
    )
    if not files:
        raise MaskValidationError(f"{packed}: no .mska archives found")
    table = _numbering(files, labels, missing_empty)
    dest = Path(out_dir) / "labelsTr"
    dest.mkdir(parents=True, exist_ok=True)
    report = ConversionReport(str(packed), str(out_dir), "nnunet")
    taken: set[str] = set()
    for f in progress(files) if progress else files:
        case = safe_filename(f.name.removesuffix(".mska"), taken)
        _write_case(f, dest / f"{case}.nii.gz", table, overlap, missing_empty, case, report)
        report.masks.append(case)
    ds = nnunet_dataset_json(table, num_training=len(files))
    payload = (json.dumps(ds, indent=1) + "\n").encode("utf-8")
    write_atomic(Path(out_dir) / "dataset.json", lambda fh: fh.write(payload))
    return report


def _numbering(
    files: list[Path], labels: Mapping[str, int] | str | os.PathLike | None, missing_empty: bool
) -> LabelTable:
    """``{name: label}`` of the dataset: ``labels``, else the first archive's names in order.

    Raises:
        MaskValidationError: Without ``labels`` (and ``missing_empty``), an archive holding
            other names than the first.
    """
    if labels is not None:
        return labels_arg(labels)
    with MaskArchive(files[0]) as ar:
        table = LabelTable(ar.all_names())
    if not missing_empty:
        for f in files[1:]:
            with MaskArchive(f) as ar:
                if ar.all_names() != list(table):
                    raise MaskValidationError(
                        f"{f}: holds other masks than {files[0].name}; give --labels TABLE "
                        "for one numbering across cases"
                    )
    return table


def _write_case(
    archive: Path,
    out: Path,
    table: LabelTable,
    overlap: str,
    missing_empty: bool,
    case: str,
    report: ConversionReport,
) -> None:
    """One case's label map; what it lost to overlaps is added to ``report``.

    Raises:
        MaskValidationError: The archive lacks table names (without ``missing_empty``), or
            holds none of them.
    """
    with MaskArchive(archive) as ar:
        have = set(ar.all_names())
    absent = [n for n in table if n not in have]
    if absent and not missing_empty:
        raise MaskValidationError(
            f"{archive}: lacks {len(absent)} masks of the table ({absent[:6]}); pass "
            "missing_empty=True / --missing-empty to write them as empty labels"
        )
    sub = table.subset(have)
    if not sub:
        raise MaskValidationError(f"{archive}: holds none of the table's masks")
    res = export_labelmap(archive, out, labels=sub, overlap=overlap, write_json=False)
    for n, v in res.lost.items():
        report.lost[n] = report.lost.get(n, 0) + v
    report.emptied += [f"{case}:{n}" for n in res.emptied]


class NnunetFormat(NnunetDataset):
    """nnU-Net's raw dataset, written from a folder of archives."""

    def write(
        self,
        archive: Target,
        out: Target,
        *,
        progress: Progress = None,
        labels: Mapping[str, int] | str | os.PathLike | None = None,
        overlap: str = "last",
        missing_empty: bool = False,
    ) -> ConversionReport:
        """:func:`archives_to_nnunet` of the folder ``archive`` into the folder ``out``."""
        return archives_to_nnunet(
            local_folder(archive, "a folder of archives"),
            local_folder(out, "an nnU-Net dataset"),
            labels=labels,
            overlap=overlap,
            missing_empty=missing_empty,
            progress=progress,
        )
