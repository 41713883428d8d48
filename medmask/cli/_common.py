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


def err(args: argparse.Namespace, msg: str) -> None:
    print(f"medmask {args.command}: error: {msg}", file=sys.stderr)


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
    print(f"medmask {args.command}: note: {msg}", file=sys.stderr)


def warn(args: argparse.Namespace, msg: str) -> None:
    """A warning on stderr: ``medmask COMMAND: warning: <msg>``."""
    print(f"medmask {args.command}: warning: {msg}", file=sys.stderr)


def print_lost(
    args: argparse.Namespace, lost: Mapping[str, int], heading: str, of: Mapping[str, int] | None
) -> None:
    """The table of voxels each mask lost to overlaps in a label map (not with ``--quiet``).

    Args:
        args: The parsed arguments.
        lost: Voxels lost per mask name (nothing is printed when empty).
        heading: The line above the table.
        of: Each mask's voxel count, printed as ``N of TOTAL``; ``None`` prints ``N`` only.
    """
    if not lost or args.quiet:
        return
    print(heading)
    for name, n in lost.items():
        print(f"  {name}: {n:,}" if of is None else f"  {name}: {n:,} of {of.get(name, 0):,}")


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
        print(f"medmask {args.command}: FAILED {msg}", file=sys.stderr)
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


_SCHEDULER = re.compile(r"^([a-z+]+://|[\w.\-]+:\d+$)")


def add_parallel_options(s: argparse.ArgumentParser, task: str, shared: str) -> None:
    """``-w/--workers`` and ``--dask [SCHEDULER]`` (``pack-tree``, ``catalog``).

    Args:
        s: The subcommand's parser.
        task: What one Dask task does ("run each case", "read the archives").
        shared: The arguments that must be shared paths or URLs on a remote cluster.
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
        "--dask",
        nargs="?",
        const="local",
        default=None,
        metavar="SCHEDULER",
        help=f"{task} as Dask tasks: on a LocalCluster of --workers processes, or on the "
        f"cluster at SCHEDULER (tcp://host:8786; {shared} must then be shared paths or URLs)",
    )


def check_parallel_args(args: argparse.Namespace, before: str) -> None:
    """Refuse ``--workers`` below 1 and a ``--dask`` value that is no scheduler address
    (``--dask PATH`` swallowed a path: ``before`` says where ``--dask`` goes instead).

    Raises:
        UsageError: Either is wrong.
    """
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    if args.dask not in (None, "local") and not _SCHEDULER.match(args.dask):
        raise UsageError(
            f"--dask takes a scheduler address such as tcp://host:8786, got {args.dask!r} "
            f"(write --dask after {before}, or --dask=ADDRESS)"
        )
