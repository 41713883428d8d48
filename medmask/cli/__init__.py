"""The ``medmask`` command line: argument parsing and printing only.

Subcommands live one module each (``pack``, ``pack_tree``, ``unpack``, ``inspect`` for
``ls``/``info``/``verify``, ``convert``, ...); each has a ``register(add)`` function. The work
itself is done by library functions. Exit status: 0 success, 1 a file failed (verification,
conversion, unreadable input), 2 bad usage. Errors are one line per problem on stderr;
``--debug`` shows tracebacks. See ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from .. import __version__
from . import convert, convert_images, inspect, pack, pack_tree, show, stats, unpack, unpack_tree
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Formatter,
    UsageError,
    common_options,
    err,
    one_line,
)
from .inspect import file_info, verify_file
from .pack_tree import case_name, find_cases

__all__ = ["main", "build_parser", "find_cases", "case_name", "verify_file", "file_info"]

#: The modules whose ``register`` adds subcommands, in the order ``--help`` lists them.
COMMAND_MODULES = (
    pack,
    pack_tree,
    unpack,
    unpack_tree,
    inspect,
    convert,
    stats,
    show,
    convert_images,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``medmask`` command."""
    sub_common = common_options(suppress=True)
    p = argparse.ArgumentParser(
        prog="medmask",
        formatter_class=Formatter,
        description="Pack, inspect, verify and export segmentation masks (.msk / .mska).\n\n"
        "  medmask pack CASE/segmentations -o case.mska     a folder of NIfTI masks -> archive\n"
        "  medmask pack-tree DATASET -o packed/ -w 8        every case folder, in parallel\n"
        "  medmask ls case.mska                             names, labels, voxels, boxes, bytes\n"
        "  medmask verify packed/                           checksums + full decode\n"
        "  medmask unpack case.mska -o restored/            back to one .nii.gz per mask",
        epilog="Exit status: 0 success, 1 a file failed (verification, conversion, unreadable "
        "input), 2 bad usage.\nRun 'medmask COMMAND --help' for a command; see docs/cli.md.",
        parents=[common_options(suppress=False)],
    )
    p.add_argument("--version", action="version", version=f"medmask {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            parents=[sub_common],
            help=help,
            description=description,
            formatter_class=Formatter,
            epilog="Exit status: 0 success, 1 a file failed, 2 bad usage.",
        )

    for module in COMMAND_MODULES:
        module.register(add)
    return p


#: Options whose value may start with ``-`` (a negative number): argparse would read
#: ``--window -160,240`` as two options.
NEGATIVE_VALUES = ("--window",)
_NEGATIVE = re.compile(r"-\d|-\.\d")


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """``--window -160,240`` as ``--window=-160,240``, so that argparse takes the value.

    Args:
        argv: The command-line arguments.

    Returns:
        The arguments, with a negative value joined to its option (:data:`NEGATIVE_VALUES`).
    """
    out, args = [], list(argv)
    k = 0
    while k < len(args):
        a = args[k]
        if a in NEGATIVE_VALUES and k + 1 < len(args) and _NEGATIVE.match(args[k + 1]):
            out.append(f"{a}={args[k + 1]}")
            k += 2
            continue
        out.append(a)
        k += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medmask`` console script.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 success, 1 a file failed, 2 bad usage.
    """
    parser = build_parser()
    args = parser.parse_args(join_negative_values(sys.argv[1:] if argv is None else argv))
    try:
        return args.func(args)
    except UsageError as exc:
        if args.debug:
            raise
        err(args, str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("medmask: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. 'medmask ls x.mska | head': not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python would complain at its final flush
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - one readable line; --debug for the traceback
        if args.debug:
            raise
        err(args, one_line(exc))
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
