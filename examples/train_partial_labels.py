"""Train a MONAI UNet on two datasets with different class sets: partial labels.

Two phantom "datasets" name and cover their organs differently:

* dataset A (TotalSegmentator's names) labels ``liver``, ``spleen``, ``kidney_left`` and
  ``kidney_right``;
* dataset B (its own spelling: ``Liver``, ``left kidney``, ``right kidney``) labels the
  liver and the kidneys only, like LiTS and KiTS. Its archives say so in their
  ``annotated`` attribute; their spleen is in the images but was never labelled.

Each dataset gets a catalogue (``medmask.Catalog``); the two are joined into one training
set, mapped onto one scheme (``liver``, ``spleen``, ``kidney``: the kidney class is the
union of the left and right masks, painted on read) and loaded with ``LoadMaskd(...,
scheme=...)``, which returns each case's ``label_available`` (one bool per class). MONAI's
``DiceLoss`` gives one value per case and class (``reduction="none"``); the classes a case
was not annotated for are masked out, so dataset B's unlabelled spleen is never taught as
background.

Run::

    .venv/bin/python examples/train_partial_labels.py                  # 6 iterations
    .venv/bin/python examples/train_partial_labels.py --iterations 20 --out runs/partial
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.losses import DiceLoss
from monai.networks.nets import UNet
from monai.transforms import Compose, EnsureTyped, MapTransform

from medmask import Catalog, MaskArchive
from medmask.phantoms import phantom_case
from medmask.schemes import LabelScheme
from medmask_monai import LoadMaskd

SHAPE = (32, 48, 48)  # (z, y, x) of every phantom
ORGANS = ["liver", "spleen", "kidney_left", "kidney_right", "stomach"]  # in every image
#: what each dataset stores, and under which name (phantom organ -> stored name)
DATASETS = {
    "a": {"liver": "liver", "spleen": "spleen", "kidney_left": "kidney_left",
          "kidney_right": "kidney_right"},
    "b": {"liver": "Liver", "kidney_left": "left kidney", "kidney_right": "right kidney"},
}  # fmt: skip
SCHEME = LabelScheme("abdomen", ["liver", "spleen", "kidney"])


def write_dataset(root: Path, key: str, seeds: range) -> Path:
    """One phantom archive per case under ``root/key/``; dataset B's archives record
    what was annotated (``annotated``), so a missing spleen reads "not annotated"."""
    folder = root / key
    folder.mkdir(parents=True, exist_ok=True)
    names = DATASETS[key]
    for seed in seeds:
        masks, space = phantom_case(seed, SHAPE, organs=ORGANS)
        with MaskArchive(folder / f"{key}_{seed:03d}.mska", "w", space=space) as ar:
            for organ, stored in names.items():
                ar.add(stored, masks[organ])
            if key == "b":
                ar.set_archive_attrs({"annotated": list(names.values())})
    return folder


class PhantomImaged(MapTransform):
    """The synthetic CT of a case (every organ of the phantom, labelled or not), made
    from its seed (the case name's number) on the label's grid."""

    def __init__(self, case_key: str = "case", image_key: str = "image") -> None:
        super().__init__([case_key])
        self.case_key, self.image_key = case_key, image_key

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        seed = int(str(d[self.case_key]).rsplit("_", 1)[-1])
        masks, _ = phantom_case(seed, SHAPE, organs=ORGANS)
        ct = np.random.default_rng(seed).normal(0.0, 0.1, SHAPE).astype(np.float32)
        for k, organ in enumerate(ORGANS):
            ct[masks[organ]] = 0.3 + 0.15 * k
        d[self.image_key] = torch.from_numpy(ct.transpose(2, 1, 0)[None].copy())  # (1, x, y, z)
        return d


def masked_dice(loss_fn: DiceLoss, logits, label, available) -> torch.Tensor:
    """Dice over the classes each case was annotated for only."""
    per_class = loss_fn(logits, label).reshape(available.shape)  # (batch, classes)
    weight = available.to(per_class.dtype)
    return (per_class * weight).sum() / weight.sum().clamp(min=1.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, help="working folder (default: a temporary one)")
    ap.add_argument("--cases", type=int, default=3, help="cases per dataset (default 3)")
    ap.add_argument("--iterations", type=int, default=6, help="training steps (default 6)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    ap.add_argument("--batch-size", type=int, default=2, help="cases per batch (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="medmask_partial_") as tmp:
        root = args.out or Path(tmp)
        t0 = time.perf_counter()
        n = args.cases
        cats = []
        for key, seeds in (("a", range(n)), ("b", range(100, 100 + n))):
            folder = write_dataset(root, key, seeds)
            Catalog.build(folder).write(root / f"{key}.parquet")
            cats.append(Catalog.open(root / f"{key}.parquet"))
        training = cats[0] | cats[1]  # one training set: startup reads two files
        items = training.datalist("label", scheme=SCHEME)
        print(
            f"data: {len(items)} cases from {len(cats)} catalogues in {root} "
            f"({time.perf_counter() - t0:.1f} s); scheme {SCHEME.names()}"
        )
        for d in items[:: max(1, n)]:
            print(f"  {d['case']}: label_available {d['label_available'].astype(int).tolist()}")

        transform = Compose(
            [
                LoadMaskd("label", scheme=SCHEME),  # painted under the scheme + availability
                PhantomImaged(),
                EnsureTyped(["image", "label"], dtype=(torch.float32, torch.int64)),
            ]
        )
        loader = DataLoader(
            Dataset(items, transform),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
        )
        model = UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=len(SCHEME) + 1,
            channels=(8, 16),
            strides=(2,),
            num_res_units=1,
        )
        loss_fn = DiceLoss(
            include_background=False, to_onehot_y=True, softmax=True, reduction="none"
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

        step, losses = 0, []
        t_train = time.perf_counter()
        while step < args.iterations:
            for batch in loader:
                available = batch["label_available"]  # (batch, classes) bool
                optimizer.zero_grad()
                loss = masked_dice(loss_fn, model(batch["image"]), batch["label"], available)
                loss.backward()
                optimizer.step()
                step += 1
                losses.append(loss.item())
                print(
                    f"step {step:3d}  loss {losses[-1]:.4f}  annotated classes "
                    f"{available.sum(dim=0).tolist()} of {len(available)} cases"
                )
                if step >= args.iterations:
                    break
        print(
            f"trained {step} steps in {time.perf_counter() - t_train:.1f} s; "
            f"loss {losses[0]:.4f} -> {losses[-1]:.4f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
