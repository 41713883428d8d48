"""MONAI loading: ``LoadImaged`` over a case's ``.nii.gz`` masks vs ``LoadMaskd`` over its archive.

The case's masks are packed into one version-2 and one version-1 archive (and, for the
"one label map" row, exported as one multi-label ``.nii.gz``), then each way of loading
is timed ``--repeat`` times; the medians are printed as a markdown table.

``LoadImaged`` runs with MONAI's defaults (``float32`` output, nibabel reader);
``LoadMaskd`` returns ``uint8``. Times include opening the files. The DataLoader rows
load every mask once through a ``DataLoader`` with ``--workers`` workers (worker start
included): a MONAI ``Dataset`` with ``LoadImaged`` over the files, or a
``MaskArchiveDataset`` over the archive; full volumes, then cropped in the workers
(``RandSpatialCropd``, as training pipelines do) so that moving 10 MB volumes between
processes does not hide the loading.

Run::

    .venv/bin/python benchmarks/bench_monai.py                       # the real case if present
    .venv/bin/python benchmarks/bench_monai.py --src DIR --repeat 5  # any folder of masks
    .venv/bin/python benchmarks/bench_monai.py --phantom             # a generated case
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import monai
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, LoadImaged, RandSpatialCropd

from medmask import MaskArchive
from medmask.nifti import archive_to_labelmap, folder_to_archive, nifti_files, strip_suffix
from medmask.phantoms import write_phantom_dataset
from medmask_monai import LoadMaskd, MaskArchiveDataset

#: The real case (env ``MEDMASK_REAL_CASE`` points elsewhere).
REAL_CASE = Path(
    os.environ.get(
        "MEDMASK_REAL_CASE",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "totalseg_s0000",
    )
)


def median_s(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs (after one untimed warm-up run)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ratio(a: float, b: float) -> str:
    r = a / b
    return f"{r:.1f}x" if r < 10 else f"{r:,.0f}x"


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms" if seconds < 10 else f"{seconds:,.2f} s"


def pick_organs(archive: Path, k: int) -> list[str]:
    """The ``k`` largest non-empty masks (a training set would pick organs that are there)."""
    with MaskArchive(archive) as ar:
        sizes = [(ar.info(n).voxels or int(ar.read_array(n).any()), n) for n in ar.all_names()]
    return [n for v, n in sorted(sizes, reverse=True)[:k] if v]


def loader_pass(dataset, workers: int) -> int:
    n = 0
    for batch in DataLoader(dataset, batch_size=1, num_workers=workers):
        n += len(batch["name"]) if "name" in batch else 1
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--src", type=Path, help=f"a folder of .nii.gz masks (default {REAL_CASE})")
    ap.add_argument("--phantom", action="store_true", help="use a generated case")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per cell (default 3)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    ap.add_argument("--organs", type=int, default=5, help="organs of the 'few organs' row")
    ap.add_argument("--no-loader", action="store_true", help="skip the DataLoader rows")
    ap.add_argument("--crop", type=int, default=96, help="crop edge of the last row (default 96)")
    ap.add_argument("--out", type=Path, default=Path("bench_output") / "monai")
    args = ap.parse_args(argv)

    out = args.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if args.phantom or (args.src is None and not REAL_CASE.is_dir()):
        src = write_phantom_dataset(out / "phantom", n_cases=1, layout="flat")[0]
    else:
        src = args.src or REAL_CASE
    files = nifti_files(src)
    if not files:
        ap.error(f"{src}: no .nii.gz masks")
    v2, v1 = out / "case_v2.mska", out / "case_v1.mska"
    folder_to_archive(src, v2)
    folder_to_archive(src, v1, codec="zstd")
    labelmap = out / "labelmap.nii.gz"
    archive_to_labelmap(v2, labelmap)
    organs = pick_organs(v2, args.organs)
    by_name = {strip_suffix(f.name): str(f) for f in files}
    n = len(files)

    def nii(paths: dict[str, str]) -> Callable[[], object]:
        load = LoadImaged(list(paths))
        return lambda: load(paths)

    def msk(archive: Path, **kw) -> Callable[[], object]:
        load = LoadMaskd("label", **kw)
        return lambda: load({"label": str(archive)})

    rows: list[tuple[str, Callable, Callable, Callable]] = [
        (
            f"all {n} masks, one channel each",
            nii(by_name),
            msk(v2, mode="channels"),
            msk(v1, mode="channels"),
        ),
        (
            f"all {n} masks as one label map (`.nii.gz`: one multi-label file)",
            nii({"label": str(labelmap)}),
            msk(v2),
            msk(v1),
        ),
        (
            f"{len(organs)} organs as a label map",
            nii({o: by_name[o] for o in organs}),
            msk(v2, names=organs),
            msk(v1, names=organs),
        ),
        (
            f"1 organ ({organs[0]})",
            nii({organs[0]: by_name[organs[0]]}),
            msk(v2, names=organs[:1]),
            msk(v1, names=organs[:1]),
        ),
    ]
    if not args.no_loader:
        w = args.workers
        items = [{"label": str(f), "name": f.name} for f in files]
        load_nii = LoadImaged("label", ensure_channel_first=True)
        rows.append(
            (
                f"all {n} masks through a DataLoader ({w} workers), full volumes",
                lambda: loader_pass(Dataset(items, load_nii), w),
                lambda: loader_pass(MaskArchiveDataset(v2), w),
                lambda: loader_pass(MaskArchiveDataset(v1), w),
            )
        )
        size = [args.crop] * 3
        crop_nii = Compose([load_nii, RandSpatialCropd("label", size, random_size=False)])
        crop_msk = RandSpatialCropd("mask", size, random_size=False)
        rows.append(
            (
                f"the same, each cropped to {args.crop}³ in the workers",
                lambda: loader_pass(Dataset(items, crop_nii), w),
                lambda: loader_pass(MaskArchiveDataset(v2, transform=crop_msk), w),
                lambda: loader_pass(MaskArchiveDataset(v1, transform=crop_msk), w),
            )
        )

    with MaskArchive(v2) as ar:
        grid = tuple(int(v) for v in ar.space.shape[::-1])
    sizes = (sum(f.stat().st_size for f in files), v2.stat().st_size, v1.stat().st_size)
    print(
        f"case: {src} ({n} masks, grid (x, y, z) {grid})\n"
        f"bytes on disk: {sizes[0]:,} (.nii.gz) / {sizes[1]:,} (.mska v2) / {sizes[2]:,} (.mska v1)\n"
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}, MONAI {monai.__version__}; median of {args.repeat} runs\n"
    )
    print(
        "| load | `LoadImaged` on `.nii.gz` | `LoadMaskd` on `.mska` v2 | speed-up | "
        "`LoadMaskd` on `.mska` v1 | speed-up |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, ref, new2, new1 in rows:
        t_ref, t2, t1 = (median_s(f, args.repeat) for f in (ref, new2, new1))
        print(
            f"| {label} | {fmt(t_ref)} | {fmt(t2)} | **{ratio(t_ref, t2)}** | {fmt(t1)} | "
            f"{ratio(t_ref, t1)} |",
            flush=True,
        )
    print(
        "\nThe one-channel-per-mask output of LoadMaskd is allocated zeroed: the pages of empty "
        "masks are only touched by whatever reads them later. The DataLoader rows include "
        "starting the workers and moving every item to the main process (shared memory)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
