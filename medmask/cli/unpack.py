"""``medmask unpack``: an archive (or ``.msk``) back to NIfTI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..storage import MaskArchive
from ._common import (
    EXIT_OK,
    AddCommand,
    UsageError,
    is_archive,
    progress,
    say,
)


def cmd_unpack(args: argparse.Namespace) -> int:
    from .. import nifti
    from ..segmask import SegmentationMask

    src = Path(args.archive)
    if not src.is_file():
        raise UsageError(f"{src}: no such file")
    if args.labelmap:
        if not is_archive(src):
            raise UsageError("--labelmap exports an archive (.mska); a .msk unpacks with -o DIR")
        lm = Path(args.labelmap)
        lm.parent.mkdir(parents=True, exist_ok=True)
        table, overlap = nifti.archive_to_labelmap(src, lm)
        stem = lm.name.removesuffix(".gz").removesuffix(".nii")
        labels_json = lm.with_name(f"{stem}.labels.json")
        labels_json.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
        say(args, f"wrote {lm} ({len(table)} labels) and its label table {labels_json}")
        if overlap:
            print(
                f"medmask unpack: note: {overlap:,} voxels belonged to several masks; in the "
                "label map the later mask wins (use -o DIR for one file per mask, lossless)",
                file=sys.stderr,
            )
        elif not args.quiet:
            print("no voxel belongs to two masks: the label map holds every mask exactly")
        return EXIT_OK
    if not args.output:
        raise UsageError("give -o DIR (one .nii.gz per mask) or --labelmap FILE")
    if not is_archive(src):
        seg = SegmentationMask.load(src)
        out_dir = Path(args.output)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = src.name.removesuffix(".msk")
        target = nifti.segmask_to_nifti(seg, out_dir / f"{nifti.safe_filename(stem)}.nii.gz")
        say(args, f"wrote {target} ({len(seg.mapping)} labels)")
        return EXIT_OK
    with MaskArchive(src) as ar:
        n = len(ar)
    written = nifti.archive_to_folder(src, args.output, progress=progress(args, n, "unpacking"))
    renamed = {name: p.name for name, p in written.items() if p.name != f"{name}.nii.gz"}
    say(
        args,
        f"wrote {len(written)} files to {args.output}"
        + (f" ({len(renamed)} names made safe for the file system)" if renamed else ""),
    )
    if renamed and not args.quiet:
        for name, fname in list(renamed.items())[:20]:
            print(f"  {name!r} -> {fname}")
    return EXIT_OK


def register(add: AddCommand) -> None:
    """Add this module's subcommands to the parser (``add`` makes one subparser)."""
    s = add(
        "unpack",
        "export an archive (or .msk) to .nii.gz files",
        "Write one <name>.nii.gz per mask into DIR, with the archive's affine (sform and qform), "
        "or one\nmulti-label file with --labelmap (plus FILE.labels.json; voxels claimed by "
        "several masks are\ncounted and reported). Mask names are never used as paths: "
        "'/', '..', NUL and other odd\ncharacters become '_', and nothing is written outside DIR."
        "\n\nexamples:\n"
        "  medmask unpack s0000.mska -o restored/\n"
        "  medmask unpack s0000.mska --labelmap s0000_labels.nii.gz",
    )
    s.add_argument("archive", metavar="ARCHIVE", help="the .mska (or .msk)")
    s.add_argument("-o", "--output", metavar="DIR", help="folder to write into")
    s.add_argument("--labelmap", metavar="FILE", help="write one multi-label .nii.gz instead")
    s.set_defaults(func=cmd_unpack)
