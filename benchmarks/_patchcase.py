"""Shared by ``bench_patches.py`` and ``study_window_layouts.py``: the real case's masks as crops,
TotalSegmentator-like variants of it, a synthetic CT, and label maps.

Arrays are ``(z, y, x)`` (medmask's memory order, and what nnU-Net gets from SimpleITK); a NIfTI
file stores the transpose ``(x, y, z)``. Each mask is kept as its bounding-box crop (``bool``) and
its half-open box ``(z0, z1, y0, y1, x0, x1)``, or ``None`` when empty, as medmask stores it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: The real case (env ``MEDMASK_REAL_CASE`` points elsewhere).
REAL_CASE = Path(
    os.environ.get("MEDMASK_REAL_CASE", HERE.parent.parent / "shared" / "data" / "totalseg_s0000")
)

Box = tuple[int, int, int, int, int, int]
Crop = tuple[np.ndarray, Box]

# body-like Hounsfield units by name fragment (first match wins); anything else: soft tissue
_HU = (
    ("lung", -820),
    ("colon", -60),
    ("small_bowel", -20),
    ("stomach", 10),
    ("urinary_bladder", 8),
    ("artery", 190),
    ("aorta", 200),
    ("vena", 150),
    ("vein", 150),
    ("femur", 650),
    ("hip", 600),
    ("sacrum", 550),
    ("rib", 600),
    ("vertebra", 620),
    ("sternum", 500),
    ("scapula", 550),
    ("clavicula", 550),
    ("humerus", 650),
    ("skull", 800),
    ("liver", 60),
    ("spleen", 50),
    ("kidney", 35),
    ("gluteus", 55),
    ("iliopsoas", 52),
    ("autochthon", 54),
)


@dataclass
class Case:
    """One case: the grid, the NIfTI affine and every mask as a crop (or ``None``)."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    names: list[str]
    crops: dict[str, Crop | None]
    space: object = field(default=None, repr=False)  # medmask's Space (z, y, x), for archives

    def full(self, name: str) -> np.ndarray:
        """The mask ``name`` on the whole grid (``bool``)."""
        out = np.zeros(self.shape, bool)
        item = self.crops[name]
        if item is not None:
            crop, (z0, z1, y0, y1, x0, x1) = item
            out[z0:z1, y0:y1, x0:x1] = crop
        return out

    def label_map(self, names: list[str] | None = None, dtype=np.int16) -> np.ndarray:
        """Labels 1..N in the order of ``names`` (default every mask); a later name wins overlaps.

        These are the semantics of medmask's label-map mode (``LoadMask`` / ``load_mask_array``).
        """
        names = self.names if names is None else names
        out = np.zeros(self.shape, dtype)
        for k, name in enumerate(names, start=1):
            item = self.crops[name]
            if item is None:
                continue
            crop, (z0, z1, y0, y1, x0, x1) = item
            np.copyto(out[z0:z1, y0:y1, x0:x1], dtype(k), where=crop)
        return out

    def nonempty(self) -> list[str]:
        return [n for n in self.names if self.crops[n] is not None]

    def voxels(self, name: str) -> int:
        item = self.crops[name]
        return 0 if item is None else int(item[0].sum())


def load_real_case(folder: Path = REAL_CASE) -> Case:
    """The real case's masks as crops, read through a temporary ``.mska`` (``folder_to_archive``)."""
    import nibabel as nib

    from medmask import MaskArchive
    from medmask.nifti import folder_to_archive, nifti_files

    files = nifti_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: no .nii.gz masks (the real TotalSegmentator case)")
    affine = nib.load(str(files[0])).affine
    with tempfile.TemporaryDirectory(prefix="medmask-patchcase-") as tmp:
        archive = Path(tmp) / "case.mska"
        folder_to_archive(folder, archive)
        with MaskArchive(archive) as ar:
            names = ar.all_names()
            crops: dict[str, Crop | None] = {}
            for name in names:
                crop, box = ar.read_cropped(name)
                crops[name] = None if box is None else (crop.astype(bool), tuple(map(int, box)))
            shape = tuple(int(s) for s in ar.space.shape)
            space = ar.space
    return Case(shape, affine, names, crops, space)  # type: ignore[arg-type]


def _shift_crop(item: Crop, shape, flip_x: bool, shift: tuple[int, int, int]) -> Crop | None:
    crop, box = item
    z0, z1, y0, y1, x0, x1 = box
    if flip_x:
        crop = crop[:, :, ::-1]
        x0, x1 = shape[2] - x1, shape[2] - x0
    lo = [z0 + shift[0], y0 + shift[1], x0 + shift[2]]
    hi = [z1 + shift[0], y1 + shift[1], x1 + shift[2]]
    cut = []
    for ax in range(3):
        a, b = max(lo[ax], 0), min(hi[ax], shape[ax])
        if a >= b:
            return None
        cut.append(slice(a - lo[ax], b - lo[ax]))
        lo[ax], hi[ax] = a, b
    crop = crop[tuple(cut)]
    if not crop.any():
        return None
    # tighten to the voxels left after clipping
    idx = [np.flatnonzero(crop.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    tight = tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)
    crop = np.ascontiguousarray(crop[tight])
    box = (
        lo[0] + tight[0].start,
        lo[0] + tight[0].stop,
        lo[1] + tight[1].start,
        lo[1] + tight[1].stop,
        lo[2] + tight[2].start,
        lo[2] + tight[2].stop,
    )
    return crop, box


def variant(case: Case, k: int) -> Case:
    """The ``k``-th TotalSegmentator-like case made from ``case``.

    Case 0 is the real case; the others are flipped left-right (odd ``k``) and shifted by a few
    voxels (zero fill, masks clipped at the grid's edge), so that cases differ in where organs
    lie while keeping real shapes.
    """
    if k == 0:
        return case
    rng = np.random.default_rng(1000 + k)
    flip_x = bool(k % 2)
    shift = (int(rng.integers(-12, 1)), int(rng.integers(-8, 9)), int(rng.integers(-10, 11)))
    crops = {
        n: None if c is None else _shift_crop(c, case.shape, flip_x, shift)
        for n, c in case.crops.items()
    }
    return Case(case.shape, case.affine, case.names, crops, case.space)


def hu_of(name: str) -> int:
    for frag, hu in _HU:
        if frag in name:
            return hu
    return 45


def synthetic_ct(case: Case, seed: int = 0) -> np.ndarray:
    """A body-like CT (``int16`` Hounsfield units, ``(z, y, x)``) around the case's masks.

    Air (-1000) outside an elliptic body that contains every mask; a fat rim (-100), soft tissue
    (40) inside; each organ its typical value (bone 550-800, contrast vessels ~190, muscle ~55,
    bowel gas-ish); Gaussian noise (15 HU in the body, 8 in air), as a scanner gives.
    """
    rng = np.random.default_rng(seed)
    nz, ny, nx = case.shape
    y, x = np.ogrid[:ny, :nx]
    cy, cx, ry, rx = ny * 0.52, nx * 0.5, ny * 0.50, nx * 0.47
    r2 = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2
    hu = np.full(case.shape, -1000.0, np.float32)
    hu[:, r2 <= 1.0] = -100.0  # subcutaneous fat
    hu[:, r2 <= 0.82] = 40.0  # soft tissue
    for name in case.names:
        item = case.crops[name]
        if item is None:
            continue
        crop, (z0, z1, y0, y1, x0, x1) = item
        np.copyto(hu[z0:z1, y0:y1, x0:x1], np.float32(hu_of(name)), where=crop)
    body = hu > -1000
    noise = rng.normal(0.0, 1.0, case.shape).astype(np.float32)
    noise *= np.where(body, np.float32(15.0), np.float32(8.0))
    hu += noise
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)


def nifti_write(path: Path, array_zyx: np.ndarray, affine: np.ndarray) -> None:
    """Write a ``(z, y, x)`` array as NIfTI (stored ``(x, y, z)``, as the masks came)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(array_zyx).T, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def position_code(shape: tuple[int, int, int]) -> np.ndarray:
    """``1 + flat index`` of every voxel as ``float32`` (exact below 2**24): a check image whose
    patches tell where they were cut from (0 marks padding)."""
    n = int(np.prod(shape))
    if n + 1 >= 1 << 24:
        raise ValueError(f"grid {shape} too large for an exact float32 position code")
    return np.arange(1, n + 1, dtype=np.float32).reshape(shape)


def nnunet_normalise(ct: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """nnU-Net's ``CTNormalization`` with the foreground intensity statistics of this case."""
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import (
        CTNormalization,
    )

    fg = ct[seg > 0].astype(np.float64)
    props = {
        "mean": float(fg.mean()),
        "std": float(fg.std()),
        "percentile_00_5": float(np.percentile(fg, 0.5)),
        "percentile_99_5": float(np.percentile(fg, 99.5)),
    }
    return CTNormalization(False, props, np.float32).run(ct.astype(np.float32))


def nnunet_save(
    folder: Path,
    ident: str,
    data: np.ndarray,
    seg: np.ndarray,
    n_labels: int,
    patch: int,
    locations: bool = True,
) -> list[str]:
    """nnU-Net's preprocessing output for ``data`` (``(z, y, x)`` float32) and ``seg`` (labels
    1..``n_labels``), by its own functions, as its ``run_case_save`` writes it: chunks and blocks
    from ``comp_blosc2_params`` for a ``patch``³ patch, ``int16`` label map, and (if
    ``locations``) the class locations of ``DefaultPreprocessor._sample_foreground_locations``.

    Returns:
        The paths of the ``.b2nd``, ``_seg.b2nd`` and ``.pkl`` written.
    """
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.dataloading.nnunet_dataset import (
        comp_blosc2_params,
        nnUNetDatasetBlosc2,
    )

    folder.mkdir(parents=True, exist_ok=True)
    data4 = data[None].astype(np.float32)
    seg4 = seg[None].astype(np.int16)
    labels = list(range(1, n_labels + 1))
    locs = DefaultPreprocessor._sample_foreground_locations(seg4, labels) if locations else {}
    blocks, chunks = comp_blosc2_params(data4.shape, (patch,) * 3, data4.itemsize)
    blocks_s, chunks_s = comp_blosc2_params(seg4.shape, (patch,) * 3, seg4.itemsize)
    props = {
        "class_locations": locs,
        "spacing": [1.5, 1.5, 1.5],
        "shape_before_cropping": seg.shape,
    }
    nnUNetDatasetBlosc2.save_case(
        data4,
        seg4,
        props,
        str(folder / ident),
        chunks=chunks,
        blocks=blocks,
        chunks_seg=chunks_s,
        blocks_seg=blocks_s,
    )
    return [str(folder / f"{ident}{end}") for end in (".b2nd", "_seg.b2nd", ".pkl")]


def publish(text: str, out: Path, name: str) -> None:
    """Print a report and write it as ``out/name`` (the folder is made)."""
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_text(text, encoding="utf-8")
    print(f"(wrote {out / name})")


def largest(case: Case) -> str:
    """Name of the mask with the most voxels."""
    return max(case.nonempty(), key=case.voxels)
