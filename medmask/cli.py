"""The ``medmask`` command line.

Subcommands: ``pack``, ``pack-tree``, ``unpack``, ``ls``, ``info``, ``verify``,
``convert``. Exit status: 0 success, 1 a file failed (verification, conversion,
corrupt input), 2 bad usage. Errors are one line on stderr; ``--debug`` shows
tracebacks. See ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from . import __version__
from .errors import MedMaskError
from .format import read_msk, sniff
from .spaces import describe_space
from .storage import MaskArchive

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments discovered after parsing (exit status 2)."""


def _progress(args: argparse.Namespace, total: int | None = None, desc: str = ""):
    """A tqdm wrapper factory honouring ``--quiet`` (no bar when not a terminal either)."""

    def wrap(it: Iterable) -> Iterable:
        if args.quiet:
            return it
        try:
            from tqdm import tqdm
        except ImportError:
            return it
        return tqdm(
            it, total=total, desc=desc, unit="mask", leave=False, disable=not sys.stderr.isatty()
        )

    return wrap


def _say(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(msg)


def _is_archive(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"MSKA"


# -- pack ------------------------------------------------------------------------------------
def cmd_pack(args: argparse.Namespace) -> int:
    from . import nifti

    src, out = Path(args.src), Path(args.output)
    codec = "zstd" if args.codec == "zstd" else None
    t = time.perf_counter()
    if src.is_dir():
        if args.labels:
            raise UsageError("--labels is for a multi-label file, but SRC is a folder")
        files = nifti.nifti_files(src)
        names = nifti.folder_to_archive(
            src, out, codec=codec, progress=_progress(args, len(files), "packing")
        )
        before = sum(f.stat().st_size for f in files)
        _say(
            args,
            f"packed {len(names)} masks from {src} into {out}: {before:,} -> {out.stat().st_size:,} bytes "
            f"({before / max(out.stat().st_size, 1):.1f}x) in {time.perf_counter() - t:.2f} s",
        )
        return EXIT_OK
    if not src.is_file():
        raise UsageError(f"{src}: no such file or folder")
    if not args.labels:
        raise UsageError(
            f"{src} is a file: give its label table with --labels TABLE (JSON or text)"
        )
    table = nifti.read_label_table(args.labels)
    if out.suffix == ".msk":
        nifti.labelmap_to_msk(src, table, out, codec=codec)
        _say(args, f"wrote {out} ({len(table)} labels, {out.stat().st_size:,} bytes)")
    else:
        counts = nifti.labelmap_to_archive(src, table, out, codec=codec)
        absent = [n for n, c in counts.items() if c == 0]
        _say(
            args,
            f"wrote {out}: {len(counts)} masks ({len(absent)} empty), {out.stat().st_size:,} bytes",
        )
    return EXIT_OK


# -- pack-tree -------------------------------------------------------------------------------
def find_cases(root: Path) -> list[Path]:
    """Folders that hold NIfTI masks: ``root`` itself, or every folder below it
    (a case's ``segmentations/`` subfolder counts as that case)."""
    from .nifti import NIFTI_SUFFIXES

    def has_nifti(d: Path) -> bool:
        return any(p.name.endswith(NIFTI_SUFFIXES) for p in d.iterdir() if p.is_file())

    def is_case(d: Path) -> bool:
        # TotalSegmentator: SUBJECT/ct.nii.gz + SUBJECT/segmentations/*.nii.gz -> the
        # segmentations folder is the case, the image beside it is not a mask
        return has_nifti(d) and not (d / "segmentations").is_dir()

    if is_case(root):
        return [root]
    return sorted(d for d in root.rglob("*") if d.is_dir() and is_case(d))


def case_name(root: Path, case: Path) -> str:
    from .nifti import safe_filename

    rel = case.relative_to(root) if case != root else Path(case.name)
    parts = [p for p in rel.parts if p != "segmentations"] or [case.name]
    return safe_filename("__".join(parts))


def verify_file(path: str | os.PathLike) -> dict:
    """Open ``path``, check every checksum and decode every mask.

    Returns:
        ``{"file", "ok", "masks", "error"}``.
    """
    path = Path(path)
    try:
        if _is_archive(path):
            with MaskArchive(path) as ar:
                for i in range(len(ar)):
                    ar.read_cropped(i)
                    ar.info(i)  # validates the mapping
                n = len(ar)
        else:
            read_msk(path, cropped=True)
            n = 1
        return {"file": str(path), "ok": True, "masks": n, "error": None}
    except (MedMaskError, OSError, ValueError) as exc:
        return {"file": str(path), "ok": False, "masks": None, "error": str(exc)}


def _pack_case(case: str, out: str, codec: str | None) -> tuple[str, int, int, float]:
    from .nifti import folder_to_archive, nifti_files

    t = time.perf_counter()
    names = folder_to_archive(case, out, codec=codec)
    before = sum(f.stat().st_size for f in nifti_files(case))
    return out, len(names), before, time.perf_counter() - t


def _already_packed(case: Path, out: Path) -> bool:
    from .nifti import nifti_files, strip_suffix

    if not out.exists() or out.stat().st_mtime < max(f.stat().st_mtime for f in nifti_files(case)):
        return False
    if not verify_file(out)["ok"]:
        return False
    with MaskArchive(out) as ar:
        return ar.all_names() == [strip_suffix(f.name) for f in nifti_files(case)]


def cmd_pack_tree(args: argparse.Namespace) -> int:
    root, dest = Path(args.root), Path(args.output)
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder")
    cases = find_cases(root)
    if not cases:
        raise UsageError(f"{root}: no folder with .nii.gz masks found")
    dest.mkdir(parents=True, exist_ok=True)
    codec = "zstd" if args.codec == "zstd" else None
    jobs, skipped, failed = [], 0, []
    for case in cases:
        out = dest / f"{case_name(root, case)}.mska"
        if not args.force and _already_packed(case, out):
            skipped += 1
        else:
            jobs.append((case, out))
    total_in = total_out = masks = 0
    t = time.perf_counter()
    bar = _progress(args, len(jobs), "cases")
    if args.workers <= 1:
        results = []
        for case, out in bar(jobs):
            try:
                results.append(_pack_case(str(case), str(out), codec))
            except (MedMaskError, OSError, ValueError) as exc:
                failed.append(f"{case}: {exc}")
    else:
        results = []
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futures = {pool.submit(_pack_case, str(c), str(o), codec): c for c, o in jobs}
            for fut in bar(as_completed(futures)):
                try:
                    results.append(fut.result())
                except (MedMaskError, OSError, ValueError) as exc:
                    failed.append(f"{futures[fut]}: {exc}")
    for out, n, before, _dt in results:
        total_in += before
        total_out += Path(out).stat().st_size
        masks += n
    for line in failed:
        print(f"medmask: error: {line}", file=sys.stderr)
    _say(
        args,
        f"{len(cases)} cases: {len(results)} packed ({masks} masks, {total_in:,} -> {total_out:,} bytes"
        f"{f', {total_in / total_out:.1f}x' if total_out else ''}), {skipped} already packed and verified, "
        f"{len(failed)} failed, in {time.perf_counter() - t:.1f} s",
    )
    return EXIT_FAILED if failed else EXIT_OK


# -- unpack ----------------------------------------------------------------------------------
def cmd_unpack(args: argparse.Namespace) -> int:
    from . import nifti

    src = Path(args.archive)
    if args.labelmap:
        table, overlap = nifti.archive_to_labelmap(src, args.labelmap)
        (Path(args.labelmap).with_suffix("").with_suffix(".labels.json")).write_text(
            json.dumps(table, indent=1)
        )
        _say(
            args,
            f"wrote {args.labelmap} with {len(table)} labels; {overlap} voxels belonged to several masks "
            "(the later mask wins in the label map)",
        )
        return EXIT_OK
    if not args.output:
        raise UsageError("give -o DIR (or --labelmap FILE)")
    if not _is_archive(src):
        seg_dir = Path(args.output)
        seg_dir.mkdir(parents=True, exist_ok=True)
        from .segmask import SegmentationMask

        seg = SegmentationMask.load(src)
        target = seg_dir / f"{nifti.safe_filename(src.name.removesuffix('.msk'))}.nii.gz"
        nifti.segmask_to_nifti(seg, target)
        _say(args, f"wrote {target}")
        return EXIT_OK
    with MaskArchive(src) as ar:
        n = len(ar)
    written = nifti.archive_to_folder(src, args.output, progress=_progress(args, n, "unpacking"))
    renamed = sum(1 for name, p in written.items() if p.name != f"{name}.nii.gz")
    _say(
        args,
        f"wrote {len(written)} files to {args.output}"
        + (f" ({renamed} names made safe)" if renamed else ""),
    )
    return EXIT_OK


# -- ls / info / verify ----------------------------------------------------------------------
def cmd_ls(args: argparse.Namespace) -> int:
    path = Path(args.archive)
    rows = []
    if not _is_archive(path):
        array, mapping, _space, bbox, _v = read_msk(path, cropped=True)
        for name, label in mapping.items():
            rows.append(
                {
                    "name": name,
                    "label": label,
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
                        "voxels": voxels,
                        "bbox": list(bbox) if bbox else None,
                        "bytes": info.nbytes,
                    }
                )
    if args.json:
        print(json.dumps(rows, indent=1))
        return EXIT_OK
    width = max([len(r["name"]) for r in rows] + [4])
    print(
        f"{'name':<{width}}  {'labels':<16} {'voxels':>10}  {'bbox (z0,z1,y0,y1,x0,x1)':<30} {'bytes':>8}"
    )
    for r in rows:
        labels = r.get("labels", {r["name"]: r.get("label")})
        lab = ",".join(str(v) for v in labels.values())
        box = "empty" if r["bbox"] is None else ",".join(map(str, r["bbox"]))
        print(f"{r['name']:<{width}}  {lab:<16} {r['voxels']:>10,}  {box:<30} {r['bytes']:>8,}")
    return EXIT_OK


def file_info(path: Path) -> dict:
    """Version, codec, space and sizes of a medmask file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        kind, major = sniff(fd, path)
    finally:
        os.close(fd)
    out = {"file": str(path), "kind": kind, "version": major, "bytes": path.stat().st_size}
    if kind == "mska":
        with MaskArchive(path) as ar:
            out["masks"] = len(ar)
            codecs = sorted({e.codec.name for e in ar._entries}) or (
                ["zstd"] if major == 1 else ["bitzstd"]
            )
            out["codec"] = ",".join(codecs)
            out["space"] = None if ar.space is None else describe_space(ar.space)
            out["shape_zyx"] = None if ar.space is None else [int(s) for s in ar.space.shape]
            out["empty_masks"] = (
                sum(1 for e in ar._entries if e.bbox is None) if major == 2 else None
            )
            out["blob_bytes"] = sum(e.length for e in ar._entries)
            if major == 2:
                out["generation"] = ar._backend.generation
                out["index_segments"] = len(ar._backend._segments)
    else:
        array, mapping, space, bbox, _ = read_msk(path, cropped=True)
        out.update(
            codec="zstd" if major == 1 else "bitzstd",
            masks=1,
            labels=mapping.to_dict(),
            dtype=str(array.dtype),
            space=describe_space(space),
            shape_zyx=[int(s) for s in space.shape],
            bbox=list(bbox) if bbox else None,
        )
    return out


def cmd_info(args: argparse.Namespace) -> int:
    info = file_info(Path(args.file))
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        for k, v in info.items():
            print(f"{k:>15}: {v}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    results = [verify_file(f) for f in _progress(args, len(args.files), "verifying")(args.files)]
    bad = [r for r in results if not r["ok"]]
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for r in results:
            if r["ok"]:
                _say(args, f"ok      {r['file']} ({r['masks']} masks)")
        for r in bad:
            print(f"medmask: FAILED {r['error']}", file=sys.stderr)
    return EXIT_FAILED if bad else EXIT_OK


# -- convert ---------------------------------------------------------------------------------
def cmd_convert(args: argparse.Namespace) -> int:
    src, out = Path(args.src), Path(args.output)
    codec = "zstd" if args.to == 1 else "bitzstd"
    if src.resolve() == out.resolve():
        raise UsageError("convert writes a new file: give an -o different from SRC")
    if _is_archive(src):
        with MaskArchive(src) as ar, MaskArchive(out, "w", codec=codec, space=ar.space) as dst:
            for name in _progress(args, len(ar), "converting")(ar.all_names()):
                dst.add_segmask(ar[name], name)
    else:
        from .segmask import SegmentationMask

        SegmentationMask.load(src).save(out, codec=codec)
    _say(
        args,
        f"wrote {out} (version {args.to}): {src.stat().st_size:,} -> {out.stat().st_size:,} bytes",
    )
    return EXIT_OK


# -- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p = argparse.ArgumentParser(
        prog="medmask",
        description="Pack, inspect, verify and export segmentation masks (.msk / .mska).",
        epilog="Exit status: 0 success, 1 a file failed, 2 bad usage. See docs/cli.md.",
        parents=[common],
    )
    p.add_argument("--version", action="version", version=f"medmask {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    codec_help = "bitzstd: version 2 (default); zstd: version 1, readable by medmask 0.1.x"

    s = sub.add_parser(
        "pack",
        parents=[common],
        help="pack a folder of NIfTI masks, or a label map, into an archive",
        description="Pack a folder of binary NIfTI masks (one file per organ, names from file names) "
        "into OUT.mska, or a multi-label NIfTI plus --labels TABLE into OUT.mska "
        "(one mask per label) or OUT.msk (one label map).",
    )
    s.add_argument("src", help="folder of .nii.gz masks, or a multi-label .nii.gz")
    s.add_argument("-o", "--output", required=True, help="the .mska (or .msk) to write")
    s.add_argument(
        "--labels",
        help="label table for a multi-label file: JSON {name: label}, a JSON list of names, or text",
    )
    s.add_argument("--codec", choices=["bitzstd", "zstd"], default="bitzstd", help=codec_help)
    s.set_defaults(func=cmd_pack)

    s = sub.add_parser(
        "pack-tree",
        parents=[common],
        help="pack every case folder of a dataset, in parallel, resumable",
        description="Find every folder under ROOT holding .nii.gz masks (a case; a case's "
        "segmentations/ folder counts as the case) and pack each into DEST/<case>.mska. "
        "Cases whose archive exists, is newer than its files and verifies are skipped.",
    )
    s.add_argument("root", help="dataset root (or a single case folder)")
    s.add_argument("-o", "--output", required=True, help="destination folder for the archives")
    s.add_argument(
        "-w",
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="parallel processes (default: CPU count)",
    )
    s.add_argument("--force", action="store_true", help="repack cases already packed")
    s.add_argument("--codec", choices=["bitzstd", "zstd"], default="bitzstd", help=codec_help)
    s.set_defaults(func=cmd_pack_tree)

    s = sub.add_parser(
        "unpack",
        parents=[common],
        help="export an archive (or .msk) to .nii.gz files",
        description="Write one <name>.nii.gz per mask into DIR (names made safe: they never leave DIR), "
        "or one multi-label file with --labelmap.",
    )
    s.add_argument("archive", help="the .mska or .msk")
    s.add_argument("-o", "--output", help="folder to write into")
    s.add_argument(
        "--labelmap", help="write one multi-label .nii.gz instead (overlaps are reported)"
    )
    s.set_defaults(func=cmd_unpack)

    s = sub.add_parser(
        "ls", parents=[common], help="list masks: names, labels, voxel counts, boxes, bytes"
    )
    s.add_argument("archive", help="the .mska or .msk")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_ls)

    s = sub.add_parser(
        "info", parents=[common], help="format version, codec, space and sizes of a file"
    )
    s.add_argument("file", help="a .mska or .msk")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser(
        "verify",
        parents=[common],
        help="check every checksum and decode every mask",
        description="Exit status 0 when every file is sound, 1 otherwise.",
    )
    s.add_argument("files", nargs="+", help="files to verify")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser(
        "convert",
        parents=[common],
        help="rewrite a file in format version 1 or 2",
        description="Rewrite SRC as OUT in the chosen version (also compacts a version-2 archive).",
    )
    s.add_argument("src", help="a .mska or .msk")
    s.add_argument("-o", "--output", required=True, help="the file to write")
    s.add_argument("--to", type=int, choices=[1, 2], default=2, help="target version (default 2)")
    s.set_defaults(func=cmd_convert)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medmask`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        if args.debug:
            raise
        print(f"medmask {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (MedMaskError, OSError, ValueError, KeyError, ImportError) as exc:
        if args.debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"medmask {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("medmask: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
