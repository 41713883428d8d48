"""``medmask unpack-tree``: a folder of archives as an nnU-Net raw dataset of label maps.
The work is :func:`medmask.conversions.from_archives` (the format table's ``tree`` formats:
nnU-Net's raw layout)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..conversions import NeedsOptionError, from_archives
from ..io.formats import formats
from ._common import EXIT_OK, AddCommand, UsageError, print_lost, progress, say, warn


def cmd_unpack_tree(args: argparse.Namespace) -> int:
    if not Path(args.packed).is_dir():
        raise UsageError(f"{args.packed}: not a folder of archives")
    if Path(args.output).is_file():
        raise UsageError(f"{args.output}: is a file; unpack-tree writes a dataset folder")
    try:
        report = from_archives(
            args.packed,
            args.output,
            kind=args.format,
            labels=args.labels,
            overlap=args.overlap,
            missing_empty=args.missing_empty,
            progress=progress(args, None, "cases", unit="case"),
        )
    except NeedsOptionError as exc:
        raise UsageError(str(exc)) from None
    for name in report.emptied:
        warn(args, f"{name} lost all its voxels to overlaps")
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
        return EXIT_OK
    say(
        args,
        f"wrote {len(report.masks)} label maps to {Path(args.output) / 'labelsTr'} and "
        f"{Path(args.output) / 'dataset.json'}",
    )
    print_lost(
        args,
        report.lost,
        f"voxels lost to overlaps (rule: {args.overlap} wins), summed over cases:",
        None,
    )
    return EXIT_OK


def register(add: AddCommand) -> None:
    """Add this module's subcommands to the parser (``add`` makes one subparser)."""
    s = add(
        "unpack-tree",
        "export a folder of archives as an nnU-Net dataset of label maps",
        "Write DIR/labelsTr/<case>.nii.gz (one label map per archive under PACKED) and\n"
        "DIR/dataset.json (labels with background 0), the layout of nnU-Net's raw datasets.\n"
        "--labels TABLE picks and numbers the masks (e.g. a subset of TotalSegmentator's\n"
        "classes); without it every archive must hold the same names.\n\nexamples:\n"
        "  medmask unpack-tree packed/ -o Dataset101_Abdomen --labels organs.json",
    )
    s.add_argument("packed", metavar="PACKED", help="folder of .mska archives")
    s.add_argument("-o", "--output", required=True, metavar="DIR", help="the dataset folder")
    trees = [f.kind for f in formats() if f.capabilities.tree]
    s.add_argument(
        "--format",
        choices=trees,
        default=trees[0],
        help=f"the dataset layout (default {trees[0]}: "
        f"{next(f.unpack_help for f in formats() if f.kind == trees[0])})",
    )
    s.add_argument("--labels", metavar="TABLE", help="label table: names and their numbers")
    s.add_argument(
        "--overlap", choices=["last", "first", "smaller"], default="last", help="as for unpack"
    )
    s.add_argument(
        "--missing-empty",
        action="store_true",
        help="a table name absent from an archive is an empty label (refused by default)",
    )
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=cmd_unpack_tree)
