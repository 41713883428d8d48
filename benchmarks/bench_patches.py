"""Patches per second for training: MONAI, nnU-Net v2, TorchIO and medmask, in one run (issue 18).

Data: ``--cases`` synthetic TotalSegmentator-like cases made from the real case
(``../shared/data/totalseg_s0000``: 117 masks on a 294x192x179 grid; case 0 is it, the others
are flipped and shifted copies) with a synthetic body-like CT (``int16`` HU). Each peer gets
the case in the layout it is used with (``prepare``), and every peer runs in a fresh process
(imports, memory and workers of one do not touch the others'), one after the other:

1. MONAI's standard chain on what users have: ``LoadImaged`` on the CT ``.nii.gz`` and the
   label ``.nii.gz`` (or the 5 organs' ``.nii.gz`` + ``ConcatItemsd``), then
   ``RandCropByPosNegLabeld`` (pos 1, neg 2: a third foreground; ``num_samples=2``: one item
   is a batch of 2), in a ``monai.data.DataLoader``;
2. nnU-Net v2's own loader on its own preprocessed data: ``nnUNetDatasetBlosc2.save_case`` with
   the chunks and blocks ``comp_blosc2_params`` gives for the patch (as ``run_case_save``:
   ``float32`` CT normalised by its ``CTNormalization``, ``int16`` label map), class locations
   from ``DefaultPreprocessor._sample_foreground_locations``, ``nnUNetDataLoader`` with a
   ``LabelManager`` of the classes, ``oversample_foreground_percent=0.33`` and
   ``probabilistic_oversampling=True`` (with its default rule a batch of 2 has 1 forced
   foreground sample, i.e. a half; the probabilistic rule gives the third the issue asks), no
   augmentation. Two processes, measured two ways: one ``nnUNetDataLoader`` per worker of a
   torch ``DataLoader`` (an ``IterableDataset``, ``batch_size=None``, NumPy seeded per
   worker), and nnU-Net's own ``NonDetMultiThreadedAugmenter`` as its trainer starts it. The
   5 organs come from its region mechanism: a 5-label map and batchgeneratorsv2's
   ``ConvertSegmentationToRegionsTransform`` as the loader's transform. Its single-process
   time per batch is reported too;
3. TorchIO: ``SubjectsDataset`` of ``ScalarImage`` (CT ``.nii.gz``) + ``LabelMap`` (the label
   map ``.nii.gz``; for the organs a 5-label map turned into channels by ``OneHot``), a
   ``Queue`` (``num_workers`` workers load subjects, patches are cut in the main process, as
   TorchIO requires; ``samples_per_volume=2`` like MONAI's ``num_samples``) with a
   ``LabelSampler`` (label probabilities: background 2/3, the classes present 1/3 shared);
4. medmask: ``medmask_peer`` below, the slot of issue 18's patch dataset. Until it is filled
   the table says "not yet implemented" (no figure is made up).

Measured per peer and task ("117 classes as a label map"; "5 organs as channels"): patches/s
of a ``--workers``-worker loader giving batches of 2 patches of ``--patch``³ (median of
``--repeat`` blocks of ``--batches`` batches, after ``--warmup`` batches that include starting
the workers), peak RSS (and USS, the memory only that process holds) of each worker and of the
main process (psutil, polled), and bytes on disk per case for each layout.

Before timing, each peer is checked on a copy of cases 0 and 1 whose image is a position code
(``+(1 + flat index)`` for case 0, ``-(1 + flat index)`` for case 1, as ``float32``): every
image patch must be a box of the grid, and its label patch must equal the ground truth at that
box, voxel for voxel (label map, or each organ channel). The CT each peer reads is compared
with the CT written. The share of patches centred on foreground is reported from those batches.

Usage::

    .venv/bin/python benchmarks/bench_patches.py                       # ~6 min on 2 cores
    .venv/bin/python benchmarks/bench_patches.py --cases 2 --repeat 1 --batches 4 --peers nnunet
    .venv/bin/python benchmarks/bench_patches.py --work /tmp/patches   # keep (and reuse) the data

Writes the table to stdout and to ``--out``/bench_patches.md (default ``bench_output/``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _patchcase import (  # noqa: E402
    REAL_CASE,
    Case,
    load_real_case,
    nifti_write,
    nnunet_normalise,
    nnunet_save,
    position_code,
    publish,
    synthetic_ct,
    variant,
)
from _regions import region  # noqa: E402

ORGANS = ["urinary_bladder", "colon", "femur_left", "femur_right", "iliopsoas_left"]
TASKS = {"labelmap": "117 classes as a label map", "organs": "5 organs as channels"}
PEERS = {
    "monai": "MONAI: `LoadImaged` (.nii.gz) + `RandCropByPosNegLabeld`",
    "nnunet": "nnU-Net v2: `nnUNetDataLoader` on its blosc2 data, one per torch worker",
    "nnunet-mt": "nnU-Net v2: the same, in its own `NonDetMultiThreadedAugmenter`",
    "torchio": "TorchIO: `Queue` + `LabelSampler` (.nii.gz)",
    "medmask": "medmask: `PatchDataset`, `.mska` labels + nnU-Net's `.b2nd` image",
    "medmask-nii": "medmask: `PatchDataset`, `.mska` labels + uncompressed `.nii` image",
    "medmask-coords": "medmask: the same as `.b2nd`, class voxels from `.fgcoords.npz`",
}
CHECK_CASES = 2
MANIFEST = "manifest.json"


# ============================================================================================
# 4. THE MEDMASK SLOT: filled by the helper who builds issue 18's patch dataset.


#: medmask's rows: the image layout and how class voxels are drawn.
MEDMASK_VARIANTS = {
    "medmask": ("b2nd", "exact"),
    "medmask-nii": ("nii", "exact"),
    "medmask-coords": ("b2nd", "coords"),
}


def medmask_peer(
    task: str, cases: list[dict], check: bool, cfg: argparse.Namespace, peer: str = "medmask"
) -> Run:
    """medmask's ``PatchDataset``: labels read from each case's ``.mska`` by window, centres
    from its index (nnU-Net's policy: a third on a class present, chosen uniformly, the rest
    anywhere; patches padded past the grid as nnU-Net pads), the image sliced from nnU-Net's
    ``.b2nd`` (``case["nnunet_image"]``, ``float32`` as nnU-Net normalised it; it records no
    grid, so its shape is checked against the archive's) or from the uncompressed ``.nii``
    (``case["ct_nii"]``, ``int16`` HU, read as ``float32``); ``cfg.workers`` workers of the
    torch ``DataLoader`` (persistent) ``PatchDataset.loader`` gives: batches of 2, each built
    in a worker. ``medmask-coords`` draws class voxels from nnU-Net-style coordinates written
    beside each archive (``save_foreground_coords``: label preprocessing the other medmask rows
    do not need) instead of the decoded masks.

    Args:
        task: ``"labelmap"``: every mask, labels 1..117 in archive order, a later mask wins an
            overlap (``LoadMask``'s label map); ``"organs"``: the masks ``cfg.organs`` as
            channels, in that order.
        cases: One dict per case, written by :func:`write_case` (with ``check=True`` the first
            two cases, whose image to read is their position code: ``check_b2nd`` /
            ``check_nii``).
        check: Build the loader for the equality check (position-code images), not for timing.
        cfg: The benchmark's options.
        peer: Which medmask row (:data:`MEDMASK_VARIANTS`).

    Returns:
        A :class:`Run`.
    """
    import torch

    from medmask.patches import NnUNetPolicy, PatchCase, coords_path, save_foreground_coords
    from medmask_monai import PatchDataset

    layout, foreground = MEDMASK_VARIANTS[peer]
    key = {
        "b2nd": "check_b2nd" if check else "nnunet_image",
        "nii": "check_nii" if check else "ct_nii",
    }
    if foreground == "coords":
        for c in cases:
            if not coords_path(c["mska"]).exists():
                save_foreground_coords(c["mska"])
    need = 2 * (cfg.warmup + cfg.repeat * cfg.batches + cfg.check_batches) + 32
    ds = PatchDataset(
        [PatchCase(c[key[layout]], c["mska"]) for c in cases],
        cfg.patch,
        names=cfg.names if task == "labelmap" else cfg.organs,
        mode="labelmap" if task == "labelmap" else "channels",
        policy=NnUNetPolicy(1 / 3),
        samples_per_case=-(-2 * need // len(cases)),
        seed=cfg.seed,
        foreground=foreground,
    )
    torch.manual_seed(cfg.seed)
    loader = ds.loader(2, num_workers=cfg.workers, persistent_workers=True)  # shuffled
    return Run(
        loader,
        lambda b: (b["image"].numpy(), b["label"].numpy()),
        lambda b: int(b["image"].shape[0]),
    )


# ============================================================================================
# data


def prepare(work: Path, n_cases: int, organs: list[str], patch: int) -> dict:
    """Write every layout of every case into ``work`` (skipped when its manifest matches)."""
    from tqdm import tqdm

    key = {"cases": n_cases, "organs": organs, "patch": patch, "version": 2}
    man_path = work / MANIFEST
    if man_path.exists():
        man = json.loads(man_path.read_text())
        if man.get("key") == key:
            return man
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    real = load_real_case()
    present: set[int] = set()
    cases = []
    for k in tqdm(range(n_cases), desc="writing cases", file=sys.stderr):
        case = variant(real, k)
        cases.append(write_case(work, k, case, organs, patch, k < CHECK_CASES))
        present |= {i for i, n in enumerate(case.names, start=1) if case.crops[n] is not None}
    man = {
        "key": key,
        "names": real.names,
        "organs": organs,
        "present": sorted(present),
        "cases": cases,
    }
    man_path.write_text(json.dumps(man, indent=1))
    return man


def write_case(work: Path, k: int, case: Case, organs: list[str], patch: int, check: bool) -> dict:
    """One case in every layout; ground truth (``.npy``) and position-code images if ``check``."""
    from medmask import MaskArchive

    d = work / f"case{k}"
    d.mkdir()
    ct = synthetic_ct(case, seed=k)
    label = case.label_map(dtype=np.uint8)
    organ_map = case.label_map(organs, dtype=np.uint8)
    out = {"k": k, "dir": str(d)}
    out["ct_nii_gz"], out["ct_nii"] = str(d / "ct.nii.gz"), str(d / "ct.nii")
    nifti_write(d / "ct.nii.gz", ct, case.affine)
    nifti_write(d / "ct.nii", ct, case.affine)
    out["label_nii_gz"] = str(d / "label.nii.gz")
    nifti_write(d / "label.nii.gz", label, case.affine)
    out["organs5_nii_gz"] = str(d / "organs5.nii.gz")
    nifti_write(d / "organs5.nii.gz", organ_map, case.affine)
    out["organ_files"] = []
    for name in organs:
        f = d / f"{name}.nii.gz"
        nifti_write(f, case.full(name).astype(np.uint8), case.affine)
        out["organ_files"].append(str(f))
    out["mska"] = str(d / "case.mska")
    with MaskArchive(d / "case.mska", "w", space=case.space) as ar:
        for name in case.names:
            ar.add(name, case.full(name))
    data = nnunet_normalise(ct, label)
    maps = {"labelmap": (label, len(case.names)), "organs": (organ_map, len(organs))}
    for task, (seg, n_labels) in maps.items():
        folder = work / f"nnunet_{task}"  # one nnU-Net dataset folder per task, as nnU-Net has
        out[f"nnunet_{task}_files"] = nnunet_save(folder, f"case{k}", data, seg, n_labels, patch)
    out["nnunet_image"] = out["nnunet_labelmap_files"][0]
    if check:
        code = position_code(case.shape) * (1 if k == 0 else -1)
        np.save(d / "gt_label.npy", label)
        np.save(d / "gt_organs.npy", organ_map)
        np.save(d / "gt_ct.npy", ct)
        out["check_nii_gz"], out["check_nii"] = str(d / "check.nii.gz"), str(d / "check.nii")
        nifti_write(d / "check.nii.gz", code, case.affine)
        nifti_write(d / "check.nii", code, case.affine)
        for task, (seg, n_labels) in maps.items():
            files = nnunet_save(
                work / f"check_nnunet_{task}", f"case{k}", code, seg, n_labels, patch
            )
            out[f"check_nnunet_{task}_files"] = files
        out["check_b2nd"] = out["check_nnunet_labelmap_files"][0]
    return out


def disk_bytes(man: dict) -> list[tuple[str, float, float, float]]:
    """Mean bytes per case: (layout, image, labels of the 117 classes, labels of the 5 organs)."""

    def mean(fn: Callable[[dict], list[str]]) -> float:
        return float(np.mean([sum(Path(p).stat().st_size for p in fn(c)) for c in man["cases"]]))

    def seg(task: str) -> Callable[[dict], list[str]]:
        return lambda c: c[f"nnunet_{task}_files"][1:]

    return [
        (
            "MONAI: CT `.nii.gz`; label map `.nii.gz`; the 5 organs' `.nii.gz`",
            mean(lambda c: [c["ct_nii_gz"]]),
            mean(lambda c: [c["label_nii_gz"]]),
            mean(lambda c: c["organ_files"]),
        ),
        (
            "TorchIO: CT `.nii.gz`; label map `.nii.gz`; a 5-label map `.nii.gz`",
            mean(lambda c: [c["ct_nii_gz"]]),
            mean(lambda c: [c["label_nii_gz"]]),
            mean(lambda c: [c["organs5_nii_gz"]]),
        ),
        (
            "nnU-Net: `.b2nd` (float32); `_seg.b2nd` + `.pkl` (per dataset)",
            mean(lambda c: [c["nnunet_image"]]),
            mean(seg("labelmap")),
            mean(seg("organs")),
        ),
        (
            "medmask: `.mska` (117 masks, overlaps kept) + CT as nnU-Net's `.b2nd`",
            mean(lambda c: [c["nnunet_image"]]),
            mean(lambda c: [c["mska"]]),
            mean(lambda c: [c["mska"]]),
        ),
        (
            "medmask: `.mska` + CT as uncompressed `.nii` (int16)",
            mean(lambda c: [c["ct_nii"]]),
            mean(lambda c: [c["mska"]]),
            mean(lambda c: [c["mska"]]),
        ),
        (
            "medmask: `.mska` + `.fgcoords.npz` (nnU-Net-style coordinates, optional)",
            mean(lambda c: [c["nnunet_image"]]),
            mean(lambda c: [c["mska"], *_coords_file(c)]),
            mean(lambda c: [c["mska"], *_coords_file(c)]),
        ),
    ]


def _coords_file(case: dict) -> list[str]:
    """The case's ``.fgcoords.npz`` (written for the ``medmask-coords`` row), if any."""
    from medmask.patches import coords_path

    p = coords_path(case["mska"])
    return [str(p)] if p.exists() else []


# ============================================================================================
# peers: each returns a Run (the loader, and how to read its batches)


class Run:
    """A peer's loader, ``to_arrays(batch)`` -> ``(image, label)`` in ``(B, C, z, y, x)``, and
    ``count(batch)`` -> patches in the batch."""

    def __init__(self, loader: Iterable, to_arrays: Callable, count: Callable, close=None):
        self.loader, self.to_arrays, self.count = loader, to_arrays, count
        self.close = close or (lambda: None)


def xyz(t) -> np.ndarray:
    """A ``(B, C, x, y, z)`` batch (MONAI, TorchIO: NIfTI order) as ``(B, C, z, y, x)``."""
    return np.asarray(t).transpose(0, 1, 4, 3, 2)


def long_list(items: list, cfg: argparse.Namespace) -> list:
    """``items`` repeated (shuffled) enough for the whole run: no epoch ends while timing."""
    need = 2 * (cfg.warmup + cfg.repeat * cfg.batches + cfg.check_batches) + 32
    rng = np.random.default_rng(cfg.seed)
    return [items[i] for i in rng.permutation(np.resize(np.arange(len(items)), need))]


def monai_peer(task: str, cases: list[dict], check: bool, cfg: argparse.Namespace) -> Run:
    from monai.data import DataLoader, Dataset
    from monai.transforms import (
        Compose,
        ConcatItemsd,
        DeleteItemsd,
        LoadImaged,
        RandCropByPosNegLabeld,
    )

    organ_keys = [f"organ{i}" for i in range(len(cfg.organs))]
    items = []
    for c in cases:
        item = {"image": c["check_nii_gz"] if check else c["ct_nii_gz"]}
        if task == "labelmap":
            item["label"] = c["label_nii_gz"]
        else:
            item.update(zip(organ_keys, c["organ_files"]))
        items.append(item)
    keys = ["image", "label"]
    if task == "labelmap":
        load = [LoadImaged(keys, ensure_channel_first=True)]
    else:
        load = [
            LoadImaged(["image", *organ_keys], ensure_channel_first=True),
            ConcatItemsd(organ_keys, "label"),
            DeleteItemsd(organ_keys),
        ]
    crop = RandCropByPosNegLabeld(keys, "label", (cfg.patch,) * 3, pos=1, neg=2, num_samples=2)
    ds = Dataset(long_list(items, cfg), Compose([*load, crop]))
    loader = DataLoader(ds, batch_size=1, num_workers=cfg.workers, shuffle=False)
    return Run(
        loader,
        lambda b: (xyz(b["image"]), xyz(b["label"])),
        lambda b: int(b["image"].shape[0]),
    )


def _nnunet_loader(task: str, files: list[list[str]], cfg: argparse.Namespace):
    """nnU-Net's own ``nnUNetDataLoader`` over its dataset folder, configured as its trainer does
    (no augmentation; a region transform for the organs' channels)."""
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    folder = str(Path(files[0][0]).parent)
    idents = [Path(f[0]).name[: -len(".b2nd")] for f in files]
    names = cfg.names if task == "labelmap" else cfg.organs
    labels = {"background": 0, **{n: i for i, n in enumerate(names, start=1)}}
    transform = None
    if task == "organs":
        from batchgeneratorsv2.transforms.utils.seg_to_regions import (
            ConvertSegmentationToRegionsTransform,
        )

        transform = ConvertSegmentationToRegionsTransform(list(range(1, len(names) + 1)))
    return nnUNetDataLoader(
        nnUNetDatasetBlosc2(folder, idents),
        2,
        (cfg.patch,) * 3,
        (cfg.patch,) * 3,
        LabelManager(labels, regions_class_order=None),
        oversample_foreground_percent=0.33,
        probabilistic_oversampling=True,
        transforms=transform,
    )


def _nnunet_files(task: str, cases: list[dict], check: bool) -> list[list[str]]:
    key = f"check_nnunet_{task}_files" if check else f"nnunet_{task}_files"
    return [c[key] for c in cases]


def _nnunet_arrays(b) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(b["data"]), np.asarray(b["target"])


def nnunet_peer(task: str, cases: list[dict], check: bool, cfg: argparse.Namespace) -> Run:
    """One ``nnUNetDataLoader`` per torch DataLoader worker; NumPy seeded per worker (nnU-Net
    draws boxes from NumPy's global generator, which fork would otherwise duplicate)."""
    import torch
    from torch.utils.data import DataLoader, IterableDataset, get_worker_info

    files = _nnunet_files(task, cases, check)

    class Stream(IterableDataset):
        def __iter__(self):
            info = get_worker_info()
            np.random.seed(cfg.seed + 1 + (info.id if info else 0))
            dl = _nnunet_loader(task, files, cfg)
            while True:
                yield next(dl)

    torch.manual_seed(cfg.seed)
    loader = DataLoader(Stream(), batch_size=None, num_workers=cfg.workers)
    return Run(loader, _nnunet_arrays, lambda b: int(b["data"].shape[0]))


def nnunet_mt_peer(task: str, cases: list[dict], check: bool, cfg: argparse.Namespace) -> Run:
    """nnU-Net's loader in its own ``NonDetMultiThreadedAugmenter``, as ``nnUNetTrainer`` starts
    it (``num_cached=max(6, n // 2)``, ``wait_time=0.002``, no pin memory on CPU)."""
    from batchgenerators.dataloading.nondet_multi_threaded_augmenter import (
        NonDetMultiThreadedAugmenter,
    )

    dl = _nnunet_loader(task, _nnunet_files(task, cases, check), cfg)
    aug = NonDetMultiThreadedAugmenter(
        data_loader=dl,
        transform=None,
        num_processes=cfg.workers,
        num_cached=max(6, cfg.workers // 2),
        seeds=None,
        pin_memory=False,
        wait_time=0.002,
    )
    return Run(aug, _nnunet_arrays, lambda b: int(b["data"].shape[0]), aug._finish)


def torchio_peer(task: str, cases: list[dict], check: bool, cfg: argparse.Namespace) -> Run:
    import torchio as tio
    from torch.utils.data import DataLoader

    subjects = [
        tio.Subject(
            image=tio.ScalarImage(c["check_nii_gz"] if check else c["ct_nii_gz"]),
            label=tio.LabelMap(c["label_nii_gz"] if task == "labelmap" else c["organs5_nii_gz"]),
        )
        for c in long_list(cases, cfg)
    ]
    if task == "labelmap":
        classes, transform = cfg.present, None
    else:
        classes = list(range(1, len(cfg.organs) + 1))
        transform = tio.OneHot(num_classes=len(cfg.organs) + 1)  # channel 0: background
    probs = {0: 2 / 3, **{c: 1 / (3 * len(classes)) for c in classes}}
    queue = tio.Queue(
        tio.SubjectsDataset(subjects, transform=transform),
        max_length=cfg.tio_max_length,
        samples_per_volume=2,
        sampler=tio.LabelSampler(cfg.patch, "label", probs),
        num_workers=cfg.workers,
    )
    loader = DataLoader(queue, batch_size=2, num_workers=0)  # TorchIO: the queue has the workers

    def to_arrays(b):
        lab = xyz(b["label"][tio.DATA])
        return xyz(b["image"][tio.DATA]), lab if task == "labelmap" else lab[:, 1:]

    return Run(loader, to_arrays, lambda b: int(b["image"][tio.DATA].shape[0]))


BUILDERS: dict[str, Callable[..., Run]] = {
    "monai": monai_peer,
    "nnunet": nnunet_peer,
    "nnunet-mt": nnunet_mt_peer,
    "torchio": torchio_peer,
    **{p: functools.partial(medmask_peer, peer=p) for p in MEDMASK_VARIANTS},
}


# ============================================================================================
# checks, memory, timing (in the peer's own process)


def check_patches(run: Run, man: dict, task: str, n_batches: int) -> dict:
    """Every patch of ``n_batches`` batches is a box of the grid and its labels are the truth's."""
    gts = [
        np.load(
            Path(man["cases"][k]["dir"]) / f"gt_{'label' if task == 'labelmap' else 'organs'}.npy"
        )
        for k in range(CHECK_CASES)
    ]
    shape = gts[0].shape
    patches = fg = any_fg = 0
    it = iter(run.loader)
    for _ in range(n_batches):
        img, lab = run.to_arrays(next(it))
        if img.shape[0] != 2:
            raise AssertionError(f"a batch of {img.shape[0]} patches, not 2")
        for b in range(img.shape[0]):
            centre, anywhere = check_one(img[b, 0], lab[b], gts, shape, task)
            fg += centre
            any_fg += anywhere
            patches += 1
    return {"patches": patches, "fg_centres": fg, "fg_any": any_fg}


def check_one(code: np.ndarray, lab: np.ndarray, gts: list, shape, task: str) -> tuple[int, int]:
    """Check one patch (position code ``code``, labels ``lab`` (C, z, y, x)).

    Returns:
        ``(centre, anywhere)``: 1 if its centre voxel is foreground, 1 if any voxel is.
    """
    valid = code != 0
    signs = np.unique(np.sign(code[valid]))
    if len(signs) != 1:
        raise AssertionError("a patch mixes two cases")
    gt = gts[0 if signs[0] > 0 else 1]
    idx = np.abs(code[valid]).astype(np.int64) - 1
    where = np.nonzero(valid)
    pos = np.unravel_index(idx, shape)
    for a in range(3):
        off = pos[a] - where[a]
        if not (off == off[0]).all():
            raise AssertionError("an image patch is not a box of the grid")
    truth = gt.ravel()[idx]
    if task == "labelmap":
        got = lab[0][valid].astype(np.int64)
        if not np.array_equal(got, truth):
            raise AssertionError(
                f"label patch differs from the truth in {int((got != truth).sum())} voxels"
            )
    else:
        for ch in range(lab.shape[0]):
            if not np.array_equal(lab[ch][valid] != 0, truth == ch + 1):
                raise AssertionError(f"organ channel {ch} differs from the truth")
    c = tuple(s // 2 for s in code.shape)
    return int(bool(valid[c]) and gt.ravel()[int(abs(code[c])) - 1] > 0), int(truth.any())


def check_image(peer: str, man: dict, task: str) -> str:
    """The CT a peer reads for case 0 equals the CT written (nnU-Net: after its normalisation)."""
    c = man["cases"][0]
    ct = np.load(Path(c["dir"]) / "gt_ct.npy")
    if peer == "monai":
        from monai.transforms import LoadImage

        got = np.asarray(LoadImage(image_only=True)(c["ct_nii_gz"])).T
    elif peer == "torchio":
        import torchio as tio

        got = tio.ScalarImage(c["ct_nii_gz"]).data.numpy()[0].T
    elif peer.startswith("nnunet"):
        from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

        f = Path(c[f"nnunet_{task}_files"][0])
        data = nnUNetDatasetBlosc2(str(f.parent), [f.name[:-5]]).load_case(f.name[:-5])[0]
        got = data[0][...]
        ct = nnunet_normalise(ct, np.load(Path(c["dir"]) / "gt_label.npy"))
    elif peer in MEDMASK_VARIANTS:
        from medmask.patches import open_image

        if MEDMASK_VARIANTS[peer][0] == "b2nd":  # nnU-Net's file: the CT as nnU-Net normalised it
            src = open_image(c["nnunet_image"])
            ct = nnunet_normalise(ct, np.load(Path(c["dir"]) / "gt_label.npy"))
        else:
            src = open_image(c["ct_nii"])
        got = src.read((0, src.shape[0], 0, src.shape[1], 0, src.shape[2]))[0]
    else:
        return "image check: done by the peer"
    if not np.array_equal(got.astype(np.float32), ct.astype(np.float32)):
        raise AssertionError(f"{peer}: the CT read differs from the CT written")
    return "image equal"


class Memory(threading.Thread):
    """Peak RSS (every ``interval`` s) and USS (every ``uss_every``-th poll) of this process and
    of its children (loader workers), by psutil."""

    def __init__(self, interval: float = 0.02, uss_every: int = 10) -> None:
        super().__init__(daemon=True)
        import psutil

        self.me = psutil.Process()
        self.interval, self.uss_every = interval, uss_every
        self.rss: dict[int, int] = {}
        self.uss: dict[int, int] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        import psutil

        i = 0
        while not self.halt.is_set():
            for p in [self.me, *self.me.children(recursive=True)]:
                try:
                    self.rss[p.pid] = max(self.rss.get(p.pid, 0), p.memory_info().rss)
                    if i % self.uss_every == 0:
                        self.uss[p.pid] = max(self.uss.get(p.pid, 0), p.memory_full_info().uss)
                except psutil.Error:
                    continue
            i += 1
            self.halt.wait(self.interval)

    def result(self) -> dict:
        me = self.me.pid
        workers = [p for p in self.rss if p != me]
        return {
            "main_rss": self.rss.get(me, 0),
            "main_uss": self.uss.get(me, 0),
            "worker_rss": max((self.rss[p] for p in workers), default=0),
            "worker_uss": max((self.uss.get(p, 0) for p in workers), default=0),
            "worker_pids": len(workers),
        }


def tree_cpu() -> float:
    """CPU seconds (user + system) used so far by this process and its live children."""
    import psutil

    total = 0.0
    me = psutil.Process()
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def time_loader(run: Run, cfg: argparse.Namespace) -> tuple[list[float], float]:
    """Patches/s of ``--repeat`` blocks of ``--batches`` batches, after ``--warmup`` batches,
    and the CPU milliseconds per patch of every process of the peer over those blocks (a
    measure of work that other jobs on a shared machine do not change)."""
    from tqdm import tqdm

    it = iter(run.loader)
    for _ in range(cfg.warmup):
        next(it)
    rates, total = [], 0
    cpu = tree_cpu()
    for _ in tqdm(range(cfg.repeat), desc="timed blocks", file=sys.stderr, leave=False):
        n = 0
        t = time.perf_counter()
        for _ in range(cfg.batches):
            n += run.count(next(it))
        rates.append(n / (time.perf_counter() - t))
        total += n
    return rates, 1e3 * (tree_cpu() - cpu) / max(total, 1)


def nnunet_single(task: str, cases: list[dict], cfg: argparse.Namespace, n: int = 40) -> float:
    """Median seconds per batch of nnU-Net's loader in this process (no workers)."""
    np.random.seed(cfg.seed)
    dl = _nnunet_loader(task, _nnunet_files(task, cases, False), cfg)
    for _ in range(3):
        next(dl)
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        next(dl)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def medmask_single(task: str, cases: list[dict], cfg: argparse.Namespace, n: int = 40) -> float:
    """Median seconds per batch of 2 of medmask's ``PatchDataset`` (``.b2nd`` image) in this
    process (no workers; one batch as ``PatchDataset.loader`` asks it), as :func:`nnunet_single`."""
    ds = medmask_peer(task, cases, False, cfg).loader.dataset
    rng = np.random.default_rng(cfg.seed)
    draw = lambda: ds[rng.integers(len(ds), size=2).tolist()]  # noqa: E731
    for _ in range(3):
        draw()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        draw()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def run_peer(peer: str, task: str, cfg: argparse.Namespace) -> dict:
    """In the peer's own process: check, then time under the memory monitor."""
    man = json.loads((cfg.work / MANIFEST).read_text())
    cfg.names, cfg.present, cfg.organs = man["names"], man["present"], man["organs"]
    build = BUILDERS[peer]
    try:
        run = build(task, man["cases"][:CHECK_CASES], True, cfg)
    except NotImplementedError as exc:
        return {"status": "not yet implemented", "why": str(exc)}
    out: dict = {"status": "ok"}
    if not cfg.no_check:
        out["image_check"] = check_image(peer, man, task)
        out["check"] = check_patches(run, man, task, cfg.check_batches)
    run.close()
    del run
    if peer == "nnunet" and not cfg.no_check:
        out["single_batch_s"] = nnunet_single(task, man["cases"], cfg)
    if peer == "medmask" and not cfg.no_check:
        out["single_batch_s"] = medmask_single(task, man["cases"], cfg)
    mem = Memory()
    mem.start()
    run = build(task, man["cases"], False, cfg)
    out["rates"], out["cpu_ms"] = time_loader(run, cfg)
    mem.halt.set()
    mem.join()
    run.close()
    out.update(mem.result())
    return out


# ============================================================================================
# the run: every peer in its own process, one after the other; the table


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def spawn_peer(peer: str, task: str, args: argparse.Namespace, check: bool) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--run-peer",
        peer,
        "--task",
        task,
        "--work",
        str(args.work),
        "--workers",
        str(args.workers),
        "--patch",
        str(args.patch),
        "--repeat",
        str(args.repeat),
        "--batches",
        str(args.batches),
        "--warmup",
        str(args.warmup),
        "--check-batches",
        str(args.check_batches),
        "--tio-max-length",
        str(args.tio_max_length),
        "--seed",
        str(args.seed),
        *([] if check else ["--no-check"]),
    ]
    print(f"[{peer} / {task}] ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"status": f"failed (exit {proc.returncode}); see stderr above"}


def merge(results: dict, key: tuple[str, str], res: dict) -> None:
    """Add one round's result: timed blocks pooled, memory peaks maxed."""
    old = results.get(key)
    if old is None or old.get("status") != "ok" or res.get("status") != "ok":
        results.setdefault(key, res)
        return
    old["rates"] += res["rates"]
    old["cpu_ms"] = statistics.mean([old["cpu_ms"], res["cpu_ms"]])
    for k in ("main_rss", "main_uss", "worker_rss", "worker_uss"):
        old[k] = max(old[k], res[k])


def table(results: dict, man: dict, args: argparse.Namespace) -> list[str]:
    lines = [
        "| task | loader | patches/s | vs MONAI | CPU per patch | checked patches (centred on / holding foreground) | peak RSS per worker (USS) | main process RSS (USS) |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for task, label in TASKS.items():
        if task not in args.tasks:
            continue
        ref = results.get(("monai", task), {})
        ref_rate = statistics.median(ref["rates"]) if ref.get("status") == "ok" else None
        for peer in args.peers:
            r = results[(peer, task)]
            if r.get("status") != "ok":
                lines.append(f"| {label} | {PEERS[peer]} | {r.get('status')} | | | | | |")
                continue
            rate = statistics.median(r["rates"])
            vs = f"{rate / ref_rate:.1f}x" if ref_rate else ""
            ck = r["check"]
            lines.append(
                f"| {label} | {PEERS[peer]} | {rate:,.1f} | {vs} | {r['cpu_ms']:.1f} ms | {ck['patches']} equal "
                f"({100 * ck['fg_centres'] / ck['patches']:.0f}% / {100 * ck['fg_any'] / ck['patches']:.0f}%), "
                f"{r['image_check']} | "
                f"{mib(r['worker_rss'])} ({mib(r['worker_uss'])}) | {mib(r['main_rss'])} ({mib(r['main_uss'])}) |"
            )
    return lines


#: The rows of the summary (README.md, docs/training.md): short names of the loaders.
SHORT = {
    "monai": "MONAI `LoadImaged` + `RandCropByPosNegLabeld`",
    "nnunet": "nnU-Net v2 `nnUNetDataLoader`, one per torch worker",
    "nnunet-mt": "nnU-Net v2, its `NonDetMultiThreadedAugmenter`",
    "torchio": "TorchIO `Queue` + `LabelSampler`",
    "medmask": "**medmask** `PatchDataset`, `.mska` + `.b2nd` image",
    "medmask-nii": "**medmask** `PatchDataset`, `.mska` + uncompressed `.nii` image",
    "medmask-coords": "medmask, `.b2nd`, class voxels from `.fgcoords.npz`",
}


def _ok(results: dict, peer: str, task: str) -> dict | None:
    r = results.get((peer, task))
    return r if r is not None and r.get("status") == "ok" else None


def summary(results: dict, args: argparse.Namespace) -> list[str]:
    """One row per loader, both tasks side by side: patches/s, vs MONAI, CPU per patch, peak
    RSS per worker (USS)."""
    tasks = [t for t in TASKS if t in args.tasks]
    head = "| loader | " + " | ".join(
        f"{TASKS[t]}: patches/s | vs MONAI | CPU per patch | peak RSS per worker (USS)"
        for t in tasks
    )
    lines = [head + " |", "| --- |" + " ---: | ---: | ---: | ---: |" * len(tasks)]
    for peer in args.peers:
        cells = []
        for t in tasks:
            r, ref = _ok(results, peer, t), _ok(results, "monai", t)
            if r is None:
                cells += [str(results.get((peer, t), {}).get("status", "")), "", "", ""]
                continue
            rate = statistics.median(r["rates"])
            vs = f"{rate / statistics.median(ref['rates']):.1f}x" if ref else ""
            cells += [
                f"{rate:,.1f}",
                vs,
                f"{r['cpu_ms']:.1f} ms",
                f"{mib(r['worker_rss'])} ({mib(r['worker_uss'])})",
            ]
        lines.append(f"| {SHORT[peer]} | " + " | ".join(cells) + " |")
    return lines


def targets(results: dict, args: argparse.Namespace) -> list[str]:
    """Issue 18's targets for the medmask rows, met or not, in this run."""
    out = []
    for peer in ("medmask", "medmask-nii"):
        for t in (t for t in TASKS if t in args.tasks):
            r = _ok(results, peer, t)
            if r is None:
                continue
            rate = statistics.median(r["rates"])
            said = []
            ref = _ok(results, "monai", t)
            if ref:
                x = rate / statistics.median(ref["rates"])
                said.append(f">= 15x MONAI: {x:.1f}x ({'met' if x >= 15 else 'missed'})")
            for nn in ("nnunet", "nnunet-mt"):
                o = _ok(results, nn, t)
                if o:
                    theirs = statistics.median(o["rates"])
                    said.append(
                        f"faster than {nn}: {rate:,.1f} vs {theirs:,.1f} patches/s "
                        f"({'met' if rate > theirs else 'missed'}; CPU per patch "
                        f"{r['cpu_ms']:.1f} vs {o['cpu_ms']:.1f} ms)"
                    )
            for other in ("monai", "nnunet", "nnunet-mt"):
                o = _ok(results, other, t)
                if o:
                    below = r["worker_rss"] < o["worker_rss"]
                    said.append(
                        f"peak RSS per worker below {other}'s: {mib(r['worker_rss'])} vs "
                        f"{mib(o['worker_rss'])} ({'met' if below else 'missed'})"
                    )
            out.append(f"- {SHORT[peer]}, {TASKS[t]}: " + "; ".join(said))
    return out


def report(results: dict, man: dict, args: argparse.Namespace) -> str:
    import torch

    versions = []
    for mod in ("monai", "nnunetv2", "torchio", "blosc2", "nibabel"):
        try:
            from importlib.metadata import version

            versions.append(f"{mod} {version(mod)}")
        except Exception:  # pragma: no cover - a peer not installed
            versions.append(f"{mod} missing")
    lines = [
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {', '.join(versions)}. {len(man['cases'])} cases made from "
        f"{REAL_CASE.name} (grid 294x192x179, {len(man['names'])} masks; synthetic int16 CT); "
        f"{args.workers} workers, batches of 2 patches of {args.patch}³, a third of the centres on "
        f"foreground (class uniform among those present); patches/s: median of {args.repeat} blocks "
        f"of {args.batches} batches after {args.warmup} warm-up batches, pooled over "
        f"{args.rounds} round(s); every peer in its own process, one after the other; load "
        f"average (1 min) {' / '.join(f'{x:.1f}' for x in args.load)} at the start / after each round.",
        "",
        *table(results, man, args),
    ]
    single = [
        (p, t, r["single_batch_s"])
        for (p, t), r in results.items()
        if p in ("nnunet", "medmask") and "single_batch_s" in r
    ]
    who = {
        "nnunet": "nnU-Net's `nnUNetDataLoader`",
        "medmask": "medmask's `PatchDataset` (`.b2nd` image)",
    }
    for peer, task, s in single:
        lines.append("")
        lines.append(
            f"{who[peer]} in one process ({TASKS[task]}): {s * 1e3:.1f} ms per batch "
            f"of 2 patches ({2 / s:.0f} patches/s)."
        )
    lines += [
        "",
        "Bytes on disk per case (mean over the cases):",
        "",
        "| layout | image | labels, 117 classes | labels, 5 organs |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, img, lab, org in disk_bytes(man):
        lines.append(f"| {name} | {img:,.0f} | {lab:,.0f} | {org:,.0f} |")
    lines += [
        "",
        "Notes: CPU per patch is the CPU time (user + system) of the peer's main process and "
        "workers over the timed blocks, divided by the patches: the work each loader does, "
        "which other jobs on a shared machine change far less than patches/s (under load, a "
        "loader with more busy threads, e.g. nnU-Net's augmenter with a feeder thread per "
        "worker, gets a larger share of the cores). The foreground shares are measured on the checked batches (few: expect a "
        "spread); the target is a third of the centres. MONAI's negative and TorchIO's "
        "background centres lie on label 0, nnU-Net's anywhere. MONAI moves a centre inward "
        "until the patch fits in the volume (it may then leave the organ) and TorchIO draws "
        "centres only where the patch fits (classes within half a patch of the border, many "
        "here: the case's masks crowd its top slices, get no centres), so their centred share "
        "falls below a third; nnU-Net pads instead. "
        "TorchIO cuts patches in the main process (its workers load subjects), so its main "
        "process carries the queue. RSS counts pages shared with the parent (libraries); USS "
        "is what only that process holds. nnU-Net's image `.b2nd` is stored once per dataset "
        "(here once per task).",
    ]
    labels = {name: lab for name, _, lab, _ in disk_bytes(man)}
    brief = [
        lines[0],
        "",
        *summary(results, args),
        "",
        "Labels on disk per case (117 classes): "
        + "; ".join(f"{k.split(':')[0]} {v:,.0f} B" for k, v in list(labels.items())[:4])
        + " (medmask's `.mska` holds all 117 masks with their overlaps).",
        "",
        "Targets (issue 18), in this run:",
        "",
        *targets(results, args),
    ]
    return (
        "\n".join(
            [
                "# Patches per second for training (issue 18)",
                "",
                region("patches", "\n".join(lines)),
                "",
                "Summary (README.md, docs/training.md):",
                "",
                region("patches-summary", "\n".join(brief)),
            ]
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", type=int, default=4, help="synthetic cases (default 4, >= 2)")
    ap.add_argument("--repeat", type=int, default=3, help="timed blocks per loader (default 3)")
    ap.add_argument("--batches", type=int, default=16, help="batches per timed block (default 16)")
    ap.add_argument("--warmup", type=int, default=4, help="untimed batches first (default 4)")
    ap.add_argument("--check-batches", type=int, default=10, help="batches checked (default 10)")
    ap.add_argument("--workers", type=int, default=2, help="loader workers (default 2)")
    ap.add_argument("--patch", type=int, default=96, help="patch edge (default 96)")
    ap.add_argument(
        "--tio-max-length", type=int, default=8, help="TorchIO queue length (default 8)"
    )
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma list of {', '.join(PEERS)}")
    ap.add_argument("--tasks", default=",".join(TASKS), help="comma list: labelmap,organs")
    ap.add_argument("--organs", default=",".join(ORGANS), help="the 5 organs (non-overlapping)")
    ap.add_argument("--work", type=Path, help="folder for the cases (kept; reused if it matches)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("bench_output"), help="folder for the .md")
    ap.add_argument("--rounds", type=int, default=1, help="runs of every peer, interleaved")
    ap.add_argument("--run-peer", help=argparse.SUPPRESS)
    ap.add_argument("--no-check", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--task", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run_peer:
        print("RESULT " + json.dumps(run_peer(args.run_peer, args.task, args)), flush=True)
        return 0
    if not REAL_CASE.is_dir():
        print(f"real case not found at {REAL_CASE}: nothing to measure")
        return 1
    if args.cases < CHECK_CASES:
        ap.error(f"--cases must be at least {CHECK_CASES}")
    args.peers = [p for p in args.peers.split(",") if p]
    args.tasks = [t for t in args.tasks.split(",") if t]
    bad = [p for p in args.peers if p not in PEERS] + [t for t in args.tasks if t not in TASKS]
    if bad:
        ap.error(f"unknown peer or task: {bad}")
    organs = args.organs.split(",")
    keep = args.work is not None
    args.work = args.work or Path(tempfile.mkdtemp(prefix="medmask-bench-patches-"))
    try:
        man = prepare(args.work, args.cases, organs, args.patch)
        load = [os.getloadavg()[0]]
        results: dict[tuple[str, str], dict] = {}
        for r in range(args.rounds):  # rounds interleave the peers in time
            for t in args.tasks:
                for p in args.peers:
                    merge(results, (p, t), spawn_peer(p, t, args, check=r == 0))
            load.append(os.getloadavg()[0])
        args.load = load
        text = report(results, man, args)
    finally:
        if not keep:
            shutil.rmtree(args.work, ignore_errors=True)
    publish(text, args.out, "bench_patches.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
