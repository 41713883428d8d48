"""The ``medmask`` command line.

Subcommands: ``pack``, ``pack-tree``, ``unpack``, ``ls``, ``info``, ``verify``,
``convert``. Exit status: 0 success, 1 a file failed (verification, conversion,
unreadable input), 2 bad usage. Errors are one line per problem on stderr;
``--debug`` shows tracebacks. See ``docs/cli.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from . import __version__
from .errors import MedMaskError
from .format import read_msk, sniff
from .spaces import describe_space
from .storage import MaskArchive

__all__ = ["main", "build_parser", "find_cases", "case_name", "verify_file", "file_info"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MASK_SUFFIXES = (".mska", ".msk")


class UsageError(Exception):
    """Bad arguments discovered after parsing (exit status 2)."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, KeyError) and not isinstance(exc, MedMaskError):
        text = text.strip("'\"")
    first = text.splitlines()[0] if text else ""
    return first or type(exc).__name__


def _err(args: argparse.Namespace, msg: str) -> None:
    print(f"medmask {args.command}: error: {msg}", file=sys.stderr)


def _progress(
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


def _say(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(msg)


def _is_archive(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"MSKA"


def _codec(args: argparse.Namespace) -> str | None:
    return "zstd" if args.codec == "zstd" else None


# -- pack ------------------------------------------------------------------------------------
def cmd_pack(args: argparse.Namespace) -> int:
    from . import nifti

    src, out = Path(args.src), Path(args.output)
    t = time.perf_counter()
    if src.is_dir():
        if args.labels:
            raise UsageError("--labels is for a multi-label file, but SRC is a folder")
        if out.name.endswith(".msk"):
            raise UsageError("a folder of masks packs into an archive: give -o OUT.mska")
        files = nifti.nifti_files(src)
        if not files:
            raise UsageError(f"{src}: no .nii.gz / .nii files in this folder")
        out.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", nifti.MaskResampledWarning)
            names = nifti.folder_to_archive(
                src,
                out,
                codec=_codec(args),
                resample=args.resample,
                allow_float=args.allow_float,
                progress=_progress(args, len(files), "packing"),
            )
        for w in caught:
            if issubclass(w.category, nifti.MaskResampledWarning):
                print(f"medmask pack: note: {w.message}", file=sys.stderr)
        before = sum(f.stat().st_size for f in files)
        after = out.stat().st_size
        _say(
            args,
            f"packed {len(names)} masks from {src} into {out}: {before:,} -> {after:,} bytes "
            f"({before / max(after, 1):.1f}x smaller) in {time.perf_counter() - t:.2f} s",
        )
        return EXIT_OK
    if not src.is_file():
        raise UsageError(f"{src}: no such file or folder")
    if not args.labels:
        raise UsageError(
            f"{src} is a file: give its label table with --labels TABLE "
            "(JSON {name: label}, a JSON list of names, or text), or pack its folder"
        )
    if args.resample:
        raise UsageError("--resample applies to folders of masks (a label map has one grid)")
    table = nifti.read_label_table(args.labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.name.endswith(".msk"):
        nifti.labelmap_to_msk(src, table, out, codec=_codec(args), allow_float=args.allow_float)
        _say(args, f"wrote {out}: one label map, {len(table)} labels, {out.stat().st_size:,} bytes")
    else:
        counts = nifti.labelmap_to_archive(
            src, table, out, codec=_codec(args), allow_float=args.allow_float
        )
        empty = [n for n, c in counts.items() if c == 0]
        _say(
            args,
            f"wrote {out}: {len(counts)} masks ({len(empty)} empty), "
            f"{src.stat().st_size:,} -> {out.stat().st_size:,} bytes",
        )
    return EXIT_OK


# -- pack-tree -------------------------------------------------------------------------------
def _has_nifti(d: Path) -> bool:
    from .nifti import NIFTI_SUFFIXES

    try:
        return any(
            p.name.endswith(NIFTI_SUFFIXES) and not p.name.startswith(".") and p.is_file()
            for p in d.iterdir()
        )
    except OSError:
        return False


def find_cases(root: str | os.PathLike) -> list[Path]:
    """The case folders of a dataset.

    A case is a folder that directly holds NIfTI masks. In TotalSegmentator's layout
    (``CASE/ct.nii.gz`` + ``CASE/segmentations/<organ>.nii.gz``) the
    ``segmentations`` folder is the case and the image beside it is not a mask. A
    ``root`` that directly holds masks is one case.

    Args:
        root: The dataset root, or one case folder.

    Returns:
        The case folders, sorted; hidden folders are skipped.
    """
    root = Path(root)

    def is_case(d: Path) -> bool:
        return _has_nifti(d) and not (d / "segmentations").is_dir()

    if is_case(root):
        return [root]
    found = []
    for dirpath, dirnames, _files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        d = Path(dirpath)
        if d != root and is_case(d):
            found.append(d)
    return sorted(found)


def case_name(root: str | os.PathLike, case: str | os.PathLike) -> str:
    """The archive name (without ``.mska``) of a case: its path below ``root``, made safe.

    ``ROOT/s0001/segmentations`` -> ``s0001``; ``ROOT/site/s0001`` -> ``site__s0001``;
    a root that is itself a case is named after its folder (or the folder above a
    ``segmentations`` folder).
    """
    from .nifti import safe_filename

    root, case = Path(root), Path(case)
    if case == root:
        full = case.resolve()
        parts = [full.parent.name if full.name == "segmentations" else full.name]
    else:
        parts = [p for p in case.relative_to(root).parts if p != "segmentations"]
        parts = parts or [case.name]
    return safe_filename("__".join(parts))


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
        if _is_archive(path):
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
        msg = _one_line(exc)
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


def _pack_case(
    case: str, out: str, codec: str | None, resample: bool, allow_float: bool, force: bool
) -> dict:
    """Pack one case unless it is already packed and verified (runs in a worker process).

    Returns:
        ``{"out", "skipped", "masks", "before", "notes"}``.
    """
    from .nifti import MaskResampledWarning, folder_to_archive, nifti_files

    if not force and _already_packed(Path(case), Path(out)):
        return {"out": out, "skipped": True, "masks": 0, "before": 0, "notes": []}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MaskResampledWarning)
        names = folder_to_archive(
            case, out, codec=codec, resample=resample, allow_float=allow_float
        )
    notes = [str(w.message) for w in caught if issubclass(w.category, MaskResampledWarning)]
    before = sum(f.stat().st_size for f in nifti_files(case))
    return {"out": out, "skipped": False, "masks": len(names), "before": before, "notes": notes}


def _already_packed(case: Path, out: Path) -> bool:
    """Whether ``out`` is newer than every file of ``case``, verifies, and holds their names."""
    from .nifti import nifti_files, strip_suffix

    try:
        files = nifti_files(case)
        if not out.is_file() or out.stat().st_mtime < max(f.stat().st_mtime for f in files):
            return False
        if not verify_file(out)["ok"]:
            return False
        with MaskArchive(out) as ar:
            return ar.all_names() == [strip_suffix(f.name) for f in files]
    except (MedMaskError, OSError, ValueError):
        return False


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _case_error(case: Path, exc: BaseException) -> str:
    msg = _one_line(exc)
    return msg if str(case) in msg else f"{case}: {msg}"


def cmd_pack_tree(args: argparse.Namespace) -> int:
    from .nifti import safe_filename

    root, dest = Path(args.root), Path(args.output)
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    cases = find_cases(root)
    if not cases:
        raise UsageError(f"{root}: no folder with .nii.gz masks found")
    dest.mkdir(parents=True, exist_ok=True)
    codec = _codec(args)
    taken: set[str] = set()
    jobs = [(case, dest / f"{safe_filename(case_name(root, case), taken)}.mska") for case in cases]
    t = time.perf_counter()
    bar = _progress(args, len(jobs), "cases", unit="case")
    results: list[dict] = []
    failed: list[str] = []

    def job_args(case: Path, out: Path) -> tuple:
        return str(case), str(out), codec, args.resample, args.allow_float, args.force

    if args.workers == 1 or len(jobs) <= 1:
        for case, out in bar(jobs):
            try:
                results.append(_pack_case(*job_args(case, out)))
            except Exception as exc:  # noqa: BLE001 - one bad case must not stop the others
                if args.debug:
                    raise
                failed.append(_case_error(case, exc))
    else:
        with ProcessPoolExecutor(max_workers=min(args.workers, len(jobs))) as pool:
            futures = {pool.submit(_pack_case, *job_args(c, o)): c for c, o in jobs}
            for fut in bar(as_completed(futures)):
                try:
                    results.append(fut.result())
                except Exception as exc:  # noqa: BLE001 - includes a worker that died
                    if args.debug:
                        raise
                    failed.append(_case_error(futures[fut], exc))
    packed = [r for r in results if not r["skipped"]]
    skipped = len(results) - len(packed)
    total_in = sum(r["before"] for r in packed)
    total_out = sum(Path(r["out"]).stat().st_size for r in packed)
    masks = sum(r["masks"] for r in packed)
    for r in packed:
        for note in r["notes"]:
            print(f"medmask pack-tree: note: {note}", file=sys.stderr)
    for line in sorted(failed):
        _err(args, line)
    ratio = f", {total_in / total_out:.1f}x smaller" if total_out else ""
    _say(
        args,
        f"{_plural(len(cases), 'case')}: {len(packed)} packed ({masks} masks, {total_in:,} -> {total_out:,} "
        f"bytes{ratio}), {skipped} already packed and verified, {len(failed)} failed, "
        f"in {time.perf_counter() - t:.1f} s -> {dest}",
    )
    return EXIT_FAILED if failed else EXIT_OK


# -- unpack ----------------------------------------------------------------------------------
def cmd_unpack(args: argparse.Namespace) -> int:
    from . import nifti
    from .segmask import SegmentationMask

    src = Path(args.archive)
    if not src.is_file():
        raise UsageError(f"{src}: no such file")
    if args.labelmap:
        if not _is_archive(src):
            raise UsageError("--labelmap exports an archive (.mska); a .msk unpacks with -o DIR")
        lm = Path(args.labelmap)
        lm.parent.mkdir(parents=True, exist_ok=True)
        table, overlap = nifti.archive_to_labelmap(src, lm)
        stem = lm.name.removesuffix(".gz").removesuffix(".nii")
        labels_json = lm.with_name(f"{stem}.labels.json")
        labels_json.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
        _say(args, f"wrote {lm} ({len(table)} labels) and its label table {labels_json}")
        if overlap:
            print(
                f"medmask unpack: note: {overlap:,} voxels belonged to several masks; in the "
                "label map the later mask wins (use -o DIR for one file per mask, lossless)",
                file=sys.stderr,
            )
        elif not args.quiet:
            print("no voxel belongs to two masks: the label map holds every mask exactly")
        return EXIT_OK
    if not args.output:
        raise UsageError("give -o DIR (one .nii.gz per mask) or --labelmap FILE")
    if not _is_archive(src):
        seg = SegmentationMask.load(src)
        out_dir = Path(args.output)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = src.name.removesuffix(".msk")
        target = nifti.segmask_to_nifti(seg, out_dir / f"{nifti.safe_filename(stem)}.nii.gz")
        _say(args, f"wrote {target} ({len(seg.mapping)} labels)")
        return EXIT_OK
    with MaskArchive(src) as ar:
        n = len(ar)
    written = nifti.archive_to_folder(src, args.output, progress=_progress(args, n, "unpacking"))
    renamed = {name: p.name for name, p in written.items() if p.name != f"{name}.nii.gz"}
    _say(
        args,
        f"wrote {len(written)} files to {args.output}"
        + (f" ({len(renamed)} names made safe for the file system)" if renamed else ""),
    )
    if renamed and not args.quiet:
        for name, fname in list(renamed.items())[:20]:
            print(f"  {name!r} -> {fname}")
    return EXIT_OK


# -- ls / info / verify ----------------------------------------------------------------------
def _require_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a .msk/.mska file")


def cmd_ls(args: argparse.Namespace) -> int:
    path = Path(args.archive)
    _require_file(path)
    rows = []
    if not _is_archive(path):
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
    _require_file(path)
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
                from .nifti import space_to_affine

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


def _expand(paths: Sequence[str]) -> list[Path]:
    """Folders expand to the ``.msk``/``.mska`` files below them."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.name.endswith(MASK_SUFFIXES) and f.is_file()
            )
            out.extend(found)
        else:
            out.append(p)
    return out


def cmd_verify(args: argparse.Namespace) -> int:
    files = _expand(args.files)
    if not files:
        raise UsageError(f"no .msk / .mska files in {' '.join(args.files)}")
    results = [verify_file(f) for f in _progress(args, len(files), "verifying", unit="file")(files)]
    bad = [r for r in results if not r["ok"]]
    if args.json:
        print(json.dumps(results, indent=1, ensure_ascii=False))
    else:
        for r in results:
            if r["ok"]:
                note = "" if r["checksums"] else "; version 1 has no checksums: decoded only"
                _say(
                    args, f"ok      {r['file']} (version {r['version']}, {r['masks']} masks{note})"
                )
        if len(results) > 1:
            _say(args, f"{len(results) - len(bad)} of {len(results)} files sound")
    for r in bad:
        print(f"medmask verify: FAILED {r['error']}", file=sys.stderr)
    return EXIT_FAILED if bad else EXIT_OK


# -- convert ---------------------------------------------------------------------------------
def cmd_convert(args: argparse.Namespace) -> int:
    from .segmask import SegmentationMask

    src, out = Path(args.src), Path(args.output)
    _require_file(src)
    codec = "zstd" if args.to == 1 else "bitzstd"
    if out.exists() and src.resolve() == out.resolve():
        raise UsageError("convert writes a new file: give an -o different from SRC")
    out.parent.mkdir(parents=True, exist_ok=True)
    if _is_archive(src):
        with MaskArchive(src) as ar, MaskArchive(out, "w", codec=codec, space=ar.space) as dst:
            for name in _progress(args, len(ar), "converting")(ar.all_names()):
                dst.add_segmask(ar[name], name)
            n = len(ar)
    else:
        SegmentationMask.load(src).save(out, codec=codec)
        n = 1
    _say(
        args,
        f"wrote {out} (version {args.to}, {n} masks): "
        f"{src.stat().st_size:,} -> {out.stat().st_size:,} bytes",
    )
    return EXIT_OK


# -- parser ----------------------------------------------------------------------------------
class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


def _common(suppress: bool) -> argparse.ArgumentParser:
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
    return p


_CODEC_HELP = "bitzstd: format version 2 (default); zstd: version 1, readable by medmask 0.1.x"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``medmask`` command."""
    sub_common = _common(suppress=True)
    p = argparse.ArgumentParser(
        prog="medmask",
        formatter_class=_Formatter,
        description="Pack, inspect, verify and export segmentation masks (.msk / .mska).\n\n"
        "  medmask pack CASE/segmentations -o case.mska     a folder of NIfTI masks -> archive\n"
        "  medmask pack-tree DATASET -o packed/ -w 8        every case folder, in parallel\n"
        "  medmask ls case.mska                             names, labels, voxels, boxes, bytes\n"
        "  medmask verify packed/                           checksums + full decode\n"
        "  medmask unpack case.mska -o restored/            back to one .nii.gz per mask",
        epilog="Exit status: 0 success, 1 a file failed (verification, conversion, unreadable "
        "input), 2 bad usage.\nRun 'medmask COMMAND --help' for a command; see docs/cli.md.",
        parents=[_common(suppress=False)],
    )
    p.add_argument("--version", action="version", version=f"medmask {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            parents=[sub_common],
            help=help,
            description=description,
            formatter_class=_Formatter,
            epilog="Exit status: 0 success, 1 a file failed, 2 bad usage.",
        )

    s = add(
        "pack",
        "pack a folder of NIfTI masks, or a label map, into an archive",
        "Pack a folder of binary NIfTI masks (one file per organ, as TotalSegmentator writes "
        "them; mask names\nfrom file names) into OUT.mska, or a multi-label NIfTI plus --labels "
        "TABLE into OUT.mska (one\nmask per label) or OUT.msk (one label map). All masks must be "
        "on one grid (tolerance 1e-3 mm);\nthe archive appears atomically: on any error nothing "
        "is written.\n\nexamples:\n"
        "  medmask pack s0000/segmentations -o s0000.mska\n"
        "  medmask pack labels.nii.gz --labels classes.json -o case.mska",
    )
    s.add_argument("src", metavar="SRC", help="folder of .nii.gz masks, or a multi-label .nii.gz")
    s.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="the .mska (or .msk) to write"
    )
    s.add_argument(
        "--labels",
        metavar="TABLE",
        help="label table of a multi-label file: JSON {name: label}, JSON {label: name}, "
        "a JSON list of names (label = position + 1), or 'label name' text lines",
    )
    s.add_argument("--codec", choices=["bitzstd", "zstd"], default="bitzstd", help=_CODEC_HELP)
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
    s.set_defaults(func=cmd_pack)

    s = add(
        "pack-tree",
        "pack every case folder of a dataset, in parallel, resumable",
        "Find every folder under ROOT that holds .nii.gz masks (a case; in TotalSegmentator's "
        "layout the\nCASE/segmentations folder is the case and CASE/ct.nii.gz is not a mask) and "
        "pack each into\nDEST/<case>.mska, in parallel processes. A ROOT that directly holds "
        ".nii.gz files is one case.\nResumable: a case whose archive exists, is newer than its "
        "files, verifies and holds the same\nnames is skipped. A case that fails is reported and "
        "the others go on (exit status 1).\n\nexample:\n"
        "  medmask pack-tree Totalsegmentator_dataset/ -o packed/ --workers 8",
    )
    s.add_argument("root", metavar="ROOT", help="dataset root (or a single case folder)")
    s.add_argument("-o", "--output", required=True, metavar="DEST", help="folder for the archives")
    s.add_argument(
        "-w",
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        metavar="N",
        help="parallel processes (default: CPU count, at most 8)",
    )
    s.add_argument("--force", action="store_true", help="repack cases already packed")
    s.add_argument("--codec", choices=["bitzstd", "zstd"], default="bitzstd", help=_CODEC_HELP)
    s.add_argument("--resample", action="store_true", help="as for 'pack'")
    s.add_argument("--allow-float", action="store_true", help="as for 'pack'")
    s.set_defaults(func=cmd_pack_tree)

    s = add(
        "unpack",
        "export an archive (or .msk) to .nii.gz files",
        "Write one <name>.nii.gz per mask into DIR, with the archive's affine (sform and qform), "
        "or one\nmulti-label file with --labelmap (plus FILE.labels.json; voxels claimed by "
        "several masks are\ncounted and reported). Mask names are never used as paths: "
        "'/', '..', NUL and other odd\ncharacters become '_', and nothing is written outside DIR."
        "\n\nexamples:\n"
        "  medmask unpack s0000.mska -o restored/\n"
        "  medmask unpack s0000.mska --labelmap s0000_labels.nii.gz",
    )
    s.add_argument("archive", metavar="ARCHIVE", help="the .mska (or .msk)")
    s.add_argument("-o", "--output", metavar="DIR", help="folder to write into")
    s.add_argument("--labelmap", metavar="FILE", help="write one multi-label .nii.gz instead")
    s.set_defaults(func=cmd_unpack)

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

    s = add(
        "convert",
        "rewrite a file in format version 1 or 2",
        "Rewrite SRC as OUT in the chosen format version: 1 is readable by medmask 0.1.x, 2 is "
        "smaller\nand faster. Also compacts a version-2 archive. OUT appears atomically.\n\n"
        "example:\n  medmask convert old.mska -o new.mska --to 2",
    )
    s.add_argument("src", metavar="SRC", help="a .mska or .msk")
    s.add_argument("-o", "--output", required=True, metavar="OUT", help="the file to write")
    s.add_argument("--to", type=int, choices=[1, 2], default=2, help="target version (default 2)")
    s.set_defaults(func=cmd_convert)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medmask`` console script.

    Args:
        argv: Arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 success, 1 a file failed, 2 bad usage.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        if args.debug:
            raise
        _err(args, str(exc))
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
        _err(args, _one_line(exc))
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
