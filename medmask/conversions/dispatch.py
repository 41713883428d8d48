"""One entry point each way, both lookups in the format table (:mod:`medmask.io.formats`):
:func:`to_archive` (any source, recognised by content, into an archive), :func:`from_archive`
(an archive into the format its output's name says) and :func:`from_archives` (a folder of
archives into a dataset layout such as nnU-Net's). No format is named here: the table says
what each one reads and writes and which options it takes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import MaskValidationError
from ..io.formats import FileFormat, formats, get_format
from ..io.names import expect_name
from ..io.target import Target
from .common import ConversionReport, NeedsOptionError
from .detect import detect

__all__ = [
    "to_archive",
    "from_archive",
    "from_archives",
    "check_output",
    "output_format",
    "PACK_OUTPUTS",
]

Progress = Callable[[Iterable], Iterable] | None
Labels = Mapping[str, int] | str | os.PathLike | None

#: What ``pack`` writes: an archive, or a ``.msk`` (one label map).
PACK_OUTPUTS = ("mska", "msk")
#: Options whose default is not "absent" (an option equal to its default is not given).
_DEFAULTS: dict[str, object] = {"overlap": "last"}
#: How the command line spells an option, where it is not ``--<name with dashes>``.
_FLAGS: dict[str, str | None] = {"labelmap_seg": "--seg-type labelmap", "names": None}


def check_output(
    out: str | os.PathLike | Target, kinds: tuple[str, ...], *, what: str = "output"
) -> str:
    """Check an output before any work: not a folder, and named for one of ``kinds``.

    Args:
        out: The path, URL or :class:`~medmask.io.Target` to write.
        kinds: Acceptable formats (kinds of the format table); the first one is suggested
            when the name is wrong.
        what: Words for the message.

    Returns:
        The format the name says.

    Raises:
        MaskValidationError: ``out`` is an existing folder or ends with a separator, or its
            name says another format (the message gives the right name).
    """
    t = Target.of(out)
    s = t.path
    if s.endswith(("/", os.sep)) or (not t.is_url and Path(s).is_dir()):
        stem = Path(s.rstrip("/" + os.sep)).name or "out"
        raise MaskValidationError(
            f"{s}: is a folder; the {what} is one file: give a file name such as "
            f"{os.path.join(s.rstrip('/' + os.sep), stem + '.' + kinds[0])!r}"
        )
    kind = t.format_name
    if kind not in kinds:
        expect_name(s, kinds[0], what=what)
    return kind  # type: ignore[return-value]


def output_format(out: str | os.PathLike | Target) -> FileFormat:
    """The format ``unpack`` writes to ``out``, by its name.

    A folder (an existing one, a trailing ``/``, or a name without suffix) is the table's
    unpackable folder format; otherwise the suffix names the format.

    Args:
        out: The output path, URL or :class:`~medmask.io.Target`.

    Returns:
        The format's table entry.

    Raises:
        MaskValidationError: The name says a format that ``unpack`` does not write (the
            message lists those it does, and what to do with the one named).
    """
    t = Target.of(out)
    folder = next(f for f in formats() if f.folder and f.capabilities.unpack)
    if t.path.endswith(("/", os.sep)) or (not t.is_url and Path(t.path).is_dir()):
        return folder
    kind = t.format_name
    if kind is None and not t.suffix:
        return folder
    fmt = get_format(kind) if kind else None
    if fmt is not None and fmt.capabilities.unpack and not fmt.folder:
        return fmt
    writes = ", ".join(
        f"{' / '.join('X' + s for s in f.suffixes) or f.output_name} ({f.title})"
        for f in formats()
        if f.capabilities.unpack
    )
    raise MaskValidationError(
        f"{t.path}: unpack writes {writes}; the name {t.path!r} says {kind or repr(t.suffix)}"
        + (f"; {fmt.hint}" if fmt is not None and fmt.hint else "")
    )


def _given(**options: object) -> dict[str, Any]:
    """The options that were given: not ``None``, ``False`` or their default."""
    return {
        k: v
        for k, v in options.items()
        if v is not None and v is not False and not (k in _DEFAULTS and v == _DEFAULTS[k])
    }


def _flag(name: str) -> str:
    flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
    return f"{name}=" + (f" / {flag}" if flag else "")


def _check_options(
    fmt: FileFormat, direction: str, given: Mapping[str, object], path: object
) -> None:
    """Refuse options ``fmt`` does not take in ``direction`` (``"pack"``/``"unpack"``) for the
    file ``path``, and options it cannot do without.

    Raises:
        NeedsOptionError: The message names the options and the format.
    """
    accepted = fmt.pack_options if direction == "pack" else fmt.unpack_options
    what = "source" if direction == "pack" else f"output ({fmt.output_name})"
    bad = [k for k in given if k not in accepted]
    if bad:
        raise NeedsOptionError(
            f"{', '.join(_flag(k) for k in bad)}: not applicable to a {fmt.title} {what}; "
            "leave it out",
            path=path,
        )
    if direction == "unpack":
        missing = sorted(fmt.unpack_requires - set(given))
        if missing:
            raise NeedsOptionError(
                f"a {fmt.title} {what} needs {', '.join(_flag(k) for k in missing)}", path=path
            )


def to_archive(
    src: str | os.PathLike | Target,
    out: str | os.PathLike | Target,
    *,
    labels: Labels = None,
    drop_unlisted: bool = False,
    threshold: float | None = None,
    reference: str | os.PathLike | None = None,
    codec: str | None = None,
    resample: bool = False,
    allow_float: bool = False,
    binarize: bool = False,
    progress: Progress = None,
    storage_options: Mapping[str, Any] | None = None,
) -> ConversionReport:
    """Pack any supported source into an archive (``.mska``; ``.msk`` for one label map).

    The source is recognised by content (:func:`~medmask.conversions.detect.detect`) and
    packed by its entry in the format table: a folder of NIfTI masks or a case folder
    (``CASE/segmentations/`` beside ``CASE/ct.nii.gz``), a NIfTI label map (names from
    ``labels`` or from TotalSegmentator's header extension), a single binary NIfTI mask,
    a Slicer ``.seg.nrrd``, a DICOM SEG, or a format registered with
    :func:`medmask.io.formats.register_format`. The output is checked before any work and
    appears atomically (a URL: uploaded whole).

    Args:
        src: The source file or folder (a URL file is downloaded first).
        out: The archive to write (a path, a URL or a :class:`~medmask.io.Target`).
        labels: Label table of a NIfTI label map (overrides the header's names).
        drop_unlisted: Drop labels the table does not name instead of refusing.
        threshold: DICOM SEG only: threshold of a truly fractional SEG (0 < T <= 1).
        reference: DICOM SEG only: folder of the source series (full grid).
        codec: ``None`` (version 2) or ``"zstd"`` (version 1; attributes dropped).
        resample: NIfTI folders: resample masks on another grid onto the first one's.
        allow_float: NIfTI: accept whole-number float data.
        binarize: NIfTI: any non-zero voxel is part of the mask (0/255 masks).
        progress: Optional wrapper of iterables (e.g. ``tqdm``).
        storage_options: fsspec options for URLs given as strings.

    Returns:
        A :class:`~medmask.conversions.common.ConversionReport`.

    Raises:
        FileNotFoundError: No such source.
        MaskValidationError: An unusable output name, an unrecognised or unusable source,
            or options that do not apply to it (one clear message each).
        SpaceMismatchError: NIfTI masks on different grids (without ``resample``).
    """
    src_t, out_t = Target.of(src, storage_options), Target.of(out, storage_options)
    out_kind = check_output(out_t, PACK_OUTPUTS, what="archive")
    fmt = get_format(detect(src_t))
    if not fmt.capabilities.pack:
        raise fmt.refusal(src_t, "pack")
    if out_kind == "msk" and not fmt.capabilities.label_map:
        try:
            expect_name(
                out_t, "mska", what=f"archive of a {fmt.kind} source (one mask per segment)"
            )
        except MaskValidationError as exc:
            raise NeedsOptionError(str(exc)) from None
    given = _given(
        labels=labels,
        drop_unlisted=drop_unlisted,
        threshold=threshold,
        reference=reference,
        resample=resample,
        allow_float=allow_float,
        binarize=binarize,
    )
    _check_options(fmt, "pack", given, src_t)
    if not out_t.is_url:
        Path(out_t.path).parent.mkdir(parents=True, exist_ok=True)
    return fmt.read(src_t, out_t, codec=codec, progress=progress, **given)


def from_archive(
    archive: str | os.PathLike | Target,
    out: str | os.PathLike | Target,
    *,
    labels: Labels = None,
    overlap: str = "last",
    source: str | os.PathLike | None = None,
    labelmap_seg: bool = False,
    names: Iterable[str] | None = None,
    force: bool = False,
    progress: Progress = None,
    storage_options: Mapping[str, Any] | None = None,
) -> ConversionReport:
    """Export an archive (or ``.msk``) to the format ``out``'s name says.

    * a folder (an existing one, a trailing ``/``, or a name without suffix): one
      ``<safe name>.nii.gz`` per mask; a folder holding other files is refused unless
      ``force`` (two cases' masks would mix);
    * ``X.nii.gz`` / ``X.nii``: one label map with TotalSegmentator's names extension and
      ``X.json`` (numbering from ``labels``, else archive order; overlaps settled by
      ``overlap``, losses reported);
    * ``X.seg.nrrd``: a Slicer segmentation (overlaps in layers);
    * ``X.dcm``: a DICOM SEG on the series in ``source`` (BINARY, or LABELMAP with
      ``labelmap_seg``);
    * the suffix of a format registered with :func:`medmask.io.formats.register_format`.

    Args:
        archive: The ``.mska`` (or ``.msk``): a path, a URL or a Target.
        out: The output (a URL file is uploaded whole; folders are local).
        labels: Label maps: numbering (a subset and/or chosen numbers).
        overlap: Label maps: ``"last"``, ``"first"`` or ``"smaller"`` wins.
        source: DICOM SEG: folder of the referenced image series (required).
        labelmap_seg: DICOM SEG: write a LABELMAP SEG (refused when masks overlap).
        names: Only these masks (folder, .seg.nrrd and .dcm outputs).
        force: Folder output: write into a folder that holds other files too.
        progress: Optional wrapper of iterables.
        storage_options: fsspec options for URLs given as strings.

    Returns:
        A :class:`~medmask.conversions.common.ConversionReport` (for label maps with the
        voxels lost to overlaps per mask, and the masks emptied).

    Raises:
        FileNotFoundError: No such archive.
        MaskValidationError: An output name that says no format unpack writes, options
            that do not fit the output, a missing ``source`` for ``.dcm``, a folder
            holding other files (without ``force``; a ``NeedsOptionError``).
        SpaceMismatchError: ``.dcm``: the archive's grid is not the source series'.
    """
    archive_t, out_t = Target.of(archive, storage_options), Target.of(out, storage_options)
    fmt = output_format(out_t)
    if archive_t.info() is None:
        raise FileNotFoundError(f"{archive_t}: no such file")
    given = _given(
        labels=labels,
        overlap=overlap,
        source=source,
        labelmap_seg=labelmap_seg,
        names=names,
        force=force,
    )
    _check_options(fmt, "unpack", given, out_t)
    return fmt.write(archive_t, out_t, progress=progress, **given)


def from_archives(
    packed: str | os.PathLike,
    out: str | os.PathLike,
    *,
    kind: str = "nnunet",
    labels: Labels = None,
    overlap: str = "last",
    missing_empty: bool = False,
    progress: Progress = None,
) -> ConversionReport:
    """Export a folder of archives as a dataset of the ``tree`` format ``kind``.

    Args:
        packed: A folder of ``.mska`` files (searched recursively).
        out: The dataset folder.
        kind: A format of the table that writes trees (``"nnunet"``: see
            :func:`~medmask.conversions.nnunet.archives_to_nnunet`).
        labels: Numbering (a subset of the masks).
        overlap: Overlap rule of the label maps.
        missing_empty: A table name absent from an archive is an empty label there.
        progress: Optional wrapper of the archive iterable.

    Returns:
        A report: ``masks`` are the case names; ``lost`` sums voxels lost per mask name.

    Raises:
        MaskValidationError: ``kind`` writes no trees, or options it does not take; see
            the format's own errors.
    """
    fmt = get_format(kind)
    if not fmt.capabilities.tree:
        raise MaskValidationError(f"{kind}: the {fmt.title} format is not written as a tree")
    given = _given(labels=labels, overlap=overlap, missing_empty=missing_empty)
    _check_options(fmt, "unpack", given, out)
    return fmt.write(Target.of(packed), Target.of(out), progress=progress, **given)
