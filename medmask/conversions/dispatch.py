"""One entry point each way: :func:`to_archive` (any source, recognised by content, into an
archive) and :func:`from_archive` (an archive into the format its output's name says),
plus :func:`archives_to_nnunet` (a folder of archives into nnU-Net's raw layout)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from ..errors import MaskValidationError
from ..io.names import expect_name, format_from_name, split_suffix
from .common import ConversionReport, NeedsOptionError, iter_archive_records, records_to_archive

__all__ = ["to_archive", "from_archive", "archives_to_nnunet", "check_output"]

Progress = Callable[[Iterable], Iterable] | None


def check_output(out: str | os.PathLike, kinds: tuple[str, ...], *, what: str = "output") -> str:
    """Check an output path before any work: not a folder, and named for one of ``kinds``.

    Args:
        out: The path to write.
        kinds: Acceptable formats (keys of :data:`medmask.io.names.FORMAT_SUFFIXES`); the
            first one is suggested when the name is wrong.
        what: Words for the message.

    Returns:
        The format the name says.

    Raises:
        MaskValidationError: ``out`` is an existing folder or ends with a separator, or its
            name says another format (the message gives the right name).
    """
    s = os.fspath(out)
    if s.endswith(("/", os.sep)) or Path(s).is_dir():
        stem = Path(s.rstrip("/" + os.sep)).name or "out"
        raise MaskValidationError(
            f"{s}: is a folder; the {what} is one file: give a file name such as "
            f"{os.path.join(s.rstrip('/' + os.sep), stem + '.' + kinds[0])!r}"
        )
    kind = format_from_name(s)
    if kind not in kinds:
        expect_name(s, kinds[0], what=what)
    return kind  # type: ignore[return-value]


def _only(kind: str, **given: object) -> None:
    bad = [k for k, v in given.items() if v not in (None, False)]
    if bad:
        shown = ", ".join(f"{k}= / --{k.replace('_', '-')}" for k in bad)
        raise NeedsOptionError(f"{shown}: not applicable to a {kind} source; leave it out")


def to_archive(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    labels: Mapping[str, int] | str | os.PathLike | None = None,
    drop_unlisted: bool = False,
    threshold: float | None = None,
    reference: str | os.PathLike | None = None,
    codec: str | None = None,
    resample: bool = False,
    allow_float: bool = False,
    binarize: bool = False,
    progress: Progress = None,
) -> ConversionReport:
    """Pack any supported source into an archive (``.mska``; ``.msk`` for one label map).

    The source is recognised by content (:func:`~medmask.conversions.detect.detect`): a
    folder of NIfTI masks or a case folder (``CASE/segmentations/`` beside
    ``CASE/ct.nii.gz``), a NIfTI label map (names from ``labels`` or from
    TotalSegmentator's header extension), a single binary NIfTI mask, a Slicer
    ``.seg.nrrd`` or a DICOM SEG. The output is checked before any work and appears
    atomically.

    Args:
        src: The source file or folder.
        out: The archive to write.
        labels: Label table of a NIfTI label map (overrides the header's names).
        drop_unlisted: Drop labels the table does not name instead of refusing.
        threshold: DICOM SEG only: threshold of a truly fractional SEG (0 < T <= 1).
        reference: DICOM SEG only: folder of the source series (full grid).
        codec: ``None`` (version 2) or ``"zstd"`` (version 1; attributes dropped).
        resample: NIfTI folders: resample masks on another grid onto the first one's.
        allow_float: NIfTI: accept whole-number float data.
        binarize: NIfTI: any non-zero voxel is part of the mask (0/255 masks).
        progress: Optional wrapper of iterables (e.g. ``tqdm``).

    Returns:
        A :class:`~medmask.conversions.common.ConversionReport`.

    Raises:
        FileNotFoundError: No such source.
        MaskValidationError: An unusable output name, an unrecognised or unusable source,
            or options that do not apply to it (one clear message each).
        SpaceMismatchError: NIfTI masks on different grids (without ``resample``).
    """
    from .detect import detect

    out_kind = check_output(out, ("mska", "msk"), what="archive")
    kind = detect(src)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    report = ConversionReport(str(src), str(out), kind)
    if out_kind == "msk" and kind != "nifti":
        try:
            expect_name(out, "mska", what=f"archive of a {kind} source (one mask per segment)")
        except MaskValidationError as exc:
            raise NeedsOptionError(str(exc)) from None
    if kind == "folder":
        _only("folder of masks", labels=labels, threshold=threshold, reference=reference)
        from ..packing import find_cases
        from .nifti import MaskResampledWarning, folder_to_archive

        cases = find_cases(src)
        if not cases:
            raise MaskValidationError(f"{src}: no .nii.gz / .nii masks in this folder or below it")
        if len(cases) > 1:
            raise MaskValidationError(
                f"{src}: holds {len(cases)} cases ({', '.join(Path(c).name for c in cases[:3])}"
                f"{' ...' if len(cases) > 3 else ''}); pack each, or all with 'medmask pack-tree'"
            )
        case = Path(cases[0])
        if case != Path(src):
            report.notes.append(f"packing the masks in {case} (the case's mask folder)")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", MaskResampledWarning)
            report.masks = folder_to_archive(
                case,
                out,
                codec=codec,
                resample=resample,
                allow_float=allow_float,
                binarize=binarize,
                progress=progress,
            )
        report.notes += [
            str(w.message) for w in caught if issubclass(w.category, MaskResampledWarning)
        ]
        return report
    if kind == "nifti":
        _only("NIfTI", threshold=threshold, reference=reference, resample=resample)
        from .nifti import labelmap_to_archive, labelmap_to_msk, nifti_label_table, nifti_to_segmask

        has_table = labels is not None or nifti_label_table(src) is not None
        if has_table:
            if labels is None:
                report.notes.append("label names read from the file's TotalSegmentator extension")
            if out_kind == "msk":
                seg = labelmap_to_msk(src, labels, out, codec=codec, allow_float=allow_float)
                report.masks = [n for n, v in seg.mapping.items() if v]
                return report
            counts = labelmap_to_archive(
                src, labels, out, codec=codec, allow_float=allow_float, drop_unlisted=drop_unlisted
            )
            report.masks = list(counts)
            report.voxels = counts
            return report
        seg = nifti_to_segmask(src, allow_float=allow_float, binarize=binarize)
        name = next(iter(n for n, _ in seg.mapping.items()))
        if out_kind == "msk":
            seg.save(out, codec=codec)
        else:
            from ..storage import MaskArchive

            with MaskArchive(out, "w", codec=codec, space=seg.space) as ar:
                ar.add_segmask(seg, name)
        report.masks = [name]
        return report
    if kind == "seg.nrrd":
        _only(
            "Slicer .seg.nrrd",
            labels=labels,
            threshold=threshold,
            reference=reference,
            binarize=binarize,
        )
        from .slicer import read_seg_nrrd

        space, records, renamed = read_seg_nrrd(src)
        report.renamed = renamed
        report.masks = records_to_archive(records, space, out, codec=codec, progress=progress)
        return report
    if kind == "dicom-seg":
        _only("DICOM SEG", labels=labels, binarize=binarize, resample=resample)
        from .dicom_seg import read_dicom_seg

        seg = read_dicom_seg(src, threshold=threshold, reference=reference)
        report.renamed = seg.renamed
        report.notes += seg.notes
        report.kind = f"dicom-seg ({seg.seg_type})"
        report.masks = records_to_archive(
            seg.records, seg.space, out, codec=codec, progress=progress
        )
        return report
    if kind in ("mska", "msk"):
        raise MaskValidationError(
            f"{src}: is already a medmask .{kind} file (use 'medmask convert' to change its codec)"
        )
    if kind == "dicom":
        raise MaskValidationError(
            f"{src}: a DICOM image, not a segmentation (SEG); pack the SEG file, and give the "
            "image series to --reference"
        )
    raise MaskValidationError(
        f"{src}: an NRRD file without Slicer's Segment fields; save it from 3D Slicer as a "
        "segmentation (.seg.nrrd), or convert it to NIfTI"
    )


def _out_kind(out: str | os.PathLike) -> str:
    s = os.fspath(out)
    if s.endswith(("/", os.sep)) or Path(s).is_dir():
        return "folder"
    kind = format_from_name(s)
    if kind in ("nifti", "seg.nrrd", "dicom"):
        return kind
    suffix = split_suffix(s)[1]
    if kind is None and not suffix:
        return "folder"
    raise MaskValidationError(
        f"{s}: unpack writes a folder (one .nii.gz per mask), X.nii.gz / X.nii (one label map), "
        f"X.seg.nrrd (Slicer) or X.dcm (DICOM SEG); the name {s!r} says "
        f"{kind or repr(suffix)}"
        + ("; to copy an archive use 'medmask convert'" if kind in ("mska", "msk") else "")
    )


def from_archive(
    archive: str | os.PathLike,
    out: str | os.PathLike,
    *,
    labels: Mapping[str, int] | str | os.PathLike | None = None,
    overlap: str = "last",
    source: str | os.PathLike | None = None,
    labelmap_seg: bool = False,
    names: Iterable[str] | None = None,
    progress: Progress = None,
) -> ConversionReport:
    """Export an archive (or ``.msk``) to the format ``out``'s name says.

    * a folder (an existing one, a trailing ``/``, or a name without suffix): one
      ``<safe name>.nii.gz`` per mask;
    * ``X.nii.gz`` / ``X.nii``: one label map with TotalSegmentator's names extension and
      ``X.json`` (numbering from ``labels``, else archive order; overlaps settled by
      ``overlap``, losses reported);
    * ``X.seg.nrrd``: a Slicer segmentation (overlaps in layers);
    * ``X.dcm``: a DICOM SEG on the series in ``source`` (BINARY, or LABELMAP with
      ``labelmap_seg``).

    Args:
        archive: The ``.mska`` (or ``.msk``).
        out: The output.
        labels: Label-map numbering (a subset and/or chosen numbers).
        overlap: Label maps: ``"last"``, ``"first"`` or ``"smaller"`` wins.
        source: DICOM SEG: folder of the referenced image series (required).
        labelmap_seg: DICOM SEG: write a LABELMAP SEG (refused when masks overlap).
        names: Only these masks (folder, .seg.nrrd and .dcm outputs).
        progress: Optional wrapper of iterables.

    Returns:
        A :class:`~medmask.conversions.common.ConversionReport` (for label maps with the
        voxels lost to overlaps per mask, and the masks emptied).

    Raises:
        MaskValidationError: An output name that says no format unpack writes, options
            that do not fit the output, a missing ``source`` for ``.dcm``.
        SpaceMismatchError: ``.dcm``: the archive's grid is not the source series'.
    """
    kind = _out_kind(out)
    src = Path(archive)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such file")
    from ..inspect import is_archive as _is_archive

    is_archive = _is_archive(src)
    report = ConversionReport(str(archive), str(out), kind)
    if kind != "dicom" and (source is not None or labelmap_seg):
        raise MaskValidationError("source/--source and a LABELMAP SEG apply to X.dcm outputs only")
    if kind != "nifti" and (labels is not None or overlap != "last"):
        raise MaskValidationError(
            "labels/--labels and the overlap rule apply to X.nii.gz label maps only"
        )
    if kind == "folder":
        from .names import safe_filename
        from .nifti import archive_to_folder, segmask_to_nifti

        if not is_archive:
            from ..segmask import SegmentationMask

            seg = SegmentationMask.load(src)
            Path(out).mkdir(parents=True, exist_ok=True)
            target = Path(out) / f"{safe_filename(src.name.removesuffix('.msk'))}.nii.gz"
            segmask_to_nifti(seg, target)
            report.masks = [src.name]
            return report
        written = archive_to_folder(archive, out, names=names, progress=progress)
        report.masks = list(written)
        report.renamed = {p.name: n for n, p in written.items() if p.name != f"{n}.nii.gz"}
        return report
    if kind == "nifti":
        if not is_archive:
            from ..segmask import SegmentationMask
            from .nifti import segmask_to_nifti

            seg = SegmentationMask.load(src)
            table = {n: v for n, v in seg.mapping.items() if v}
            segmask_to_nifti(seg, out, label_names=table)
            report.masks = list(table)
            return report
        from .nifti import export_labelmap

        res = export_labelmap(archive, out, labels=labels, overlap=overlap)
        report.masks = list(res.table)
        report.voxels = res.voxels
        report.lost = res.lost
        report.emptied = res.emptied
        report.notes.append(f"label table also in {split_suffix(out)[0]}.json")
        return report
    space, count, records = iter_archive_records(archive, names)
    if kind == "seg.nrrd":
        from .slicer import write_seg_nrrd

        placed = write_seg_nrrd(records, space, out, progress=progress)
        report.masks = list(placed)
        layers = 1 + max(layer for layer, _ in placed.values())
        if layers > 1:
            report.notes.append(f"overlapping masks written in {layers} layers")
        return report
    if source is None:
        raise MaskValidationError(
            f"{out}: a DICOM SEG references its image series: give source= / --source DICOM_DIR"
        )
    from .dicom_seg import write_dicom_seg

    numbers = write_dicom_seg(
        records, space, out, source, labelmap=labelmap_seg, count=count, progress=progress
    )
    report.masks = list(numbers)
    return report


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
        labels: Numbering (a subset of the masks); default: the first archive's names in
            order (every archive must then hold the same names).
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
    from ..storage import MaskArchive
    from .labels import labels_arg, nnunet_dataset_json, read_label_table
    from .nifti import export_labelmap

    root = Path(packed)
    files = sorted(p for p in root.rglob("*.mska") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise MaskValidationError(f"{packed}: no .mska archives found")
    if labels is None:
        with MaskArchive(files[0]) as ar:
            table = {n: k for k, n in enumerate(ar.all_names(), start=1)}
        if not missing_empty:
            for f in files[1:]:
                with MaskArchive(f) as ar:
                    if ar.all_names() != list(table):
                        raise MaskValidationError(
                            f"{f}: holds other masks than {files[0].name}; give --labels TABLE "
                            "for one numbering across cases"
                        )
    elif isinstance(labels, str | os.PathLike):
        table = read_label_table(labels)
    else:
        table = labels_arg(labels)
    dest = Path(out_dir) / "labelsTr"
    dest.mkdir(parents=True, exist_ok=True)
    report = ConversionReport(str(packed), str(out_dir), "nnunet")
    taken: set[str] = set()
    from .names import safe_filename

    for f in progress(files) if progress else files:
        case = safe_filename(f.name.removesuffix(".mska"), taken)
        with MaskArchive(f) as ar:
            have = set(ar.all_names())
        absent = [n for n in table if n not in have]
        if absent and not missing_empty:
            raise MaskValidationError(
                f"{f}: lacks {len(absent)} masks of the table ({absent[:6]}); pass "
                "missing_empty=True / --missing-empty to write them as empty labels"
            )
        sub = {n: v for n, v in table.items() if n in have}
        if not sub:
            raise MaskValidationError(f"{f}: holds none of the table's masks")
        res = export_labelmap(
            f, dest / f"{case}.nii.gz", labels=sub, overlap=overlap, write_json=False
        )
        report.masks.append(case)
        for n, v in res.lost.items():
            report.lost[n] = report.lost.get(n, 0) + v
        report.emptied += [f"{case}:{n}" for n in res.emptied]
    ds = nnunet_dataset_json(table, num_training=len(files))
    (Path(out_dir) / "dataset.json").write_text(json.dumps(ds, indent=1) + "\n", encoding="utf-8")
    return report
