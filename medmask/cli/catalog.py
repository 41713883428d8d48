"""``medmask catalog``: one Parquet row per mask of every archive (a catalogue), built in
parallel processes or on Dask, updated in place. The work is :class:`medmask.Catalog`."""

from __future__ import annotations

import argparse
import warnings

from ..errors import MaskValidationError
from ..io.names import expect_name
from ._common import (
    AddCommand,
    UsageError,
    add_parallel_options,
    check_parallel_args,
    note,
    plural,
    progress,
    report_failed,
    say,
    storage_options,
    target,
)
from ._coverage import SCHEME_HELP, print_coverage, scheme_arg

__all__ = ["cmd_catalog", "register"]


def _check_args(args: argparse.Namespace) -> None:
    try:
        expect_name(args.output, "parquet", what="catalogue (-o)")
    except MaskValidationError as exc:
        raise UsageError(str(exc)) from None
    check_parallel_args(args, "the paths")


def _run(args: argparse.Namespace, client: object):
    from ..catalog import Catalog
    from ..stats import find_mask_files

    so = storage_options(args)
    try:
        total = len(find_mask_files(args.paths, storage_options=so))
    except FileNotFoundError as exc:  # a missing input is bad usage
        raise UsageError(str(exc)) from None
    if not total:
        raise UsageError(f"no .mska / .msk files in {' '.join(args.paths)}")
    kw = dict(
        workers=args.workers,
        client=client,
        progress=progress(args, total, "catalog", unit="file"),
        on_error="skip",
    )
    out = target(args, args.output)
    if args.update and out.exists():
        return Catalog.open(out, storage_options=so).update(args.paths, **kw)
    if args.update:
        note(args, f"{args.output} does not exist yet: building it")
    return Catalog.build(args.paths, storage_options=so, **kw)


def cmd_catalog(args: argparse.Namespace) -> int:
    _check_args(args)
    scheme = scheme_arg(args.scheme) if args.scheme else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # failures are reported below
        if args.dask is None:
            cat = _run(args, None)
        else:
            from ..packing import dask_client

            with dask_client(
                None if args.dask == "local" else args.dask, workers=args.workers
            ) as c:
                cat = _run(args, c)
    report = cat.report
    cat.write(args.output, storage_options=storage_options(args))
    done = (
        f"wrote {args.output}: {plural(len(cat), 'mask')} of {plural(len(report.files), 'archive')}"
    )
    if args.update:
        done += (
            f" ({len(report.read)} read, {len(report.kept)} unchanged, "
            f"{len(report.removed)} no longer found)"
        )
    say(args, done)
    if scheme is not None:
        print_coverage(args, cat.df, scheme)
    return report_failed(args, (msg for _path, msg in report.failed))


def register(add: AddCommand) -> None:
    """Add ``catalog`` to the parser (``add`` makes one subparser)."""
    s = add(
        "catalog",
        "one Parquet row per mask of every archive: a catalogue loaders start from",
        "Write a catalogue: one Parquet file with a row per mask of every .mska/.msk under the\n"
        "PATHS (files, folders, s3:// prefixes): case, name, label, voxels, box, centroid,\n"
        "attributes, each blob's byte range, each archive's size, commit generation, index\n"
        "checksum and attributes (source identifiers, the annotated list of partial labels).\n"
        "It is 'medmask stats' written down; medmask.Catalog opens it in one read and the\n"
        "MONAI loaders take it instead of paths. Schema: docs/format.md, 'Catalogue files'.\n"
        "--update re-reads only the archives whose size, generation or index checksum\n"
        "changed (a version-2 archive is checked by reading its first 144 bytes).\n\n"
        "examples:\n"
        "  medmask catalog packed/ -o packed/catalog.parquet -w 8\n"
        "  medmask catalog packed/ -o packed/catalog.parquet --update\n"
        "  medmask catalog s3://b/packed/ -o s3://b/catalog.parquet --dask tcp://sched:8786\n"
        "  medmask catalog a/ b/ -o cat.parquet --scheme totalseg      + coverage per case",
    )
    s.add_argument("paths", nargs="+", metavar="PATH", help=".mska/.msk files, folders, URLs")
    s.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="the catalogue (.parquet; a URL too)"
    )
    s.add_argument(
        "--update",
        action="store_true",
        help="start from FILE: re-read only the archives that changed, drop the missing ones",
    )
    add_parallel_options(
        s,
        "read the archives as Dask tasks: on a LocalCluster of --workers processes, or on "
        "the cluster at SCHEDULER (tcp://host:8786; PATHS must then be shared paths or URLs)",
    )
    s.add_argument("--scheme", metavar="SCHEME", help=SCHEME_HELP)
    s.set_defaults(func=cmd_catalog)
