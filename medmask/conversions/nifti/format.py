"""The NIfTI entries of the format table with their conversions: a NIfTI file (one mask or
a label map) and a folder of NIfTI masks (or a case folder)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ...errors import MaskValidationError
from ...io.formats.builtin import Nifti, NiftiFolder
from ...io.names import split_suffix
from ...io.target import Target
from ...storage import MaskArchive, load_mask, save_mask
from ..common import ConversionReport, is_archive
from ..names import safe_filename
from ..targets import local_copy, local_folder
from .archive import (
    archive_to_folder,
    check_folder_for,
    export_labelmap,
    folder_to_archive,
    labelmap_to_archive,
    labelmap_to_msk,
)
from .cases import mask_folders
from .io import (
    MaskResampledWarning,
    nifti_files,
    nifti_label_table,
    nifti_to_segmask,
    segmask_to_nifti,
)

__all__ = ["NiftiFormat", "NiftiFolderFormat"]

Progress = Callable[[Iterable], Iterable] | None
Labels = Mapping[str, int] | str | None


class NiftiFormat(Nifti):
    """A NIfTI file: packed as one mask, or as a label map when it has a label table;
    unpacked as one label map."""

    def read(
        self,
        src: Target,
        out: Target,
        *,
        codec: str | None = None,
        progress: Progress = None,
        labels: Labels = None,
        drop_unlisted: bool = False,
        allow_float: bool = False,
        binarize: bool = False,
    ) -> ConversionReport:
        """Pack a NIfTI file: a label map (a table in ``labels`` or in the header) into one
        mask per label (or, into a ``.msk``, one label map), else one binary mask; see
        :func:`medmask.conversions.to_archive` for the options."""
        report = ConversionReport(str(src), str(out), self.kind)
        msk = out.format_name == "msk"
        with local_copy(src) as path, out.writing() as dest:
            if labels is None and nifti_label_table(path) is None:
                seg = nifti_to_segmask(path, allow_float=allow_float, binarize=binarize)
                name = next(iter(n for n, _ in seg.mapping.items()))
                if msk:
                    save_mask(seg, dest, codec=codec)
                else:
                    with MaskArchive(dest, "w", codec=codec, space=seg.space) as ar:
                        ar.add(name, seg)
                report.masks = [name]
                return report
            if labels is None:
                report.notes.append("label names read from the file's TotalSegmentator extension")
            if msk:
                seg = labelmap_to_msk(path, labels, dest, codec=codec, allow_float=allow_float)
                report.masks = [n for n, v in seg.mapping.items() if v]
                return report
            counts = labelmap_to_archive(
                path,
                labels,
                dest,
                codec=codec,
                allow_float=allow_float,
                drop_unlisted=drop_unlisted,
            )
        report.masks = list(counts)
        report.voxels = counts
        return report

    def write(
        self,
        archive: Target,
        out: Target,
        *,
        progress: Progress = None,
        labels: Labels = None,
        overlap: str = "last",
    ) -> ConversionReport:
        """One label map (with ``X.json``; a ``.msk`` keeps its own numbering); see
        :func:`medmask.conversions.from_archive` for the options."""
        report = ConversionReport(str(archive), str(out), self.kind)
        with local_copy(archive) as src, out.writing() as dest:
            if not is_archive(src):
                seg = load_mask(src)
                table = {n: v for n, v in seg.mapping.items() if v}
                segmask_to_nifti(seg, dest, label_names=table)
                report.masks = list(table)
                return report
            res = export_labelmap(src, dest, labels=labels, overlap=overlap)
            stem = split_suffix(dest)[0]
            if out.is_url:  # the table beside the label map goes up too
                out.with_name(f"{out.stem}.json").upload_from(dest.with_name(f"{stem}.json"))
        report.masks = list(res.table)
        report.voxels = res.voxels
        report.lost = res.lost
        report.emptied = res.emptied
        report.taken_by = res.taken_by
        report.notes.append(f"label table also in {out.stem}.json")
        return report


class NiftiFolderFormat(NiftiFolder):
    """A folder of binary NIfTI masks (or a case folder) in; one ``.nii.gz`` per mask out."""

    def read(
        self,
        src: Target,
        out: Target,
        *,
        codec: str | None = None,
        progress: Progress = None,
        resample: bool = False,
        allow_float: bool = False,
        binarize: bool = False,
    ) -> ConversionReport:
        """Pack the one case under a folder; see :func:`medmask.conversions.to_archive`.

        Raises:
            MaskValidationError: No masks under the folder, or several cases.
        """
        folder = local_folder(src, "a folder of masks")
        case = _one_case(folder)
        report = ConversionReport(str(src), str(out), self.kind)
        if case != folder:
            report.notes.append(f"packing the masks in {case} (the case's mask folder)")
        with out.writing() as dest, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MaskResampledWarning)
            report.masks = folder_to_archive(
                case,
                dest,
                codec=codec,
                resample=resample,
                allow_float=allow_float,
                binarize=binarize,
                progress=progress,
            )
        report.notes += [
            str(w.message) for w in caught if issubclass(w.category, MaskResampledWarning)
        ]
        report.source_bytes = sum(f.stat().st_size for f in nifti_files(case))  # what was packed
        return report

    def write(
        self,
        archive: Target,
        out: Target,
        *,
        progress: Progress = None,
        names: Iterable[str] | None = None,
        force: bool = False,
    ) -> ConversionReport:
        """One ``<safe name>.nii.gz`` per mask (a ``.msk``: one file), into a folder that
        holds nothing else unless ``force``; see :func:`medmask.conversions.from_archive`."""
        dest = local_folder(out, "a folder of masks")
        report = ConversionReport(str(archive), str(out), self.kind)
        with local_copy(archive) as src:
            if not is_archive(src):
                seg = load_mask(src)
                file = dest / f"{safe_filename(split_suffix(src)[0])}.nii.gz"
                check_folder_for(dest, [file], force=force)
                dest.mkdir(parents=True, exist_ok=True)
                segmask_to_nifti(seg, file)
                report.masks = [archive.name]
                return report
            written = archive_to_folder(src, dest, names=names, progress=progress, force=force)
        report.masks = list(written)
        report.renamed = {p.name: n for n, p in written.items() if p.name != f"{n}.nii.gz"}
        return report


def _one_case(folder: Path) -> Path:
    """The one case folder under ``folder``.

    Raises:
        MaskValidationError: No masks, or several cases (pack-tree packs those).
    """
    cases = mask_folders(folder)
    if not cases:
        raise MaskValidationError(f"{folder}: no .nii.gz / .nii masks in this folder or below it")
    if len(cases) > 1:
        raise MaskValidationError(
            f"{folder}: holds {len(cases)} cases ({', '.join(c.name for c in cases[:3])}"
            f"{' ...' if len(cases) > 3 else ''}); pack each, or all with 'medmask pack-tree'"
        )
    return cases[0]
