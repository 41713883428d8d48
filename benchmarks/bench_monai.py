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
import sys
import time
from collections.abc import Callable
from pathlib import Path

import monai
import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose, LoadImaged, RandSpatialCropd

from medmask import MaskArchive
from medmask.nifti import archive_to_labelmap, folder_to_archive, nifti_files, strip_suffix
from medmask.phantoms import write_phantom_dataset
from medmask_monai import LoadMaskd, MaskArchiveDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _check import require, require_equal  # noqa: E402
from _regions import region  # noqa: E402

#: The real case (env ``MEDMASK_REAL_CASE`` points elsewhere).
REAL_CASE = Path(
    os.environ.get(
        "MEDMASK_REAL_CASE",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "totalseg_s0000",
    )
)


def median_s(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs (the checked run before warmed up)."""
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


def loader_pass(dataset, workers: int, key: str | None = None, crop: bool = False) -> list:
    """Every item once through a DataLoader. With ``key``: what came through, as
    ``(mask name, shape)`` when ``crop`` (random crops), else ``(mask name, voxels)``."""
    seen = []
    for batch in DataLoader(dataset, batch_size=1, num_workers=workers):
        if key is None:
            continue
        for name, x in zip(batch["name"], batch[key]):
            seen.append(
                (strip_suffix(name), tuple(x.shape) if crop else int(torch.count_nonzero(x)))
            )
    return sorted(seen)


def _spatial(t) -> np.ndarray:
    """A loaded volume as a numpy array without the channel axis LoadMaskd adds."""
    a = np.asarray(t)
    return a[0] if a.ndim == 4 and a.shape[0] == 1 else a


def check_row(label: str, ref: dict, got, names: list[str], mode: str) -> None:
    """``LoadMaskd``'s output ``got`` holds what ``LoadImaged`` read (``ref``) from the
    ``.nii.gz`` of ``names``: one channel per mask, a label map of them (later masks
    win, labels 1, 2, ... in that order), or one multi-label file read as it is.

    Raises:
        OutputsDiffer: A channel, a label or the affine differs.
    """
    first = ref[next(iter(ref))]
    require(
        np.allclose(np.asarray(got.affine), np.asarray(first.affine), atol=1e-4),
        f"{label}: affine",
    )
    if mode == "channels":
        require(got.shape[0] == len(names), f"{label}: {got.shape[0]} channels")
        for k, n in enumerate(names):
            require_equal(f"{label}: channel {n}", np.asarray(got[k]) != 0, np.asarray(ref[n]) != 0)
    elif mode == "file":
        require_equal(f"{label}: the label map", _spatial(got), np.asarray(first))
    else:
        want = np.zeros(first.shape, np.uint8)
        for k, n in enumerate(names):
            want[np.asarray(ref[n]) != 0] = k + 1
        require_equal(f"{label}: the label map of {len(names)} masks", _spatial(got), want)


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
        return lambda: load({"label": str(archive)})["label"]

    names = [strip_suffix(f.name) for f in files]
    #: per row: the masks of the reference and how LoadMaskd's output holds them
    checks = [(names, "channels"), (names, "file"), (organs, "labels"), (organs[:1], "labels")]

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
                lambda key=None: loader_pass(Dataset(items, load_nii), w, key and "label"),
                lambda key=None: loader_pass(MaskArchiveDataset(v2), w, key and "mask"),
                lambda key=None: loader_pass(MaskArchiveDataset(v1), w, key and "mask"),
            )
        )
        checks.append((names, "loader"))
        size = [args.crop] * 3
        crop_nii = Compose([load_nii, RandSpatialCropd("label", size, random_size=False)])
        crop_msk = RandSpatialCropd("mask", size, random_size=False)
        rows.append(
            (
                f"the same, each cropped to {args.crop}³ in the workers",
                lambda key=None: loader_pass(Dataset(items, crop_nii), w, key and "label", True),
                lambda key=None: loader_pass(
                    MaskArchiveDataset(v2, transform=crop_msk), w, key and "mask", True
                ),
                lambda key=None: loader_pass(
                    MaskArchiveDataset(v1, transform=crop_msk), w, key and "mask", True
                ),
            )
        )
        checks.append((names, "loader"))

    with MaskArchive(v2) as ar:
        grid = tuple(int(v) for v in ar.space.shape[::-1])
    sizes = (sum(f.stat().st_size for f in files), v2.stat().st_size, v1.stat().st_size)
    head = (
        f"case: {src.name} ({n} masks, grid (x, y, z) {grid})\n"
        f"bytes on disk: {sizes[0]:,} (.nii.gz) / {sizes[1]:,} (.mska v2) / {sizes[2]:,} (.mska v1)\n"
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}, MONAI {monai.__version__}; median of {args.repeat} runs"
    )
    print(head + "\n")
    table = [
        "| load | `LoadImaged` on `.nii.gz` | `LoadMaskd` on `.mska` v2 | speed-up | "
        "`LoadMaskd` on `.mska` v1 | speed-up |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    print("\n".join(table))
    for (label, ref, new2, new1), (row_names, mode) in zip(rows, checks, strict=True):
        # before timing (and as the warm-up run): the archives give what the files give
        if mode == "loader":
            want = ref(key=True)
            for version, f in (("v2", new2), ("v1", new1)):
                require(f(key=True) == want, f"{label}, .mska {version}: items differ")
        else:
            want = ref()
            for version, f in (("v2", new2), ("v1", new1)):
                check_row(f"{label}, .mska {version}", want, f(), row_names, mode)
        t_ref, t2, t1 = (median_s(f, args.repeat) for f in (ref, new2, new1))
        table.append(
            f"| {label} | {fmt(t_ref)} | {fmt(t2)} | **{ratio(t_ref, t2)}** | {fmt(t1)} | "
            f"{ratio(t_ref, t1)} |"
        )
        print(table[-1], flush=True)
    note = (
        "The one-channel-per-mask output of LoadMaskd is allocated zeroed: the pages of empty "
        "masks are only touched by whatever reads them later. The DataLoader rows include "
        "starting the workers and moving every item to the main process (shared memory)."
    )
    print("\n" + note)
    checked = (
        "Before the timed runs, one run of each way was checked: the archives gave what the "
        "`.nii.gz` files give (every channel, label map and affine; every DataLoader item)."
    )
    text = "\n".join([region("monai", "\n".join([head, "", *table])), "", note, checked, ""])
    (out / "bench_monai.md").write_text(text, encoding="utf-8")
    print(f"\n(wrote {out / 'bench_monai.md'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
