"""``medmask ls``, ``info`` and ``verify``: look inside files without changing them.

Argument parsing and printing only; the work is :mod:`medmask.inspect`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from ..inspect import expand_paths, file_info, list_masks, verify_file
from ..io.names import is_url
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    AddCommand,
    UsageError,
    err,
    one_line,
    progress,
    report_failed,
    say,
    storage_options,
)

__all__ = ["register", "verify_file", "file_info"]


def _inputs(args: argparse.Namespace, paths: Sequence[str]) -> list[str]:
    """The files named by ``paths`` (folders expanded); a missing one is a usage error (2)."""
    try:
        files = expand_paths(paths, storage_options=storage_options(args))
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    if not files:
        raise UsageError(f"no .msk / .mska files in {' '.join(paths)}")
    return files


def _several(paths: Sequence[str]) -> bool:
    """Whether the arguments may name more than one file (several, or a folder)."""
    from pathlib import Path

    return len(paths) > 1 or any(
        (str(p).endswith("/") if is_url(p) else Path(p).is_dir()) for p in paths
    )


def _shown(name: str) -> str:
    return repr(name)[1:-1]  # control characters stay visible and harmless


def _box(bbox: list[int] | None) -> str:
    if bbox is None:
        return "empty"
    b = bbox
    return f"{b[0]}:{b[1]},{b[2]}:{b[3]},{b[4]}:{b[5]}"


def _each(args: argparse.Namespace, files: list[str], work, desc: str):
    """``work(file)`` for every file; a failing file is reported and the others go on.

    Returns:
        ``(results, failed)``: results in order for the files that worked.
    """
    so = storage_options(args)
    results, failed = [], 0
    for f in progress(args, len(files), desc, unit="file")(files):
        try:
            results.append(work(f, storage_options=so))
        except Exception as exc:  # noqa: BLE001 - one line per unreadable file, then go on
            if args.debug:
                raise
            msg = one_line(exc)
            err(args, msg if f in msg else f"{f}: {msg}")
            failed += 1
    return results, failed


def cmd_ls(args: argparse.Namespace) -> int:
    files = _inputs(args, args.files)
    tables, failed = _each(args, files, list_masks, "listing")
    rows = [r for t in tables for r in t]
    if failed and not tables:  # nothing could be listed: the errors say why, no empty table
        return EXIT_FAILED
    if args.json:
        print(json.dumps(rows, indent=1, ensure_ascii=False))
        return EXIT_FAILED if failed else EXIT_OK
    with_file = _several(args.files)
    fw = max([len(_shown(r["file"])) for r in rows] + [4]) if with_file else 0
    width = max([len(_shown(r["name"])) for r in rows] + [4])
    head = f"{'file':<{fw}}  " if with_file else ""
    print(
        f"{head}{'name':<{width}}  {'labels':<10} {'voxels':>11}  "
        f"{'bbox z0:z1,y0:y1,x0:x1':<26} {'bytes':>9}"
    )
    for r in rows:
        lab = ",".join(str(v) for v in r["labels"].values())
        lead = f"{_shown(r['file']):<{fw}}  " if with_file else ""
        print(
            f"{lead}{_shown(r['name']):<{width}}  {lab:<10} {r['voxels']:>11,}  "
            f"{_box(r['bbox']):<26} {r['bytes']:>9,}"
        )
    return EXIT_FAILED if failed else EXIT_OK


def _info_lines(info: dict) -> list[str]:
    lines = []
    for k, v in info.items():
        if k == "space" and isinstance(v, dict):
            for sk, label in (
                ("shape", "shape (x,y,z)"),
                ("spacing", "spacing (x,y,z)"),
                ("origin", "origin (RAS)"),
                ("direction", "direction (RAS)"),
            ):
                lines.append(f"{label:>24}: {v[sk]}")
            for sk in ("shape_zyx", "spacing_zyx", "origin_lps", "axes_zyx_lps"):
                lines.append(f"{sk:>24}: {v[sk]}")
            lines.append(f"{'affine_ras':>24}: {v['affine_ras']}")
        elif k != "space_text":
            lines.append(f"{k:>24}: {v}")
    return lines


def cmd_info(args: argparse.Namespace) -> int:
    files = _inputs(args, args.files)
    infos, failed = _each(args, files, file_info, "reading")
    if args.json:
        several = _several(args.files)
        out = infos if several else (infos[0] if infos else None)
        if out is not None:
            print(json.dumps(out, indent=1, ensure_ascii=False))
    elif infos:
        print("\n\n".join("\n".join(_info_lines(i)) for i in infos))
    return EXIT_FAILED if failed else EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    files = _inputs(args, args.files)
    so = storage_options(args)
    results = [
        verify_file(f, storage_options=so)
        for f in progress(args, len(files), "verifying", unit="file")(files)
    ]
    bad = [r for r in results if not r["ok"]]
    if args.json:
        print(json.dumps(results, indent=1, ensure_ascii=False))
    else:
        for r in results:
            if r["ok"]:
                note = "" if r["checksums"] else "; version 1 has no checksums: decoded only"
                say(args, f"ok      {r['file']} (version {r['version']}, {r['masks']} masks{note})")
        if len(results) > 1:
            say(args, f"{len(results) - len(bad)} of {len(results)} files sound")
    return report_failed(args, (line for r in bad for line in r["problems"] or [r["error"]]))


def register(add: AddCommand) -> None:
    """Add this module's subcommands to the parser (``add`` makes one subparser)."""
    s = add(
        "ls",
        "list masks: names, labels, voxel counts, bounding boxes, bytes",
        "List the masks of archives (or the labels of .msk files): name, label(s), voxel "
        "count, bounding\nbox (half-open z0:z1,y0:y1,x0:x1 in (z, y, x) voxel indices) and "
        "bytes in the file. Several\nfiles or a folder (searched recursively) give one table "
        "with a file column.\n\nexamples:\n  medmask ls s0000.mska\n  medmask ls packed/ --json",
    )
    s.add_argument("files", nargs="+", metavar="FILE", help="archives, .msk files or folders")
    s.add_argument(
        "--json", action="store_true", help="machine-readable output (a JSON list, one per mask)"
    )
    s.set_defaults(func=cmd_ls)

    s = add(
        "info",
        "format version, codec, space and sizes of files",
        "Show the format version, codec, grid and sizes of .msk / .mska files. The grid is "
        "given as\nNIfTI users read it (shape, spacing, origin, direction in (x, y, z), RAS; "
        "the RAS affine) and\nas medmask stores it ((z, y, x), LPS).\n\n"
        "With --json: one FILE gives an object; several files or a folder give a list.\n\n"
        "examples:\n  medmask info s0000.mska\n  medmask info packed/ --json",
    )
    s.add_argument("files", nargs="+", metavar="FILE", help="archives, .msk files or folders")
    s.add_argument(
        "--json",
        action="store_true",
        help="machine-readable output (an object; a list for several files)",
    )
    s.set_defaults(func=cmd_info)

    s = add(
        "verify",
        "check every checksum and decode every mask",
        "Open each file (header and index checksums), then read and decode every mask (each "
        "blob's\nCRC32). Version-1 files carry no checksums: their masks are decoded only. Folders "
        "are\nsearched for .msk/.mska files. Exit status 0 when every file is sound, 1 otherwise "
        "(2 when\nan input does not exist); each failure is one line on stderr.\n\nexample:\n"
        "  medmask verify packed/",
    )
    s.add_argument("files", nargs="+", metavar="FILE", help="files (or folders) to verify")
    s.add_argument("--json", action="store_true", help="machine-readable output (a JSON list)")
    s.set_defaults(func=cmd_verify)
