"""The main job on a built-in default: phantoms -> pack-tree -> MONAI DataLoader -> report.

Run ``make demo`` (or ``.venv/bin/python examples/demo.py``). By default it writes a
small synthetic dataset of phantom cases (TotalSegmentator layout, oblique grids),
packs it with ``medmask pack-tree``, loads every mask back through
``medmask_monai`` in a ``DataLoader`` with 2 workers, compares with MONAI's
``LoadImaged`` on the ``.nii.gz`` files, checks that every mask came back equal,
and prints a report. ``--src DIR`` uses a real dataset instead, e.g.
``make demo ARGS="--src ../shared/data/totalseg_s0000"``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.transforms import LoadImaged
from torch.utils.data import DataLoader

from medmask import MaskArchive
from medmask.cli import case_name, find_cases
from medmask.nifti import nifti_files, strip_suffix
from medmask.phantoms import write_phantom_dataset
from medmask_monai import LoadMaskd, MaskArchiveDataset


def median_time(fn, repeat: int = 3) -> float:
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--src",
        type=Path,
        help="a dataset root or case folder of .nii.gz masks (default: phantoms)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("demo_output"),
        help="working folder (default: demo_output)",
    )
    ap.add_argument("--cases", type=int, default=6, help="number of phantom cases")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    args = ap.parse_args()

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    if args.src is None:
        src = out / "nifti"
        write_phantom_dataset(src, n_cases=args.cases)
        print(f"1. wrote {args.cases} phantom cases (8 organs each, oblique grids) to {src}")
    else:
        src = args.src
        print(f"1. using the dataset at {src}")
    cases = find_cases(src)
    files = [f for c in cases for f in nifti_files(c)]
    before = sum(f.stat().st_size for f in files)

    packed = out / "packed"
    cli = Path(sys.executable).with_name("medmask")
    cmd = [
        str(cli) if cli.exists() else sys.executable,
        *([] if cli.exists() else ["-m", "medmask"]),
    ]
    cmd += ["pack-tree", str(src), "-o", str(packed), "--workers", "2", "--quiet"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    pack_s = time.perf_counter() - t
    archives = sorted(packed.glob("*.mska"))
    after = sum(a.stat().st_size for a in archives)
    print(
        f"2. medmask pack-tree: {len(files)} .nii.gz files ({before:,} bytes) -> {len(archives)} archives "
        f"({after:,} bytes), {before / after:.1f}x smaller, in {pack_s:.1f} s"
    )

    # 3. every mask through a multi-worker DataLoader, compared with the NIfTI it came from
    ds = MaskArchiveDataset(archives)
    loader = DataLoader(ds, batch_size=1, num_workers=args.workers, collate_fn=lambda b: b[0])
    t = time.perf_counter()
    by_case = {case_name(src, c): c for c in cases}
    mismatches = checked = 0
    worst_affine = 0.0
    for item in loader:
        case = by_case[Path(item["archive"]).stem]
        img = nib.load(str(case / f"{item['name']}.nii.gz"))
        ref = np.asarray(img.dataobj) != 0
        got = item["mask"][0].numpy() != 0
        checked += 1
        mismatches += int(not np.array_equal(ref, got))
        worst_affine = max(
            worst_affine, float(np.abs(item["mask"].affine.numpy() - img.affine).max())
        )
    loop_s = time.perf_counter() - t
    print(
        f"3. DataLoader ({args.workers} workers) over MaskArchiveDataset: {checked} masks in {loop_s:.2f} s; "
        f"{checked - mismatches} equal to their .nii.gz, {mismatches} different; "
        f"largest affine difference {worst_affine:.1e}"
    )

    # 4. the same labels through LoadImaged (nii.gz) and LoadMaskd (archive)
    case = cases[0]
    organs = [strip_suffix(f.name) for f in nifti_files(case)][:4]
    archive = packed / f"{case_name(src, case)}.mska"
    load_nii = LoadImaged([f"n{k}" for k in range(len(organs))], image_only=True)
    nii_item = {f"n{k}": str(case / f"{o}.nii.gz") for k, o in enumerate(organs)}
    load_msk = LoadMaskd("label", names=organs)
    t_nii = median_time(lambda: load_nii(nii_item))
    t_msk = median_time(lambda: load_msk({"label": str(archive)}))
    label = load_msk({"label": str(archive)})["label"]
    nii = load_nii(nii_item)
    expected = torch.zeros_like(label[0])
    for k in range(len(organs)):  # the later name wins where organs overlap
        expected[nii[f"n{k}"] != 0] = k + 1
    equal = torch.equal(label[0], expected) and torch.allclose(
        label.affine, nii["n0"].affine, atol=1e-3
    )
    with MaskArchive(archive) as ar:
        n_masks = len(ar)
    print(
        f"4. {len(organs)} organs of {case_name(src, case)}: LoadImaged on .nii.gz {t_nii * 1e3:.1f} ms, "
        f"LoadMaskd on the archive ({n_masks} masks inside) {t_msk * 1e3:.1f} ms -> {t_nii / t_msk:.1f}x faster; "
        f"label map equal to the NIfTI one: {equal}"
    )
    ok = mismatches == 0 and worst_affine < 1e-3 and equal
    print(
        f"\n{'OK' if ok else 'FAILED'}: every mask came back equal ({checked} checked) in {time.perf_counter() - t0:.1f} s. "
        f"Archives are in {packed}."
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
