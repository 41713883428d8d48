"""``medmask unpack``: an archive (or ``.msk``) out to the format OUT's name says. The work
is :func:`medmask.conversions.from_archive`."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

from ..conversions import NeedsOptionError, from_archive, output_format
from ..errors import MaskValidationError
from ..io.formats import formats, get_format
from ._common import (
    EXIT_OK,
    AddCommand,
    UsageError,
    note,
    print_export,
    progress,
    target,
    warn_emptied,
)


def cmd_unpack(args: argparse.Namespace) -> int:
    if args.labelmap and args.output:
        raise UsageError(
            "give either -o OUT or the deprecated --labelmap FILE, not both "
            "(-o X.nii.gz writes a label map)"
        )
    if not (args.output or args.labelmap):
        raise UsageError(f"give -o OUT: {_outputs(', ')}")
    src, out = target(args, args.archive), target(args, args.output or args.labelmap)
    if args.labelmap:
        note(args, "--labelmap FILE is deprecated; use -o FILE")
    try:
        kind = output_format(out).kind
    except MaskValidationError as exc:
        raise UsageError(str(exc)) from None
    if args.labelmap and kind != "nifti":
        raise UsageError(f"--labelmap writes a .nii.gz label map; {out} is not named like one")
    if src.info() is None:
        raise UsageError(f"{src}: no such file")
    if args.source is not None and not Path(args.source).is_dir():  # a missing input: usage
        raise UsageError(f"--source {args.source}: no such folder (the DICOM image series)")
    try:
        report = from_archive(
            src,
            out,
            labels=args.labels,
            overlap=args.overlap,
            source=args.source,
            labelmap_seg=args.seg_type == "labelmap",
            force=args.force,
            progress=progress(args, None, "unpacking"),
        )
    except NeedsOptionError as exc:  # an option the output does not take, or needs
        raise UsageError(str(exc)) from None
    if args.json:
        warn_emptied(args, report, out)
        print(json.dumps(report.to_json(), indent=1))
        return EXIT_OK
    print_export(args, report, out, "label map" if kind == "nifti" else formats_title(kind))
    return EXIT_OK


def formats_title(kind: str) -> str:
    """What an export of ``kind`` is called in its report (``folder``, ``3D Slicer ...``)."""
    return "folder" if kind == "folder" else get_format(kind).title


def _outputs(sep: str = "\n") -> str:
    """What ``unpack`` writes, one entry per format of the format table that unpacks."""
    return sep.join(
        f"{f.output_name:<15} {f.unpack_help}" if sep == "\n" else f"{f.output_name} ({f.title})"
        for f in formats()
        if f.capabilities.unpack
    )


def register(add: AddCommand) -> None:
    """Add this module's subcommands to the parser (``add`` makes one subparser)."""
    s = add(
        "unpack",
        "export an archive (or .msk) to NIfTI, Slicer .seg.nrrd or DICOM SEG",
        "The format follows OUT's name:\n"
        + "".join(
            textwrap.fill(line, 88, initial_indent="  ", subsequent_indent=" " * 18) + "\n"
            for line in _outputs().splitlines()
        )
        + "Label maps: numbering from --labels (a subset or chosen numbers), else archive\n"
        "order; where masks overlap --overlap decides (default: the later mask wins); voxels\n"
        "lost per mask are reported, and a warning names every mask that loses all of them.\n"
        "\nexamples:\n"
        "  medmask unpack s0000.mska -o restored/\n"
        "  medmask unpack s0000.mska -o s0000_ml.nii.gz --overlap smaller\n"
        "  medmask unpack s0000.mska -o s0000.seg.nrrd\n"
        "  medmask unpack s0000.mska -o s0000_seg.dcm --source CT/",
    )
    s.add_argument("archive", metavar="ARCHIVE", help="the .mska (or .msk)")
    s.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help=", ".join(f.output_name for f in formats() if f.capabilities.unpack),
    )
    s.add_argument(
        "--labelmap", metavar="FILE", help="deprecated: same as -o FILE.nii.gz (not with -o)"
    )
    s.add_argument(
        "--labels",
        metavar="TABLE",
        help="label-map numbering: any label table (TotalSegmentator class map, dataset.json, ...)",
    )
    s.add_argument(
        "--overlap",
        choices=["last", "first", "smaller"],
        default="last",
        help="label maps: which mask keeps a voxel several masks claim (default: last)",
    )
    s.add_argument("--source", metavar="DICOM_DIR", help="X.dcm: the referenced image series")
    s.add_argument(
        "--seg-type",
        choices=["binary", "labelmap"],
        default="binary",
        help="X.dcm: BINARY (default, overlaps allowed) or LABELMAP (no overlaps)",
    )
    s.add_argument(
        "--force",
        action="store_true",
        help="-o DIR: write into a folder that holds other files (refused by default: the "
        "masks of two cases would mix)",
    )
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=cmd_unpack)
