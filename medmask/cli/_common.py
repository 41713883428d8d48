"""What every subcommand shares: exit statuses, one-line errors, progress bars,
common options (``-q``, ``--debug``, ``--storage-option``) and small path helpers."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from ..io.target import Target
from ..packing.results import one_line as one_line  # the CLI prints errors as reports do

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
CODEC_HELP = "bitzstd: format version 2 (default); zstd: version 1, readable by medmask 0.1.x"


class AddCommand(Protocol):
    """``add(name, help, description)`` returns a new subcommand parser."""

    def __call__(self, name: str, help: str, description: str) -> argparse.ArgumentParser: ...


class UsageError(Exception):
    """Bad arguments discovered after parsing (exit status 2)."""


#: How library messages name an option for both audiences: ``keyword=VALUE / --flag``
#: (``threshold=T / --threshold T``); the command line shows the flag alone.
_BOTH_SPELLINGS = re.compile(r"\b[a-z_][a-z0-9_]*=[A-Za-z0-9_]* / (?=--)")


def flags_only(msg: str) -> str:
    """A library message as the command line says it: options named by their flag only
    (``threshold=T / --threshold T`` -> ``--threshold T``)."""
    return _BOTH_SPELLINGS.sub("", msg)


def err(args: argparse.Namespace, msg: str) -> None:
    """An error on stderr: ``medmask COMMAND: error: <msg>`` (options named by flag only)."""
    print(f"medmask {args.command}: error: {flags_only(msg)}", file=sys.stderr)


def progress(
    args: argparse.Namespace, total: int | None = None, desc: str = "", unit: str = "mask"
) -> Callable[[Iterable], Iterable]:
    """A tqdm wrapper factory honouring ``--quiet`` (no bar when stderr is not a terminal)."""

    def wrap(it: Iterable) -> Iterable:
        if args.quiet or not sys.stderr.isatty():
            return it
        try:
            from tqdm import tqdm
        except ImportError:  # the ``cli`` extra is optional
            return it
        return tqdm(it, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)

    return wrap


def note(args: argparse.Namespace, msg: str) -> None:
    """A remark on stderr, after the output: ``medmask COMMAND: note: <msg>``."""
    print(f"medmask {args.command}: note: {flags_only(msg)}", file=sys.stderr)


def warn(args: argparse.Namespace, msg: str) -> None:
    """A warning on stderr: ``medmask COMMAND: warning: <msg>``."""
    print(f"medmask {args.command}: warning: {flags_only(msg)}", file=sys.stderr)


def print_lost(
    args: argparse.Namespace,
    lost: Mapping[str, int],
    heading: str,
    of: Mapping[str, int] | None,
    taken_by: Mapping[str, list[str]] | None = None,
) -> None:
    """The table of voxels each mask lost to overlaps in a label map (not with ``--quiet``).

    Args:
        args: The parsed arguments.
        lost: Voxels lost per mask name (nothing is printed when empty).
        heading: The line above the table.
        of: Each mask's voxel count, printed as ``N of TOTAL``; ``None`` prints ``N`` only.
        taken_by: The masks that took each one's voxels, printed as ``(to a, b)``.
    """
    if not lost or args.quiet:
        return
    print(heading)
    for name, n in lost.items():
        line = f"  {name}: {n:,}" if of is None else f"  {name}: {n:,} of {of.get(name, 0):,}"
        winners = (taken_by or {}).get(name)
        print(line + (f" (to {', '.join(winners)})" if winners else ""))


_RULES = {
    "last": "the later mask wins",
    "first": "the earlier mask wins",
    "smaller": "the smaller mask wins",
}


def print_export(args: argparse.Namespace, report: Any, out: object, what: str) -> None:
    """The one report of an export (``unpack -o X`` and ``convert -o X`` alike): what was
    written, then for a label map the voxels lost to overlaps, per mask, and the masks
    that lost all of them; notes and renamed files.

    Args:
        args: The parsed arguments (``overlap`` is the rule, when the command has one).
        report: The :class:`~medmask.conversions.ConversionReport`.
        out: The output.
        what: What was written, e.g. ``"label map"``.
    """
    how = _rule(args)
    say(args, f"wrote {out} ({what}, {plural(len(report.masks), 'mask')})")
    warn_emptied(args, report, out)
    if report.lost:
        note(
            args,
            f"{sum(report.lost.values()):,} voxels belonged to several masks; the label map "
            f"keeps one ({how}); -o DIR or X.seg.nrrd keep overlaps",
        )
        print_lost(
            args,
            report.lost,
            f"voxels lost to overlaps ({how}):",
            report.voxels,
            getattr(report, "taken_by", None),
        )
    elif what == "label map" and not args.quiet:
        print("no voxel belongs to two masks: the label map holds every mask exactly")
    for remark in report.notes:
        note(args, remark)
    if report.renamed and not args.quiet:
        print(f"{len(report.renamed)} names made safe for the file system:")
        for fname, name in list(report.renamed.items())[:20]:
            print(f"  {name!r} -> {fname}")


def _rule(args: argparse.Namespace) -> str:
    rule = getattr(args, "overlap", "last")
    return f"rule --overlap {rule}: {_RULES.get(rule, rule)}"


def warn_emptied(args: argparse.Namespace, report: Any, out: object) -> None:
    """A warning (stderr, also with ``--json``) for every mask an export left empty."""
    taken = getattr(report, "taken_by", None) or {}
    for name in report.emptied:
        winners = ", ".join(taken.get(name, [])) or "overlapping masks"
        warn(
            args,
            f"mask {name!r} lost all its {report.voxels.get(name, 0):,} voxels to {winners} "
            f"({_rule(args)}): it is absent from {out}; try --overlap smaller, or -o DIR "
            "/ X.seg.nrrd, which keep overlaps",
        )


def report_failed(args: argparse.Namespace, messages: Iterable[str]) -> int:
    """Print each failure as ``medmask COMMAND: FAILED <message>`` on stderr.

    Args:
        args: The parsed arguments (their ``command`` names the subcommand).
        messages: One line per failed file or case.

    Returns:
        The exit status: :data:`EXIT_FAILED` when there was a failure, else :data:`EXIT_OK`.
    """
    failed = list(messages)
    for msg in failed:
        print(f"medmask {args.command}: FAILED {flags_only(msg)}", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def say(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(msg)


def codec_arg(args: argparse.Namespace) -> str | None:
    return "zstd" if args.codec == "zstd" else None


def require_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a .msk/.mska file")


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


def common_options(suppress: bool) -> argparse.ArgumentParser:
    """``-q``/``--debug``, accepted before or after the subcommand.

    The subcommands' copies default to SUPPRESS so that they do not overwrite a
    value given before the subcommand (``medmask -q verify ...``).
    """
    p = argparse.ArgumentParser(add_help=False)
    default = argparse.SUPPRESS if suppress else False
    p.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="no progress bars or summaries"
    )
    p.add_argument(
        "--debug", action="store_true", default=default, help="show tracebacks on errors"
    )
    p.add_argument(
        "--storage-option",
        action="append",
        metavar="KEY=VALUE",
        default=argparse.SUPPRESS if suppress else [],
        help="fsspec storage option for URLs (repeatable; e.g. "
        "client_kwargs.endpoint_url=http://127.0.0.1:9000); fsspec's own environment "
        "variables (FSSPEC_S3_ENDPOINT_URL, AWS_*) apply too",
    )
    return p


def storage_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """``--storage-option KEY=VALUE`` pairs as fsspec ``storage_options`` (``None`` when none),
    parsed once per command (kept on ``args``).

    Values are parsed as JSON where they parse (numbers, booleans, objects), else kept as strings;
    a dotted key (``client_kwargs.endpoint_url=...``) builds nested dicts.

    Raises:
        UsageError: A pair without ``=``.
    """
    if not hasattr(args, "_storage_options"):
        args._storage_options = _parse_storage_options(getattr(args, "storage_option", None) or [])
    return args._storage_options


def target(args: argparse.Namespace, path: str) -> Target:
    """``path`` (a local path or URL argument) as a :class:`~medmask.io.Target` carrying the
    ``--storage-option`` options.

    Raises:
        UsageError: A malformed ``--storage-option``.
    """
    return Target.of(path, storage_options(args))


def _parse_storage_options(pairs: list[str]) -> dict[str, Any] | None:
    import json

    if not pairs:
        return None
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, raw = pair.partition("=")
        if not eq or not key:
            raise UsageError(f"--storage-option takes KEY=VALUE, got {pair!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UsageError(f"--storage-option {key}: {p!r} is both a value and a group")
        node[leaf] = value
    return out


# -- --workers / --dask (pack-tree, catalog) ------------------------------------------------------
_SCHEDULER = re.compile(r"^([a-z+]+://|[\w.\-]+:\d+$)")


def add_parallel_options(s: argparse.ArgumentParser, dask_help: str) -> None:
    """Add ``-w/--workers`` and ``--dask [SCHEDULER]`` to a command that runs many files.

    Args:
        s: The command's parser.
        dask_help: What ``--dask`` does for this command (the text of its help).
    """
    s.add_argument(
        "-w",
        "--workers",
        type=int,
        default=max(1, min(8, os.cpu_count() or 1)),
        metavar="N",
        help="parallel processes, or the workers of --dask's LocalCluster (default: CPU count, "
        "at most 8)",
    )
    s.add_argument(
        "--dask", nargs="?", const="local", default=None, metavar="SCHEDULER", help=dask_help
    )


def check_parallel_args(args: argparse.Namespace, positional: str) -> None:
    """Refuse ``--workers`` below 1 and a ``--dask`` value that is not a scheduler address.

    Args:
        args: The parsed arguments (``workers``, ``dask``).
        positional: How the command's help names its inputs (``ROOT``, ``the paths``): a
            ``--dask`` written before them swallows the first one.

    Raises:
        UsageError: Either is wrong (exit status 2).
    """
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.dask not in (None, "local") and not _SCHEDULER.match(args.dask):
        raise UsageError(
            f"--dask takes a scheduler address such as tcp://host:8786, got {args.dask!r} "
            f"(write --dask after {positional}, or --dask=ADDRESS)"
        )
