"""Train a MONAI UNet for a few iterations on CPU, with labels read from ``.mska`` archives.

Images come from ``.nii.gz`` through ``LoadImaged``; labels come from one archive per
case through ``medmask_monai.LoadMaskd`` (a handful of organs, merged into a label
map; both kidneys share a label); ``RandCropByPosNegLabeld`` samples patches, and a
``DataLoader`` with 2 workers feeds a small 3-D ``UNet``.

By default the data are generated: phantom cases (organ-like shapes on oblique grids,
TotalSegmentator layout) written as ``.nii.gz``, then each case's masks packed into
one archive. ``--real`` uses the real TotalSegmentator case instead (default
``../shared/data/totalseg_s0000``, 117 masks of a pelvis CT): its masks are packed
into one archive and, since the folder holds no CT, a synthetic image is written on
the masks' grid.

Run::

    .venv/bin/python examples/train_unet.py                 # phantoms, 6 iterations
    .venv/bin/python examples/train_unet.py --real          # the real case
    .venv/bin/python examples/train_unet.py --iterations 20 --workers 4 --out runs/unet
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.transforms import (
    Compose,
    EnsureTyped,
    LoadImaged,
    Orientationd,
    RandCropByPosNegLabeld,
    ScaleIntensityRanged,
)

from medmask import MaskArchive
from medmask.nifti import folder_to_archive, space_to_affine
from medmask.phantoms import write_phantom_dataset
from medmask_monai import LoadMaskd

#: The real case (env ``MEDMASK_REAL_CASE`` points elsewhere).
REAL_CASE = Path(
    os.environ.get(
        "MEDMASK_REAL_CASE",
        Path(__file__).resolve().parents[1].parent / "shared" / "data" / "totalseg_s0000",
    )
)

#: Output label of each organ (several organs may share one).
PHANTOM_ORGANS = {"liver": 1, "spleen": 2, "kidney_left": 3, "kidney_right": 3, "stomach": 4}
REAL_ORGANS = {
    "hip_left": 1,
    "hip_right": 1,
    "femur_left": 2,
    "femur_right": 2,
    "urinary_bladder": 3,
    "colon": 4,
    "iliopsoas_left": 5,
    "iliopsoas_right": 5,
}


def phantom_data(root: Path, n_cases: int) -> list[dict[str, str]]:
    """Phantom cases as ``{"image": ct.nii.gz, "label": labels.mska}`` items."""
    items = []
    for folder in write_phantom_dataset(root, n_cases=n_cases, shape_zyx=(40, 80, 80)):
        # case_XXXX/segmentations/<organ>.nii.gz and case_XXXX/ct.nii.gz
        case = folder.parent if folder.name == "segmentations" else folder
        folder_to_archive(case / "segmentations", case / "labels.mska")
        items.append({"image": str(case / "ct.nii.gz"), "label": str(case / "labels.mska")})
    return items


def real_data(src: Path, root: Path) -> list[dict[str, str]]:
    """The real case packed into one archive, plus a synthetic CT on the masks' grid."""
    archive = root / f"{src.name}.mska"
    folder_to_archive(src, archive)
    with MaskArchive(archive) as ar:
        rng = np.random.default_rng(0)
        ct = rng.normal(-80.0, 25.0, tuple(int(s) for s in ar.space.shape)).astype(np.float32)
        for k, name in enumerate(ar.all_names()):
            crop, box = ar.read_cropped(name)
            if box is not None:
                z0, z1, y0, y1, x0, x1 = box
                ct[z0:z1, y0:y1, x0:x1][crop != 0] = 20.0 + (k % 12) * 15.0
        affine = space_to_affine(ar.space)
    image = root / f"{src.name}_ct.nii.gz"
    nib.save(nib.Nifti1Image(ct.transpose(2, 1, 0), affine), str(image))  # (z,y,x) -> (x,y,z)
    return [{"image": str(image), "label": str(archive)}]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--real",
        nargs="?",
        type=Path,
        const=REAL_CASE,
        default=None,
        help=f"train on a folder of TotalSegmentator masks (default {REAL_CASE})",
    )
    ap.add_argument("--out", type=Path, help="working folder (default: a temporary one)")
    ap.add_argument("--cases", type=int, default=4, help="phantom cases (default 4)")
    ap.add_argument("--iterations", type=int, default=6, help="training steps (default 6)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    ap.add_argument("--batch-size", type=int, default=2, help="cases per batch (default 2)")
    ap.add_argument("--samples", type=int, default=2, help="crops per case (default 2)")
    ap.add_argument("--crop", type=int, nargs=3, default=None, help="crop size (x y z)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="medmask_unet_") as tmp:
        root = args.out or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if args.real is not None:
            if not args.real.is_dir():
                ap.error(f"{args.real}: no such folder")
            items, organs = real_data(args.real, root), REAL_ORGANS
            items = items * max(2, args.batch_size)  # one case: let every worker load it
            crop = args.crop or [64, 64, 32]
        else:
            items, organs = phantom_data(root, args.cases), PHANTOM_ORGANS
            crop = args.crop or [48, 48, 16]
        n_classes = max(organs.values()) + 1
        print(
            f"data: {len(items)} items in {root} ({time.perf_counter() - t0:.1f} s); "
            f"organs -> labels {organs}"
        )

        transform = Compose(
            [
                LoadImaged("image", ensure_channel_first=True),
                # the one line that reads labels from the archive instead of .nii.gz files
                LoadMaskd("label", names=organs, missing="empty"),
                Orientationd(["image", "label"], axcodes="RAS"),
                ScaleIntensityRanged(
                    "image", a_min=-200, a_max=300, b_min=0.0, b_max=1.0, clip=True
                ),
                RandCropByPosNegLabeld(
                    ["image", "label"],
                    label_key="label",
                    spatial_size=crop,
                    pos=2,
                    neg=1,
                    num_samples=args.samples,
                ),
                EnsureTyped(["image", "label"], dtype=(torch.float32, torch.int64)),
            ]
        ).set_random_state(seed=args.seed)
        loader = DataLoader(
            Dataset(items, transform),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            persistent_workers=args.workers > 0,
        )
        model = UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=n_classes,
            channels=(8, 16, 32),
            strides=(2, 2),
            num_res_units=1,
        )
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        step, losses, wait = 0, [], 0.0
        t_train = time.perf_counter()
        while step < args.iterations:
            t_wait = time.perf_counter()
            for batch in loader:
                wait += time.perf_counter() - t_wait
                image, label = batch["image"], batch["label"]
                optimizer.zero_grad()
                loss = loss_fn(model(image), label)
                loss.backward()
                optimizer.step()
                step += 1
                losses.append(loss.item())
                present = sorted(int(v) for v in torch.unique(label))
                print(
                    f"step {step:3d}  loss {losses[-1]:.4f}  batch {tuple(image.shape)}  "
                    f"labels present {present}"
                )
                if step >= args.iterations:
                    break
                t_wait = time.perf_counter()
        total = time.perf_counter() - t_train
        print(
            f"trained {step} steps in {total:.1f} s ({wait:.1f} s waiting for data); "
            f"loss {losses[0]:.4f} -> {losses[-1]:.4f}"
        )
        del loader  # stops the persistent workers before the temporary folder goes
    return 0 if all(np.isfinite(losses)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
