"""Train a 3-D UNet on patches, nnU-Net style, without ever loading a whole image or label map.

The steps of ``docs/training.md``, end to end:

1. data: phantom cases (organ-like shapes on oblique grids, TotalSegmentator layout:
   ``case_XXXX/segmentations/<organ>.nii.gz`` beside ``case_XXXX/ct.nii.gz``);
2. labels: each case's masks packed into one ``.mska`` (``medmask pack``; the only label
   preprocessing);
3. images: the ``.nii.gz`` CTs converted once for window reads (``medmask convert-images``,
   here to blosc2 ``.b2nd`` with nnU-Net's chunking for the patch size);
4. patches: ``medmask_monai.PatchDataset`` (centres from each archive's index, nnU-Net's
   policy: a third on an organ present, the rest anywhere; image and label windows read by
   slicing) in the ``DataLoader`` of ``PatchDataset.loader`` (persistent workers, each
   building whole batches);
5. a small MONAI ``UNet`` trained for a few iterations (Dice + cross-entropy), the loss and
   the loader's share of the time printed.

Run::

    .venv/bin/python examples/train_patches.py                      # 4 phantoms, 8 steps
    .venv/bin/python examples/train_patches.py --iterations 50 --patch 48 48 48 --workers 4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet

from medmask.cli import main as medmask
from medmask.patches import NnUNetPolicy, PatchCase
from medmask.phantoms import write_phantom_dataset
from medmask_monai import PatchDataset

#: The organs trained, labelled 1..N (a later organ wins where two overlap).
ORGANS = ["liver", "spleen", "kidney_left", "kidney_right", "stomach"]


def prepare(root: Path, n_cases: int, patch: tuple[int, int, int]) -> list[PatchCase]:
    """Phantom cases -> one ``.mska`` per case and the CTs as ``.b2nd``: the training cases."""
    folders = write_phantom_dataset(root / "raw", n_cases=n_cases, shape_zyx=(40, 80, 80))
    cases = []
    for seg in folders:
        archive = root / "labels" / f"{seg.parent.name}.mska"
        archive.parent.mkdir(exist_ok=True)
        if medmask(["-q", "pack", str(seg), "-o", str(archive)]) != 0:
            raise SystemExit(f"packing {seg} failed")
        cases.append(PatchCase(root / "images" / seg.parent.name / "ct.b2nd", archive))
    convert = ["-q", "convert-images", str(root / "raw"), "-o", str(root / "images")]
    if medmask([*convert, "--to", "b2nd", "--pattern", "*/ct.nii.gz", "--patch", *map(str, patch)]):
        raise SystemExit("converting the images failed")
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, help="working folder (default: a temporary one)")
    ap.add_argument("--cases", type=int, default=4, help="phantom cases (default 4)")
    ap.add_argument("--iterations", type=int, default=8, help="training steps (default 8)")
    ap.add_argument("--patch", type=int, nargs=3, default=[32, 48, 48], help="z y x (32 48 48)")
    ap.add_argument("--batch-size", type=int, default=2, help="patches per batch (default 2)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    patch = tuple(args.patch)

    torch.manual_seed(args.seed)  # with PatchDataset's seed: reproducible patches
    with tempfile.TemporaryDirectory(prefix="medmask_patches_") as tmp:
        root = args.out or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        cases = prepare(root, args.cases, patch)
        ds = PatchDataset(
            cases,
            patch,
            names=ORGANS,  # labels 1..5; organs absent from a case are empty there
            policy=NnUNetPolicy(foreground=1 / 3),
            samples_per_case=max(1, args.iterations * args.batch_size // len(cases)),
            seed=args.seed,
        )
        print(f"data: {ds!r} in {root}")
        loader = ds.loader(  # a shuffled DataLoader; each worker builds whole batches
            args.batch_size, num_workers=args.workers, persistent_workers=args.workers > 0
        )
        model = UNet(3, 1, len(ORGANS) + 1, channels=(8, 16, 32), strides=(2, 2), num_res_units=1)
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        step, losses, wait = 0, [], 0.0
        t_train = time.perf_counter()
        while step < args.iterations:
            t_wait = time.perf_counter()
            for batch in loader:
                wait += time.perf_counter() - t_wait
                image = (batch["image"] + 100.0) / 200.0  # the phantoms' intensities to ~[0, 1]
                label = batch["label"].long()
                optimizer.zero_grad()
                loss = loss_fn(model(image), label)
                loss.backward()
                optimizer.step()
                step += 1
                losses.append(loss.item())
                print(
                    f"step {step:3d}  loss {losses[-1]:.4f}  batch {tuple(image.shape)}  "
                    f"centres {', '.join(batch['class'][i] or batch['kind'][i] for i in range(len(batch['kind'])))}"
                )
                if step >= args.iterations:
                    break
                t_wait = time.perf_counter()
        total = time.perf_counter() - t_train
        print(
            f"trained {step} steps in {total:.1f} s ({wait:.1f} s waiting for patches); "
            f"loss {losses[0]:.4f} -> {losses[-1]:.4f}"
        )
        del loader  # stops the persistent workers before the temporary folder goes
    return 0 if all(np.isfinite(losses)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
