"""``medmask unpack``: an archive (or ``.msk``) out to the format OUT's name says. The work
is :func:`medmask.conversions.from_archive`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import MaskValidationError
from ._common import EXIT_OK, AddCommand, UsageError, note, plural, print_lost, progress, say, warn


def cmd_unpack(args: argparse.Namespace) -> int:
    from ..conversions import from_archive
    from ..conversions.dispatch import _out_kind

    src = Path(args.archive)
    if args.labelmap and args.output:
        raise UsageError(
            "give either -o OUT or the deprecated --labelmap FILE, not both "
            "(-o X.nii.gz writes a label map)"
        )
    out = args.output or args.labelmap
    if not out:
        raise UsageError("give -o OUT: a folder, X.nii.gz (label map), X.seg.nrrd or X.dcm")
    if args.labelmap:
        note(args, "--labelmap FILE is deprecated; use -o FILE")
    try:
        kind = _out_kind(out)
    except MaskValidationError as exc:
        raise UsageError(str(exc)) from None
    if args.labelmap and kind != "nifti":
        raise UsageError(f"--labelmap writes a .nii.gz label map; {out} is not named like one")
    if not src.is_file():
        raise UsageError(f"{src}: no such file")
    if kind == "dicom" and not args.source:
        raise UsageError(f"{out}: a DICOM SEG needs --source DICOM_DIR (its image series)")
    if kind != "dicom" and (args.source or args.seg_type != "binary"):
        raise UsageError("--source and --seg-type apply to X.dcm outputs")
    if kind != "nifti" and (args.labels or args.overlap != "last"):
        raise UsageError("--labels and --overlap apply to X.nii.gz label maps")
    report = from_archive(
        src,
        out,
        labels=args.labels,
        overlap=args.overlap,
        source=args.source,
        labelmap_seg=args.seg_type == "labelmap",
        progress=progress(args, None, "unpacking"),
    )
    for name in report.emptied:
        warn(
            args,
            f"mask {name!r} lost all its {report.voxels.get(name, 0):,} voxels to overlapping "
            f"masks (rule --overlap {args.overlap}; try --overlap smaller, or -o DIR / "
            "X.seg.nrrd, which keep overlaps)",
        )
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
        return EXIT_OK
    say(args, f"wrote {out} ({kind}): {plural(len(report.masks), 'mask')}")
    if report.lost:
        note(
            args,
            f"{sum(report.lost.values()):,} voxels belonged to several masks; the label map "
            f"keeps one (rule --overlap {args.overlap}; -o DIR or X.seg.nrrd keep overlaps)",
        )
    print_lost(
        args, report.lost, f"voxels lost to overlaps (rule: {args.overlap} wins):", report.voxels
    )
    if not report.lost and kind == "nifti" and not args.quiet:
        print("no voxel belongs to two masks: the label map holds every mask exactly")
    for remark in report.notes:
        say(args, f"note: {remark}")
    if report.renamed and not args.quiet:
        print(f"{len(report.renamed)} names made safe for the file system:")
        for fname, name in list(report.renamed.items())[:20]:
            print(f"  {name!r} -> {fname}")
    return EXIT_OK


def register(add: AddCommand) -> None:
    """Add this module's subcommands to the parser (``add`` makes one subparser)."""
    s = add(
        "unpack",
        "export an archive (or .msk) to NIfTI, Slicer .seg.nrrd or DICOM SEG",
        "The format follows OUT's name:\n"
        "  DIR (or DIR/)   one <name>.nii.gz per mask (names made safe: nothing escapes DIR)\n"
        "  X.nii.gz/X.nii  one label map with TotalSegmentator's names extension, plus X.json;\n"
        "                  numbering from --labels (a subset or chosen numbers) else archive\n"
        "                  order; where masks overlap --overlap decides (default: the later\n"
        "                  mask wins); voxels lost per mask are reported, and a warning names\n"
        "                  every mask that loses all of them\n"
        "  X.seg.nrrd      a 3D Slicer segmentation (overlapping masks in layers)\n"
        "  X.dcm           a DICOM SEG on the series in --source DICOM_DIR (grid must match)\n"
        "\nexamples:\n"
        "  medmask unpack s0000.mska -o restored/\n"
        "  medmask unpack s0000.mska -o s0000_ml.nii.gz --overlap smaller\n"
        "  medmask unpack s0000.mska -o s0000.seg.nrrd\n"
        "  medmask unpack s0000.mska -o s0000_seg.dcm --source CT/",
    )
    s.add_argument("archive", metavar="ARCHIVE", help="the .mska (or .msk)")
    s.add_argument("-o", "--output", metavar="OUT", help="folder, X.nii.gz, X.seg.nrrd or X.dcm")
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
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=cmd_unpack)
