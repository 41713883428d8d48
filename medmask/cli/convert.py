"""``medmask convert``: rewrite a file in another format version (and compact it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..storage import MaskArchive
from ._common import (
    EXIT_OK,
    AddCommand,
    UsageError,
    is_archive,
    progress,
    require_file,
    say,
)


def cmd_convert(args: argparse.Namespace) -> int:
    from ..segmask import SegmentationMask

    src, out = Path(args.src), Path(args.output)
    require_file(src)
    codec = "zstd" if args.to == 1 else "bitzstd"
    if out.exists() and src.resolve() == out.resolve():
        raise UsageError("convert writes a new file: give an -o different from SRC")
    out.parent.mkdir(parents=True, exist_ok=True)
    if is_archive(src):
        with MaskArchive(src) as ar, MaskArchive(out, "w", codec=codec, space=ar.space) as dst:
            for name in progress(args, len(ar), "converting")(ar.all_names()):
                dst.add_segmask(ar[name], name)
            n = len(ar)
    else:
        SegmentationMask.load(src).save(out, codec=codec)
        n = 1
    say(
        args,
        f"wrote {out} (version {args.to}, {n} masks): "
        f"{src.stat().st_size:,} -> {out.stat().st_size:,} bytes",
    )
    return EXIT_OK


def register(add: AddCommand) -> None:
    """Add this module's subcommands to the parser (``add`` makes one subparser)."""
    s = add(
        "convert",
        "rewrite a file in format version 1 or 2",
        "Rewrite SRC as OUT in the chosen format version: 1 is readable by medmask 0.1.x, 2 is "
        "smaller\nand faster. Also compacts a version-2 archive. OUT appears atomically.\n\n"
        "example:\n  medmask convert old.mska -o new.mska --to 2",
    )
    s.add_argument("src", metavar="SRC", help="a .mska or .msk")
    s.add_argument("-o", "--output", required=True, metavar="OUT", help="the file to write")
    s.add_argument("--to", type=int, choices=[1, 2], default=2, help="target version (default 2)")
    s.set_defaults(func=cmd_convert)
