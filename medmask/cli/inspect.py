"""``medmask ls``, ``info`` and ``verify``: look inside files without changing them."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..format import read_msk, sniff
from ..spaces import describe_space
from ..storage import MaskArchive
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    AddCommand,
    UsageError,
    expand_files,
    is_archive,
    one_line,
    progress,
    require_file,
    say,
)


def verify_file(path: str | os.PathLike) -> dict:
    """Open ``path``, check every checksum and decode every mask.

    Args:
        path: A ``.msk`` or ``.mska``.

    Returns:
        ``{"file", "ok", "version", "masks", "checksums", "error"}``: ``checksums`` is
        False for version-1 files, which carry none (their masks are decoded only);
        ``error`` is one line.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise IsADirectoryError(f"{path}: is a folder")
        if is_archive(path):
            with MaskArchive(path) as ar:
                version = ar.version
                for i in range(len(ar)):
                    ar.read_cropped(i)  # every blob: CRC32 and a full decode
                    ar.info(i)  # the mapping parses and fits
                n = len(ar)
        else:
            _array, _mapping, _space, _bbox, version = read_msk(path, cropped=True)
            n = 1
        return {
            "file": str(path),
            "ok": True,
            "version": version,
            "masks": n,
            "checksums": version >= 2,  # version 1 files carry none: decoded only
            "error": None,
        }
    except Exception as exc:  # noqa: BLE001 - whatever breaks, the file is not sound
        msg = one_line(exc)
        if str(path) not in msg:
            msg = f"{path}: {msg}"
        return {
            "file": str(path),
            "ok": False,
            "version": None,
            "masks": None,
            "checksums": None,
            "error": msg,
        }


def cmd_ls(args: argparse.Namespace) -> int:
    path = Path(args.archive)
    require_file(path)
    rows = []
    if not is_archive(path):
        array, mapping, _space, bbox, _v = read_msk(path, cropped=True)
        for name, label in mapping.items():
            rows.append(
                {
                    "name": name,
                    "labels": {name: label},
                    "voxels": int(np.count_nonzero(array == label)),
                    "bbox": list(bbox) if bbox else None,
                    "bytes": path.stat().st_size,
                }
            )
    else:
        with MaskArchive(path) as ar:
            for i in range(len(ar)):
                info = ar.info(i)
                voxels, bbox = info.voxels, info.bbox
                if voxels is None:  # version 1 does not record them: decode
                    crop, bbox = ar.read_cropped(i)
                    voxels = int(np.count_nonzero(crop))
                rows.append(
                    {
                        "name": info.name,
                        "labels": info.mapping,
                        "voxels": int(voxels),
                        "bbox": [int(v) for v in bbox] if bbox else None,
                        "bytes": int(info.nbytes),
                    }
                )
    if args.json:
        print(json.dumps(rows, indent=1, ensure_ascii=False))
        return EXIT_OK
    width = max([len(repr(r["name"])) - 2 for r in rows] + [4])
    print(
        f"{'name':<{width}}  {'labels':<10} {'voxels':>11}  {'bbox z0:z1,y0:y1,x0:x1':<26} {'bytes':>9}"
    )
    for r in rows:
        lab = ",".join(str(v) for v in r["labels"].values())
        if r["bbox"] is None:
            box = "empty"
        else:
            b = r["bbox"]
            box = f"{b[0]}:{b[1]},{b[2]}:{b[3]},{b[4]}:{b[5]}"
        shown = repr(r["name"])[1:-1]  # control characters stay visible and harmless
        print(f"{shown:<{width}}  {lab:<10} {r['voxels']:>11,}  {box:<26} {r['bytes']:>9,}")
    return EXIT_OK


def file_info(path: str | os.PathLike) -> dict:
    """Version, codec, space and sizes of a medmask file.

    Args:
        path: A ``.msk`` or ``.mska``.

    Returns:
        A JSON-serialisable dict.

    Raises:
        CorruptFileError: The file is damaged or not a medmask file.
        OSError: The file cannot be read.
    """
    path = Path(path)
    require_file(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        kind, major = sniff(fd, path)
    finally:
        os.close(fd)
    out: dict = {"file": str(path), "kind": kind, "version": major, "bytes": path.stat().st_size}
    if kind == "mska":
        with MaskArchive(path) as ar:
            entries = ar._entries
            out["masks"] = len(ar)
            codecs = sorted({e.codec.name for e in entries}) or (
                ["zstd"] if major == 1 else ["bitzstd"]
            )
            out["codec"] = ",".join(codecs)
            out["shape_zyx"] = None if ar.space is None else [int(s) for s in ar.space.shape]
            out["space"] = None if ar.space is None else describe_space(ar.space)
            if ar.space is not None:
                from ..nifti import space_to_affine

                out["affine_ras"] = [
                    [round(float(v), 6) for v in row] for row in space_to_affine(ar.space)
                ]
            out["empty_masks"] = sum(1 for e in entries if e.bbox is None) if major == 2 else None
            out["mask_bytes"] = sum(int(e.length) for e in entries)
            out["overhead_bytes"] = out["bytes"] - out["mask_bytes"]
            if major == 2:
                out["generation"] = int(ar._backend.generation)
                out["index_segments"] = len(ar._backend._segments)
            full = int(np.prod(ar.space.shape)) if ar.space is not None else 0
            out["full_volume_bytes_uint8"] = full * len(ar)
    else:
        array, mapping, space, bbox, _ = read_msk(path, cropped=True)
        out.update(
            codec="zstd" if major == 1 else "bitzstd",
            masks=1,
            labels=mapping.to_dict(),
            dtype=str(array.dtype),
            shape_zyx=[int(s) for s in space.shape],
            space=describe_space(space),
            bbox=[int(v) for v in bbox] if bbox else None,
        )
    return out


def cmd_info(args: argparse.Namespace) -> int:
    info = file_info(Path(args.file))
    if args.json:
        print(json.dumps(info, indent=1, ensure_ascii=False))
    else:
        for k, v in info.items():
            print(f"{k:>24}: {v}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    files = expand_files(args.files)
    if not files:
        raise UsageError(f"no .msk / .mska files in {' '.join(args.files)}")
    results = [verify_file(f) for f in progress(args, len(files), "verifying", unit="file")(files)]
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
    for r in bad:
        print(f"medmask verify: FAILED {r['error']}", file=sys.stderr)
    return EXIT_FAILED if bad else EXIT_OK


def register(add: AddCommand) -> None:
    """Add this module's subcommands to the parser (``add`` makes one subparser)."""
    s = add(
        "ls",
        "list masks: names, labels, voxel counts, bounding boxes, bytes",
        "List the masks of an archive (or the labels of a .msk): name, label(s), voxel count, "
        "bounding\nbox (half-open z0:z1,y0:y1,x0:x1 in (z, y, x) voxel indices) and bytes in "
        "the file.",
    )
    s.add_argument("archive", metavar="FILE", help="the .mska (or .msk)")
    s.add_argument("--json", action="store_true", help="machine-readable output (a JSON list)")
    s.set_defaults(func=cmd_ls)

    s = add(
        "info",
        "format version, codec, space and sizes of a file",
        "Show the format version, codec, grid (shape, spacing, origin, axes; RAS affine) and "
        "sizes of a\n.msk or .mska file.",
    )
    s.add_argument("file", metavar="FILE", help="a .mska or .msk")
    s.add_argument("--json", action="store_true", help="machine-readable output (a JSON object)")
    s.set_defaults(func=cmd_info)

    s = add(
        "verify",
        "check every checksum and decode every mask",
        "Open each file (header and index checksums), then read and decode every mask (each "
        "blob's\nCRC32). Version-1 files carry no checksums: their masks are decoded only. Folders "
        "are\nsearched for .msk/.mska files. Exit status 0 when every file is sound, 1 otherwise; "
        "each\nfailure is one line on stderr.\n\nexample:\n"
        "  medmask verify packed/",
    )
    s.add_argument("files", nargs="+", metavar="FILE", help="files (or folders) to verify")
    s.add_argument("--json", action="store_true", help="machine-readable output (a JSON list)")
    s.set_defaults(func=cmd_verify)
