"""``medmask pack-tree``: every case of a dataset, in parallel processes or on Dask, resumable.

Parsing and printing only; the work is :func:`medmask.packing.pack_tree`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..io.names import format_from_name
from ..packing import case_name, dask_client, find_cases, pack_tree
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
    if not root.is_url and not Path(root.path).is_dir():
        raise UsageError(f"{root}: not a folder")
    if format_from_name(dest.path.rstrip("/")) in ("mska", "msk"):
        raise UsageError(
            f"{dest}: pack-tree writes one archive per case into a folder: give -o DEST/"
        )
    check_parallel_args(args, "ROOT")
    cases = find_cases(root)
    if not cases:
        raise UsageError(f"{root}: no folder with .nii.gz masks found")
    kwargs = dict(
        codec=codec_arg(args),
        resample=args.resample,
        allow_float=args.allow_float,
        force=args.force,
        progress=progress(args, len(cases), "cases", unit="case"),
    )
    if args.dask is None:
        report = pack_tree(root, dest, workers=args.workers, **kwargs)
    else:
        scheduler = None if args.dask == "local" else args.dask
        with dask_client(scheduler, workers=args.workers) as client:
            report = pack_tree(root, dest, client=client, **kwargs)
    for r in report.packed:
        for remark in r.notes:
            note(args, remark)
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
        "pack every case folder of a dataset, in parallel or on Dask, resumable",
        "Find every folder under ROOT that holds .nii.gz masks (a case; in TotalSegmentator's "
        "layout the\nCASE/segmentations folder is the case and CASE/ct.nii.gz is not a mask) and "
        "pack each into\nDEST/<case>.mska, in parallel processes, or as Dask tasks with --dask. "
        "A ROOT that directly holds\n.nii.gz files is one case. ROOT and DEST may be URLs "
        "(s3://bucket/raw/ -> s3://bucket/packed/).\nResumable: a case whose archive exists, is "
        "newer than its files, verifies and holds the same\nnames is skipped. A case that fails is "
        "reported and the others go on (exit status 1).\nArchives appear whole: an interrupted "
        "case leaves no partial archive.\n\nexamples:\n"
        "  medmask pack-tree Totalsegmentator_dataset/ -o packed/ --workers 8\n"
        "  medmask pack-tree data/ -o packed/ --dask                      # a LocalCluster\n"
        "  medmask pack-tree s3://b/raw/ -o s3://b/packed/ --dask tcp://scheduler:8786",
    )
    s.add_argument("root", metavar="ROOT", help="dataset root (or a single case folder), or a URL")
    s.add_argument(
        "-o", "--output", required=True, metavar="DEST", help="folder (or URL) for the archives"
    )
    add_parallel_options(s, "run each case", "ROOT and DEST")
    s.add_argument("--force", action="store_true", help="repack cases already packed")
    s.add_argument("--codec", choices=["bitzstd", "zstd"], default="bitzstd", help=CODEC_HELP)
    s.add_argument("--resample", action="store_true", help="as for 'pack'")
    s.add_argument("--allow-float", action="store_true", help="as for 'pack'")
    s.set_defaults(func=cmd_pack_tree)
