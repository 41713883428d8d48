"""``medmask pack-tree``: every case of a dataset, in parallel processes or on Dask, resumable.

Parsing and printing only; the work is :func:`medmask.packing.pack_tree`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import MaskValidationError
from ..io.names import format_from_name
from ..packing import case_name, dask_client, discover, find_cases, label_table, pack_tree
from ._common import (
    CODEC_HELP,
    EXIT_FAILED,
    EXIT_OK,
    AddCommand,
    UsageError,
    add_parallel_options,
    check_parallel_args,
    codec_arg,
    err,
    note,
    progress,
    say,
    target,
)

__all__ = ["find_cases", "case_name", "cmd_pack_tree", "register"]


def cmd_pack_tree(args: argparse.Namespace) -> int:
    root, dest = target(args, args.root), target(args, args.output)
    if not root.is_url and not Path(root.path).exists():
        raise UsageError(f"{root}: no such folder")
    if format_from_name(dest.path.rstrip("/")) in ("mska", "msk"):
        raise UsageError(
            f"{dest}: pack-tree writes one archive per case into a folder: give -o DEST/"
        )
    check_parallel_args(args, "ROOT")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    if args.labels and args.scheme:
        raise UsageError("give --labels TABLE or --scheme NAME, not both")
    if args.threshold is not None and not 0 < args.threshold <= 1:
        raise UsageError(f"--threshold must be in (0, 1], got {args.threshold}")
    try:
        table = label_table(args.labels, args.scheme)
    except MaskValidationError as exc:  # an unknown scheme, an unreadable table
        raise UsageError(str(exc)) from None
    label_maps = table is not None
    found = discover(root, label_maps=label_maps, name_by=args.name_by)
    if not found.cases:
        raise UsageError(
            f"{root}: no case found (folders of .nii.gz masks, DICOM SEGs, .seg.nrrd files"
            + (", NIfTI label maps" if label_maps else "; label maps need --labels or --scheme")
            + ")"
        )
    kwargs = dict(
        codec=codec_arg(args),
        resample=args.resample,
        allow_float=args.allow_float,
        threshold=args.threshold,
        labels=table,
        name_by=args.name_by,
        threads=args.threads,
        force=args.force,
        progress=progress(args, len(found.cases), "cases", unit="case"),
        found=found,
    )
    if args.dask is None:
        report = pack_tree(root, dest, workers=args.workers, **kwargs)
    else:
        scheduler = None if args.dask == "local" else args.dask
        with dask_client(scheduler, workers=args.workers) as client:
            report = pack_tree(root, dest, client=client, **kwargs)
    for r in report.packed:
        for remark in r.notes:
            note(args, f"{r.case}: {remark}")
    for r in sorted(report.failed, key=lambda r: r.case):
        if args.debug and r.traceback:
            print(r.traceback, end="", file=sys.stderr)
        err(args, r.error or f"{r.case}: failed")
    say(args, report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def register(add: AddCommand) -> None:
    """Add this module's subcommands to the parser (``add`` makes one subparser)."""
    s = add(
        "pack-tree",
        "pack every case of a collection (NIfTI, DICOM SEG, .seg.nrrd), resumable",
        "Find every case under ROOT, of every kind 'pack' reads, mixed at any depth, and pack each "
        "into\nDEST/<name>.mska, in parallel processes, or as Dask tasks with --dask:\n"
        "  - a folder holding .nii.gz masks (in TotalSegmentator's layout CASE/segmentations is "
        "the case\n    and CASE/ct.nii.gz is not a mask); with --labels or --scheme, every "
        "NIfTI file is a\n    numbered label map instead;\n"
        "  - a DICOM SEG series (told by its SOP class, whatever the file names; its instances "
        "together);\n    the images of its referenced series, when in the tree, give it their "
        "grid; other DICOM\n    files are skipped and counted;\n"
        "  - a 3D Slicer .seg.nrrd.\n"
        "Names: a SEG is named after the SeriesInstanceUID of the series it references (or "
        "--name-by\nATTRIBUTE), other cases after their path below ROOT; two SEGs of one series "
        "both get\n__<their own SeriesInstanceUID>. ROOT and DEST may be URLs (s3://bucket/raw/ -> "
        "s3://bucket/packed/).\nResumable: a case whose archive exists, is newer than its files, "
        "verifies (and, for a NIfTI\nfolder, holds the same names) is skipped. A case that fails "
        "is reported with the reason and\nthe others go on (exit status 1). Archives appear "
        "whole: an interrupted case leaves none.\n\nexamples:\n"
        "  medmask pack-tree Totalsegmentator_dataset/ -o packed/ --workers 8\n"
        "  medmask pack-tree idc_totalsegmentator/ -o packed/          # DICOM SEGs at any depth\n"
        "  medmask pack-tree labelsTr/ -o packed/ --labels dataset.json   # nnU-Net label maps\n"
        "  medmask pack-tree data/ -o packed/ --dask                      # a LocalCluster\n"
        "  medmask pack-tree s3://b/raw/ -o s3://b/packed/ --dask tcp://scheduler:8786",
    )
    s.add_argument("root", metavar="ROOT", help="dataset root (or a single case folder), or a URL")
    s.add_argument(
        "-o", "--output", required=True, metavar="DEST", help="folder (or URL) for the archives"
    )
    add_parallel_options(
        s,
        "run each case as a Dask task: on a LocalCluster of --workers processes, or on the "
        "cluster at SCHEDULER (tcp://host:8786; ROOT and DEST must then be shared paths or URLs)",
    )
    s.add_argument("--force", action="store_true", help="repack cases already packed")
    s.add_argument("--codec", choices=["bitzstd", "zstd"], default="bitzstd", help=CODEC_HELP)
    s.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="threads of each case (default: the CPUs shared between the local workers; 1 on Dask)",
    )
    s.add_argument(
        "--labels",
        metavar="TABLE",
        help="NIfTI files are label maps numbered by this table (formats as for 'pack')",
    )
    s.add_argument(
        "--scheme",
        metavar="NAME",
        help="NIfTI files are label maps numbered by this built-in scheme (totalseg, btcv, "
        "amos, ...)",
    )
    s.add_argument(
        "--name-by",
        metavar="ATTRIBUTE",
        help="DICOM SEGs: name each archive after this attribute of the SEG (PatientID, "
        "StudyInstanceUID, ...) instead of the referenced SeriesInstanceUID",
    )
    s.add_argument("--threshold", type=float, metavar="T", help="as for 'pack'")
    s.add_argument("--resample", action="store_true", help="as for 'pack'")
    s.add_argument("--allow-float", action="store_true", help="as for 'pack'")
    s.set_defaults(func=cmd_pack_tree)
