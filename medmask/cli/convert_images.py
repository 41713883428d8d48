"""``medmask convert-images``: a folder of ``.nii.gz`` images -> ``.b2nd`` (blosc2, nnU-Net's
chunking) or uncompressed ``.nii``, so that patch training reads them by window. The work is
:func:`medmask.patches.convert.convert_images`; the images stay standard files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..patches.convert import IMAGE_LAYOUTS, convert_images
from ._common import EXIT_OK, AddCommand, UsageError, plural, progress, say


def _patch(values: list[int]) -> tuple[int, int, int]:
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or min(values) < 1:
        raise UsageError(f"--patch takes one size or three (z y x), all >= 1; got {values}")
    return tuple(values)  # type: ignore[return-value]


def _dtype(name: str | None) -> np.dtype | None:
    if name is None:
        return None
    try:
        return np.dtype(name)
    except TypeError:
        raise UsageError(f"--dtype: not a NumPy dtype: {name!r}") from None


def cmd_convert_images(args: argparse.Namespace) -> int:
    if not Path(args.images).exists():
        raise UsageError(f"{args.images}: no such folder or file")
    if Path(args.output).is_file():
        raise UsageError(f"{args.output}: is a file; convert-images writes into a folder")
    done = convert_images(
        args.images,
        args.output,
        to=args.to,
        pattern=args.pattern,
        patch=_patch(args.patch),
        dtype=_dtype(args.dtype),
        overwrite=args.overwrite,
        progress=progress(args, None, "images", unit="image"),
    )
    made = [c for c in done if not c.skipped]
    if args.json:
        rows = [
            {"src": str(c.src), "dst": str(c.dst), "bytes": c.nbytes, "skipped": c.skipped}
            for c in done
        ]
        print(json.dumps(rows, indent=1))
        return EXIT_OK
    src_bytes = sum(c.src.stat().st_size for c in made)
    out_bytes = sum(c.nbytes for c in made)
    say(
        args,
        f"wrote {plural(len(made), 'image')} to {args.output} as {IMAGE_LAYOUTS[args.to]} "
        f"({src_bytes:,} B in, {out_bytes:,} B out)"
        + (f"; {len(done) - len(made)} already converted" if len(made) < len(done) else ""),
    )
    return EXIT_OK


def register(add: AddCommand) -> None:
    """Add this module's subcommands to the parser (``add`` makes one subparser)."""
    s = add(
        "convert-images",
        "convert .nii.gz images to .b2nd or .nii, read by window in patch training",
        "A .nii.gz image cannot be read by window: a patch loader inflates the whole image\n"
        "for every patch. Convert the images once into a layout read by window; the\n"
        "relative paths are kept (SRC/case1/ct.nii.gz -> DIR/case1/ct.b2nd), outputs newer\n"
        "than their image are kept (a rerun resumes).\n\n"
        "  --to nii    the same NIfTI, uncompressed (byte for byte; memory-mapped by nibabel)\n"
        "  --to b2nd   blosc2 .b2nd (C, z, y, x), LZ4HC, chunks chosen for --patch as nnU-Net\n"
        "              v2 chooses them; the affine kept in its metadata\n\nexamples:\n"
        "  medmask convert-images imagesTr/ -o images_b2nd/ --to b2nd --patch 128\n"
        "  medmask convert-images Totalsegmentator/ -o ct/ --to nii --pattern '*/ct.nii.gz'",
    )
    s.add_argument("images", metavar="SRC", help="folder of images (or one image)")
    s.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    s.add_argument("--to", required=True, choices=sorted(IMAGE_LAYOUTS), help="output layout")
    s.add_argument(
        "--pattern",
        default="*.nii.gz",
        help="which files under SRC (glob; default '*.nii.gz'; '**/*.nii.gz': any depth)",
    )
    s.add_argument(
        "--patch",
        type=int,
        nargs="+",
        default=[128],
        metavar="N",
        help="training patch, one size or z y x (b2nd chunking; default 128)",
    )
    s.add_argument(
        "--dtype", help="b2nd dtype, e.g. float32 (default: the image's own, e.g. int16)"
    )
    s.add_argument("--overwrite", action="store_true", help="convert images already converted")
    s.add_argument("--json", action="store_true", help="print what was written as JSON")
    s.set_defaults(func=cmd_convert_images)
