"""The main job on a built-in default: phantoms -> pack-tree -> MONAI DataLoader -> report.

Run ``make demo`` (or ``.venv/bin/python examples/demo.py``). By default it writes a
small synthetic dataset of phantom cases (organ-like ellipsoids and tubes on oblique
grids, as ``.nii.gz`` in both of TotalSegmentator's layouts:
``CASE/segmentations/<organ>.nii.gz`` and ``CASE/<organ>.nii.gz``), packs it with
``medmask pack-tree`` (parallel processes), verifies the archives with
``medmask verify``, then loads every mask both ways through a torch ``DataLoader``
with workers: MONAI's ``LoadImaged`` on the ``.nii.gz`` files, and
``medmask_monai.MaskArchiveDataset`` on the archives. It checks that every mask came
back equal (voxels and affine) and prints a report.

``--src DIR`` uses a real dataset instead (a dataset root, or a single case folder
that directly holds ``.nii.gz`` masks), e.g.
``make demo ARGS="--src ../shared/data/totalseg_s0000"``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

# MONAI announces, when pydicom is installed, that it has no GPU DICOM decoder: not this demo's concern
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")

import torch  # noqa: E402
from monai.transforms import LoadImaged  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from medmask import MaskArchive  # noqa: E402
from medmask.cli import case_name, find_cases  # noqa: E402
from medmask.nifti import nifti_files  # noqa: E402
from medmask.phantoms import ORGANS, write_phantom_dataset  # noqa: E402
from medmask_monai import LoadMaskd, MaskArchiveDataset  # noqa: E402


class NiftiMasks(Dataset):
    """The ``.nii.gz`` masks through MONAI's own ``LoadImaged`` (the usual pipeline)."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.load = LoadImaged("mask", image_only=True, ensure_channel_first=True)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        return self.load({"mask": str(self.files[i])})


def first(batch: list) -> object:
    return batch[0]


def loader(ds: Dataset, workers: int) -> DataLoader:
    return DataLoader(
        ds, batch_size=1, num_workers=workers, collate_fn=first, persistent_workers=False
    )


def timed_pass(ds: Dataset, workers: int) -> float:
    t = time.perf_counter()
    for _item in loader(ds, workers):
        pass
    return time.perf_counter() - t


def median_time(fn, repeat: int = 5) -> float:
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def console_script() -> list[str]:
    exe = Path(sys.executable).with_name("medmask")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "medmask"]


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--src", type=Path, help="a dataset root or a case folder of .nii.gz masks")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("demo_output"),
        help="working folder (default: demo_output)",
    )
    ap.add_argument("--cases", type=int, default=6, help="phantom cases (default 6)")
    ap.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=(64, 160, 160),
        metavar=("Z", "Y", "X"),
        help="phantom grid (default 64 160 160)",
    )
    ap.add_argument("--workers", type=int, default=2, help="processes for packing and loading")
    args = ap.parse_args()

    out = args.out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    print("medmask demo\n")
    if args.src is None:
        src = out / "nifti"
        write_phantom_dataset(src, n_cases=args.cases, shape_zyx=tuple(args.shape), layout="mixed")
        print(
            f"1. wrote {args.cases} phantom cases to {src}: {len(ORGANS)} organs each (ellipsoids, "
            f"a tube), grid {tuple(args.shape)} (z, y, x), oblique; TotalSegmentator's two layouts"
        )
    else:
        src = args.src
        if not src.is_dir():
            print(f"demo: {src} is not a folder", file=sys.stderr)
            return 2
        print(f"1. using the dataset at {src}")
    cases = find_cases(src)
    if not cases:
        print(f"demo: no folder with .nii.gz masks under {src}", file=sys.stderr)
        return 2
    files = [f for c in cases for f in nifti_files(c)]
    before = sum(f.stat().st_size for f in files)

    # 2. pack the whole tree with the console script, in parallel processes
    packed = out / "packed"
    cmd = [*console_script(), "pack-tree", str(src), "-o", str(packed)]
    t = time.perf_counter()
    subprocess.run([*cmd, "--workers", str(args.workers), "--quiet"], check=True)
    pack_s = time.perf_counter() - t
    archives = sorted(packed.glob("*.mska"))
    after = sum(a.stat().st_size for a in archives)
    print(
        f"2. medmask pack-tree --workers {args.workers}: {len(cases)} case(s), {len(files)} .nii.gz "
        f"files -> {len(archives)} archive(s) in {pack_s:.1f} s"
    )
    t = time.perf_counter()
    again = subprocess.run([*cmd, "--workers", str(args.workers)], capture_output=True, text=True)
    print(
        f"   run again (resumable): {again.stdout.strip().split(', in ')[0]} "
        f"({time.perf_counter() - t:.1f} s)"
    )
    verify = subprocess.run([*console_script(), "verify", str(packed), "-q"])
    print(
        f"3. medmask verify {packed}: exit status {verify.returncode} "
        f"({'every checksum and every mask sound' if verify.returncode == 0 else 'FAILED'})"
    )

    # 4. every mask, both ways, through a DataLoader with workers
    by_case = {case_name(src, c): Path(c) for c in cases}
    ds_msk = MaskArchiveDataset(archives)  # items: archives in order, masks in archive order
    nii_files = []
    for a in archives:
        with MaskArchive(a) as ar:
            nii_files += [by_case[a.stem] / f"{n}.nii.gz" for n in ar.all_names()]
    ds_nii = NiftiMasks(nii_files)
    timed_pass(ds_msk, args.workers)  # warm the page cache and the imports of both
    timed_pass(ds_nii, args.workers)
    t_nii = min(timed_pass(ds_nii, args.workers) for _ in range(2))
    t_msk = min(timed_pass(ds_msk, args.workers) for _ in range(2))
    checked = equal = 0
    worst_affine = 0.0
    for a, b in zip(loader(ds_nii, args.workers), loader(ds_msk, args.workers)):
        ref, got = a["mask"], b["mask"]
        checked += 1
        same = ref.shape == got.shape and torch.equal(ref != 0, got != 0)
        equal += int(same)
        worst_affine = max(worst_affine, float((ref.affine - got.affine).abs().max()))
    print(
        f"4. every mask through a DataLoader ({args.workers} workers): LoadImaged on the .nii.gz "
        f"{t_nii:.2f} s, MaskArchiveDataset on the archives {t_msk:.2f} s; "
        f"{equal} of {checked} equal, largest affine difference {worst_affine:.1e}"
    )

    # 5. one training sample: 4 organs of a case as a label map
    case = Path(cases[0])
    archive = packed / f"{case_name(src, case)}.mska"
    with MaskArchive(archive) as ar:
        stored = ar.all_names()
        organs = [n for n in stored if ar.info(n).voxels][:4] or stored[:4]  # non-empty ones
    keys = [f"m{k}" for k in range(len(organs))]
    load_nii = LoadImaged(keys, image_only=True)
    nii_item = {k: str(case / f"{o}.nii.gz") for k, o in zip(keys, organs)}
    load_msk = LoadMaskd("label", names=organs)
    t_nii4 = median_time(lambda: load_nii(nii_item))
    t_msk4 = median_time(lambda: load_msk({"label": str(archive)}))
    label = load_msk({"label": str(archive)})["label"]
    nii = load_nii(nii_item)
    expected = torch.zeros(label.shape[1:], dtype=label.dtype)
    for k, key in enumerate(keys):  # the later name wins where organs overlap
        expected[nii[key] != 0] = k + 1
    sample_equal = torch.equal(label[0], expected) and bool(
        torch.allclose(label.affine, nii[keys[0]].affine.to(label.affine.dtype), atol=1e-3)
    )
    print(
        f"5. a 4-organ label map of {archive.stem} ({len(stored)} masks in its archive): "
        f"LoadImaged x4 {t_nii4 * 1e3:.1f} ms, LoadMaskd {t_msk4 * 1e3:.1f} ms; "
        f"equal: {sample_equal}"
    )

    ok = verify.returncode == 0 and equal == checked and worst_affine < 1e-3 and sample_equal
    rows = [
        ("", ".nii.gz", ".mska", ""),
        ("files", f"{len(files):,}", f"{len(archives):,}", ""),
        ("bytes", f"{before:,}", f"{after:,}", f"{before / after:.1f}x smaller"),
        (
            "load every mask (DataLoader)",
            f"{t_nii:.2f} s",
            f"{t_msk:.2f} s",
            f"{t_nii / t_msk:.1f}x faster",
        ),
        (
            "4-organ label map",
            f"{t_nii4 * 1e3:.1f} ms",
            f"{t_msk4 * 1e3:.1f} ms",
            f"{t_nii4 / t_msk4:.1f}x faster",
        ),
    ]
    print("\nreport")
    for r in rows:
        print(f"  {r[0]:<30} {r[1]:>14} {r[2]:>14}   {r[3]}")
    print(
        f"\n{'OK' if ok else 'FAILED'}: {equal} of {checked} masks came back equal (voxels, shape, "
        f"affine within {max(worst_affine, 1e-16):.0e}); {human(before)} -> {human(after)}. "
        f"Archives in {packed}; {time.perf_counter() - t0:.1f} s in all."
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
