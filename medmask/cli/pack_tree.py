"""``medmask pack-tree``: every case of a dataset, in parallel processes, resumable."""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from ..errors import MedMaskError
from ..storage import MaskArchive
from ._common import (
    CODEC_HELP,
    EXIT_FAILED,
    EXIT_OK,
    AddCommand,
    UsageError,
    codec_arg,
    err,
    one_line,
    plural,
    progress,
    say,
)
from .inspect import verify_file


def _has_nifti(d: Path) -> bool:
    from ..nifti import NIFTI_SUFFIXES

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
    from ..nifti import safe_filename

    root, case = Path(root), Path(case)
    if case == root:
        full = case.resolve()
        parts = [full.parent.name if full.name == "segmentations" else full.name]
    else:
        parts = [p for p in case.relative_to(root).parts if p != "segmentations"]
        parts = parts or [case.name]
    return safe_filename("__".join(parts))


def _pack_case(
    case: str, out: str, codec: str | None, resample: bool, allow_float: bool, force: bool
) -> dict:
    """Pack one case unless it is already packed and verified (runs in a worker process).

    Returns:
        ``{"out", "skipped", "masks", "before", "notes"}``.
    """
    from ..nifti import MaskResampledWarning, folder_to_archive, nifti_files

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
    from ..nifti import nifti_files, strip_suffix

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


def _case_error(case: Path, exc: BaseException) -> str:
    msg = one_line(exc)
    return msg if str(case) in msg else f"{case}: {msg}"


def cmd_pack_tree(args: argparse.Namespace) -> int:
    from ..nifti import safe_filename

    root, dest = Path(args.root), Path(args.output)
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    cases = find_cases(root)
    if not cases:
        raise UsageError(f"{root}: no folder with .nii.gz masks found")
    dest.mkdir(parents=True, exist_ok=True)
    codec = codec_arg(args)
    taken: set[str] = set()
    jobs = [(case, dest / f"{safe_filename(case_name(root, case), taken)}.mska") for case in cases]
    t = time.perf_counter()
    bar = progress(args, len(jobs), "cases", unit="case")
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
        err(args, line)
    ratio = f", {total_in / total_out:.1f}x smaller" if total_out else ""
    say(
        args,
        f"{plural(len(cases), 'case')}: {len(packed)} packed ({masks} masks, {total_in:,} -> {total_out:,} "
        f"bytes{ratio}), {skipped} already packed and verified, {len(failed)} failed, "
        f"in {time.perf_counter() - t:.1f} s -> {dest}",
    )
    return EXIT_FAILED if failed else EXIT_OK


def register(add: AddCommand) -> None:
    """Add this module's subcommands to the parser (``add`` makes one subparser)."""
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
    s.add_argument("--codec", choices=["bitzstd", "zstd"], default="bitzstd", help=CODEC_HELP)
    s.add_argument("--resample", action="store_true", help="as for 'pack'")
    s.add_argument("--allow-float", action="store_true", help="as for 'pack'")
    s.set_defaults(func=cmd_pack_tree)
