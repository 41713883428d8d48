"""``medmask pack``: one source (a folder of NIfTI masks, a label map) into one archive."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from ._common import (
    CODEC_HELP,
    EXIT_OK,
    AddCommand,
    UsageError,
    codec_arg,
    progress,
    say,
)


def cmd_pack(args: argparse.Namespace) -> int:
    from .. import nifti

    src, out = Path(args.src), Path(args.output)
    t = time.perf_counter()
    if src.is_dir():
        if args.labels:
            raise UsageError("--labels is for a multi-label file, but SRC is a folder")
        if out.name.endswith(".msk"):
            raise UsageError("a folder of masks packs into an archive: give -o OUT.mska")
        files = nifti.nifti_files(src)
        if not files:
            raise UsageError(f"{src}: no .nii.gz / .nii files in this folder")
        out.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", nifti.MaskResampledWarning)
            names = nifti.folder_to_archive(
                src,
                out,
                codec=codec_arg(args),
                resample=args.resample,
                allow_float=args.allow_float,
                progress=progress(args, len(files), "packing"),
            )
        for w in caught:
            if issubclass(w.category, nifti.MaskResampledWarning):
                print(f"medmask pack: note: {w.message}", file=sys.stderr)
        before = sum(f.stat().st_size for f in files)
        after = out.stat().st_size
        say(
            args,
            f"packed {len(names)} masks from {src} into {out}: {before:,} -> {after:,} bytes "
            f"({before / max(after, 1):.1f}x smaller) in {time.perf_counter() - t:.2f} s",
        )
        return EXIT_OK
    if not src.is_file():
        raise UsageError(f"{src}: no such file or folder")
    if not args.labels:
        raise UsageError(
            f"{src} is a file: give its label table with --labels TABLE "
            "(JSON {name: label}, a JSON list of names, or text), or pack its folder"
        )
    if args.resample:
        raise UsageError("--resample applies to folders of masks (a label map has one grid)")
    table = nifti.read_label_table(args.labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.name.endswith(".msk"):
        nifti.labelmap_to_msk(src, table, out, codec=codec_arg(args), allow_float=args.allow_float)
        say(args, f"wrote {out}: one label map, {len(table)} labels, {out.stat().st_size:,} bytes")
    else:
        counts = nifti.labelmap_to_archive(
            src, table, out, codec=codec_arg(args), allow_float=args.allow_float
        )
        empty = [n for n, c in counts.items() if c == 0]
        say(
            args,
            f"wrote {out}: {len(counts)} masks ({len(empty)} empty), "
            f"{src.stat().st_size:,} -> {out.stat().st_size:,} bytes",
        )
    return EXIT_OK


def register(add: AddCommand) -> None:
    """Add this module's subcommands to the parser (``add`` makes one subparser)."""
    s = add(
        "pack",
        "pack a folder of NIfTI masks, or a label map, into an archive",
        "Pack a folder of binary NIfTI masks (one file per organ, as TotalSegmentator writes "
        "them; mask names\nfrom file names) into OUT.mska, or a multi-label NIfTI plus --labels "
        "TABLE into OUT.mska (one\nmask per label) or OUT.msk (one label map). All masks must be "
        "on one grid (tolerance 1e-3 mm);\nthe archive appears atomically: on any error nothing "
        "is written.\n\nexamples:\n"
        "  medmask pack s0000/segmentations -o s0000.mska\n"
        "  medmask pack labels.nii.gz --labels classes.json -o case.mska",
    )
    s.add_argument("src", metavar="SRC", help="folder of .nii.gz masks, or a multi-label .nii.gz")
    s.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="the .mska (or .msk) to write"
    )
    s.add_argument(
        "--labels",
        metavar="TABLE",
        help="label table of a multi-label file: JSON {name: label}, JSON {label: name}, "
        "a JSON list of names (label = position + 1), or 'label name' text lines",
    )
    s.add_argument("--codec", choices=["bitzstd", "zstd"], default="bitzstd", help=CODEC_HELP)
    s.add_argument(
        "--resample",
        action="store_true",
        help="resample masks on another grid onto the first file's grid (nearest neighbour) "
        "instead of failing",
    )
    s.add_argument(
        "--allow-float",
        action="store_true",
        help="accept float files whose values are whole numbers (refused by default)",
    )
    s.set_defaults(func=cmd_pack)
