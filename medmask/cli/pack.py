"""``medmask pack``: one source (NIfTI folder or case, NIfTI label map, Slicer .seg.nrrd,
DICOM SEG, or any format of the format table that packs; recognised by content) into one
archive. The work is :func:`medmask.conversions.to_archive`."""

from __future__ import annotations

import argparse
import json
import textwrap
import time
from pathlib import Path

from ..conversions import NeedsOptionError, check_output, to_archive
from ..conversions.common import ConversionReport
from ..conversions.dispatch import PACK_OUTPUTS
from ..conversions.pipeline import case_threads
from ..errors import MaskValidationError
from ..io.formats import formats
from ..io.target import Target
from ..packing import label_table
from ._common import (
    CODEC_HELP,
    EXIT_OK,
    AddCommand,
    UsageError,
    codec_arg,
    note,
    plural,
    progress,
    say,
    target,
)


def _size(t: Target) -> int:
    if not t.is_url and Path(t.path).is_dir():
        return sum(f.stat().st_size for f in Path(t.path).rglob("*") if f.is_file())
    return int((t.info() or {}).get("size") or 0)


def cmd_pack(args: argparse.Namespace) -> int:
    src, out = target(args, args.src), target(args, args.output)
    try:  # the output is checked before any work
        check_output(out, PACK_OUTPUTS, what="archive")
    except MaskValidationError as exc:
        raise UsageError(str(exc)) from None
    if not src.exists():
        raise UsageError(f"{src}: no such file or folder")
    if args.reference is not None and not Path(args.reference).exists():
        raise UsageError(f"--reference {args.reference}: no such folder (the DICOM image series)")
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise UsageError(f"--threshold must be in (0, 1], got {args.threshold}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    if args.labels and args.scheme:
        raise UsageError("give --labels TABLE or --scheme NAME, not both")
    try:
        labels = label_table(None, args.scheme) if args.scheme else args.labels
    except MaskValidationError as exc:  # an unknown scheme
        raise UsageError(str(exc)) from None
    t = time.perf_counter()
    try:
        with case_threads(args.threads):
            report = _pack(args, src, out, labels)
    except NeedsOptionError as exc:  # a missing or misplaced option: bad usage
        raise UsageError(str(exc)) from None
    return _print_report(args, src, out, report, t)


def _pack(args: argparse.Namespace, src: Target, out: Target, labels: object) -> ConversionReport:
    return to_archive(
        src,
        out,
        labels=labels,  # type: ignore[arg-type]
        drop_unlisted=args.drop_unlisted,
        threshold=args.threshold,
        reference=args.reference,
        codec=codec_arg(args),
        resample=args.resample,
        allow_float=args.allow_float,
        binarize=args.binarize,
        progress=progress(args, None, "packing"),
    )


def _print_report(
    args: argparse.Namespace, src: Target, out: Target, report: ConversionReport, t: float
) -> int:
    for remark in report.notes:
        note(args, remark)
    for new, old in report.renamed.items():
        note(args, f"segment {old!r} stored as {new!r} (names must be unique)")
    if args.json:
        print(json.dumps(report.to_json(), indent=1))
        return EXIT_OK
    # the bytes of what was packed (a case folder's image is not), not the whole source
    before = report.source_bytes if report.source_bytes is not None else _size(src)
    after = _size(out)
    empty = [n for n, c in report.voxels.items() if c == 0]
    say(
        args,
        f"packed {plural(len(report.masks), 'mask')} ({report.kind}"
        + (f", {len(empty)} empty" if empty else "")
        + f") from {src} into {out}: {before:,} -> {after:,} bytes "
        f"({before / max(after, 1):.1f}x smaller) in {time.perf_counter() - t:.2f} s",
    )
    return EXIT_OK


def _sources() -> str:
    """One entry per format ``pack`` reads, from the format table."""
    return "".join(
        textwrap.fill(f.pack_help, 88, initial_indent="  ", subsequent_indent="    ") + "\n"
        for f in formats()
        if f.capabilities.pack
    )


def register(add: AddCommand) -> None:
    """Add this module's subcommands to the parser (``add`` makes one subparser)."""
    s = add(
        "pack",
        "pack masks (NIfTI, Slicer .seg.nrrd, DICOM SEG) into an archive",
        "Pack SRC into OUT.mska; SRC is recognised by content:\n"
        + _sources()
        + "Colours and terminology travel as mask attributes. All masks share one grid (1e-3 mm);\n"
        "the archive appears atomically: on any error nothing is written.\n\nexamples:\n"
        "  medmask pack s0000/ -o s0000.mska\n"
        "  medmask pack s0000_ml.nii.gz -o s0000.mska          # TotalSegmentator --ml output\n"
        "  medmask pack labels.nii.gz --labels itksnap.txt -o case.mska\n"
        "  medmask pack Segmentation.seg.nrrd -o case.mska\n"
        "  medmask pack seg.dcm --reference CT/ -o case.mska",
    )
    s.add_argument("src", metavar="SRC", help="folder, .nii.gz, .seg.nrrd or DICOM SEG")
    s.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="the .mska (or .msk) to write"
    )
    s.add_argument(
        "--labels",
        metavar="TABLE",
        help="label table of a label map (overrides the file's names): JSON {name: label} or "
        "{label: name}, a JSON list of names, nnU-Net dataset.json, ITK-SNAP label file, or "
        "'label name' text lines",
    )
    s.add_argument(
        "--scheme",
        metavar="NAME",
        help="number a label map by this built-in scheme (totalseg, btcv, amos, abdomenatlas, "
        "flare, msd_task..., see docs/datasets.md) instead of --labels",
    )
    s.add_argument(
        "--drop-unlisted",
        action="store_true",
        help="drop labels the table does not name (refused by default: their voxels would be lost)",
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
    s.add_argument(
        "--binarize",
        action="store_true",
        help="NIfTI masks: any non-zero voxel is part of the mask (e.g. 0/255 masks)",
    )
    s.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="DICOM SEG: read a truly FRACTIONAL SEG, a voxel is in a segment when value >= T x max",
    )
    s.add_argument(
        "--reference",
        metavar="DICOM_DIR",
        help="DICOM SEG: the source image series; masks get its full grid",
    )
    s.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="threads reading and compressing masks (default: every CPU)",
    )
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=cmd_pack)
