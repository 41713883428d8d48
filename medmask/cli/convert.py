"""``medmask convert``: rewrite a file in another format version (compacting it), or export
an archive to the format its output's name says (a ``.nii.gz`` is a label map).

The output's name says its format: ``.mska`` (an archive: from an archive, or a ``.msk``
becoming a one-mask archive), ``.msk`` (from a ``.msk`` only), or a file format of the
format table that unpacks without options (``.nii.gz``/``.nii``: a label map;
``.seg.nrrd``). Anything else is refused before anything is written.
"""

from __future__ import annotations

import argparse
import os
import textwrap
from pathlib import Path

from ..conversions import from_archive
from ..format import compat_choices
from ..inspect import sniff_file
from ..io.formats import formats, get_format
from ..io.names import FORMAT_SUFFIXES, format_from_name, is_url, split_suffix
from ._common import (
    EXIT_OK,
    AddCommand,
    UsageError,
    note,
    print_export,
    progress,
    say,
    storage_options,
    target,
)

#: medmask's own formats, which ``convert`` rewrites (any other output is an export).
MEDMASK_KINDS = ("mska", "msk")


def output_kinds() -> tuple[str, ...]:
    """The formats ``convert`` writes, by the output's name: medmask's own, and every file
    format of the format table that unpacks without further options."""
    exports = [
        f.kind
        for f in formats()
        if f.capabilities.unpack and not f.folder and not f.unpack_requires
    ]
    return (*MEDMASK_KINDS, *exports)


def _kw(args: argparse.Namespace) -> dict:
    so = storage_options(args)
    return {} if so is None else {"storage_options": so}


def _right_name(out: str, kind: str) -> str:
    stem = split_suffix(out)[0]
    parent = os.path.dirname(out.rstrip("/" + os.sep))
    return os.path.join(parent, stem + FORMAT_SUFFIXES[kind][0])


def output_kind(src_kind: str, out: str) -> str:
    """The format to write for a source of ``src_kind`` (``"mska"``/``"msk"``) to ``out``.

    Raises:
        UsageError: ``out`` is a folder, or its name says a format that ``convert`` cannot
            write from this source; the message names what the name should be.
    """
    if out.endswith(("/", os.sep)) or (not is_url(out) and Path(out).is_dir()):
        raise UsageError(
            f"{out}: is a folder; convert writes one file, e.g. "
            f"{os.path.join(out.rstrip('/' + os.sep), 'out.mska')!r} (for one .nii.gz per "
            "mask use 'medmask unpack ARCHIVE -o DIR')"
        )
    kind = format_from_name(out)
    if kind == "msk" and src_kind == "mska":
        raise UsageError(
            f"{out}: a .msk holds one mask, but the source is an archive: an archive converts "
            f"to an archive, name it like {_right_name(out, 'mska')!r} (or to a label map: "
            f"{_right_name(out, 'nifti')!r})"
        )
    fmt = get_format(kind) if kind else None
    if fmt is not None and fmt.capabilities.unpack and fmt.unpack_requires:
        needs = " ".join(f"--{k} ..." for k in sorted(fmt.unpack_requires))
        raise UsageError(
            f"{out}: a {fmt.title} output needs {needs}: use 'medmask unpack SRC -o {out} {needs}'"
        )
    kinds = output_kinds()
    if kind not in kinds:
        suffix = split_suffix(out)[1]
        said = (
            f"names a {kind} file"
            if kind
            else (f"has the suffix {suffix!r}" if suffix else "has no suffix")
        )
        writes = ", ".join(get_format(k).suffixes[0] for k in kinds)
        raise UsageError(
            f"{out}: convert writes {writes} (a file of the format its name says), and this "
            f"name {said}; name it like {_right_name(out, src_kind)!r}"
        )
    return kind


def cmd_convert(args: argparse.Namespace) -> int:
    src, out = args.src, args.output
    if not is_url(src):
        p = Path(src)
        if not p.exists():
            raise UsageError(f"{src}: no such file")
        if p.is_dir():
            raise UsageError(f"{src}: is a folder, not a .msk/.mska file")
    src_kind, src_major, _minor = sniff_file(src, **_kw(args))
    kind = output_kind(src_kind, out)
    if kind not in MEDMASK_KINDS and (args.to is not None or args.compat is not None):
        raise UsageError(f"--to/--compat choose a medmask format version; {out} is a {kind} file")
    if args.compat is not None and args.to is not None:
        raise UsageError("give --to or --compat, not both (--compat 0.1 is --to 1)")
    local = not (is_url(src) or is_url(out))
    if local and Path(out).exists() and Path(src).resolve() == Path(out).resolve():
        raise UsageError("convert writes a new file: give an -o different from SRC")
    if kind not in MEDMASK_KINDS:
        return _export(args, src, out, kind)
    if args.overlap != "last":
        raise UsageError(f"--overlap: label maps only; {out} is a medmask file (keeps overlaps)")
    to = 1 if args.compat == "0.1" else (2 if args.to is None else args.to)
    codec = "zstd" if to == 1 else "bitzstd"
    compat = args.compat if args.compat not in (None, "0.1") else None
    if not is_url(out):
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    if src_kind == "mska":
        n, dropped = _archive_to_archive(args, src, out, codec, compat)
    else:
        n, dropped = _msk_to(args, src, out, kind, codec, compat)
    if dropped:
        note(
            args,
            f"attributes of {dropped} mask(s) not kept: the format written "
            f"({_written(to, compat)}) cannot hold them (leave out --to/--compat to keep them)",
        )
    say(
        args,
        f"wrote {out} ({_written(to, compat)}, {n} masks): {_size(args, src)} -> "
        f"{_size(args, out)} bytes",
    )
    return EXIT_OK


def _written(to: int, compat: str | None) -> str:
    if to == 1:
        return "version 1"
    return f"version 2, readable by medmask {compat}" if compat else "version 2"


def _size(args: argparse.Namespace, path: str) -> str:
    """A file's or object's size in bytes, as printed (``?`` if the store does not say)."""
    if not is_url(path):
        return f"{os.stat(path).st_size:,}"
    size = (target(args, path).info() or {}).get("size")
    return "?" if size is None else f"{int(size):,}"


def _archive_to_archive(
    args: argparse.Namespace, src: str, out: str, codec: str, compat: str | None
) -> tuple[int, int]:
    """Copy every live mask with its attributes; returns ``(masks, masks whose attrs were dropped)``."""
    from ..storage import MaskArchive

    kw = _kw(args)
    dropped = 0
    with (
        MaskArchive(src, **kw) as ar,
        MaskArchive(out, "w", codec=codec, compat=compat, space=ar.space, **kw) as dst,
    ):
        keep_attrs = dst.supports_attrs
        infos = ar.infos()
        for info in progress(args, len(infos), "converting")(infos):
            attrs = dict(info.attrs) if info.attrs else None
            if attrs and not keep_attrs:
                dropped += 1
                attrs = None
            seg = ar[info.index]
            if attrs:
                dst.add(info.name, seg, attrs=attrs)
            else:
                dst.add(info.name, seg)
        n = len(infos)
        if ar.archive_attrs and dst.layout.archive_attrs:
            dst.set_archive_attrs(ar.archive_attrs)
        elif ar.archive_attrs:
            note(
                args,
                f"archive attributes {sorted(ar.archive_attrs)} not kept: the format "
                f"written (format {dst.layout.name}) cannot hold them (leave out --to/--compat)",
            )
    return n, dropped


def _msk_to(
    args: argparse.Namespace, src: str, out: str, kind: str, codec: str, compat: str | None
) -> tuple[int, int]:
    """A ``.msk`` to a ``.msk`` of the chosen version, or to a one-mask archive (``compat``:
    see :class:`~medmask.MaskArchive`; a ``.msk`` for medmask 0.2 holds no attributes)."""
    from ..storage import MaskArchive, MaskFile

    kw = _kw(args)
    mf = MaskFile(src, **kw)
    seg = mf.read()
    attrs = dict(mf.info().attrs) or None
    dropped = 0
    if attrs and (codec == "zstd" or compat == "0.2"):
        attrs, dropped = None, 1
    if kind == "msk":
        if attrs:
            seg.save(out, codec=codec, attrs=attrs)
        else:
            seg.save(out, codec=codec)
        return 1, dropped
    name = split_suffix(src)[0]
    with MaskArchive(out, "w", codec=codec, compat=compat, space=seg.space, **kw) as dst:
        if attrs:
            dst.add(name, seg, attrs=attrs)
        else:
            dst.add(name, seg)
    return 1, dropped


def _export(args: argparse.Namespace, src: str, out: str, kind: str) -> int:
    # the name was checked before: what fails now is the file (exit status 1)
    report = from_archive(
        target(args, src),
        target(args, out),
        overlap=args.overlap if kind == "nifti" else "last",
        progress=progress(args, None, "exporting"),
    )
    print_export(args, report, out, "label map" if kind == "nifti" else get_format(kind).title)
    return EXIT_OK


def _exports() -> str:
    """One line per export format (from the format table)."""
    return "".join(
        textwrap.fill(
            get_format(k).unpack_help,
            88,
            initial_indent=f"  {'OUT' + get_format(k).suffixes[0]:<10} ",
            subsequent_indent=" " * 13,
        )
        + "\n"
        for k in output_kinds()
        if k not in MEDMASK_KINDS
    )


def register(add: AddCommand) -> None:
    """Add this module's subcommands to the parser (``add`` makes one subparser)."""
    s = add(
        "convert",
        "rewrite a file in format version 1 or 2 (compacting it), or export a label map",
        "Rewrite SRC as OUT; OUT's name says its format:\n"
        "  OUT.mska   an archive in format version --to (2 by default; 1 is readable by "
        "medmask 0.1.x).\n"
        "             Only live masks are copied, with their attributes: this also "
        "compacts an\n"
        "             archive (reclaims the space of deleted or replaced masks and "
        "superseded index\n"
        "             segments). A .msk source becomes a one-mask archive.\n"
        "  OUT.msk    a .msk source in version --to (an archive converts to .mska, not .msk).\n"
        + _exports()
        + "Where masks overlap in a label map the later mask wins, and that is reported.\n"
        "Any other name is refused before anything is written. OUT appears atomically.\n\n"
        "examples:\n  medmask convert old.mska -o new.mska            # version 2, compacted\n"
        "  medmask convert s0000.mska -o s0000_v1.mska --to 1\n"
        "  medmask convert s0000.mska -o s0000_for_0.2.mska --compat 0.2\n"
        "  medmask convert s0000.mska -o s0000_labels.nii.gz",
    )
    s.add_argument("src", metavar="SRC", help="a .mska or .msk")
    s.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="the file to write: " + ", ".join(get_format(k).suffixes[0] for k in output_kinds()),
    )
    s.add_argument(
        "--to",
        type=int,
        choices=[1, 2],
        default=None,
        help="format version of a .mska/.msk output (default 2)",
    )
    s.add_argument(
        "--compat",
        choices=compat_choices(),  # the compatibility table of medmask.format
        default=None,
        metavar="RELEASE",
        help="write what medmask RELEASE reads: 0.3 (format 2.1), 0.2 (format 2.0, without "
        "centroids and attributes) or 0.1 (version 1, the same as --to 1); default: the "
        "current format (2.2)",
    )
    s.add_argument(
        "--overlap",
        choices=["last", "first", "smaller"],
        default="last",
        help="label-map output: which mask keeps a voxel several masks claim (default: last)",
    )
    s.set_defaults(func=cmd_convert)
