"""Phantom cases for the patch tests: archives, images in every layout, and the truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medmask import MaskArchive
from medmask.nifti import folder_to_archive
from medmask.patches.convert import convert_images
from medmask.phantoms import write_phantom_dataset

SHAPE = (24, 40, 40)  # (z, y, x)


@dataclass
class PhantomCase:
    archive: Path
    nii: Path
    b2nd: Path
    nii_gz: Path
    ct: np.ndarray  # (z, y, x) float32
    masks: dict[str, np.ndarray]  # (z, y, x) bool, archive order

    def label_map(self, names: list[str] | None = None) -> np.ndarray:
        """Labels 1..N in ``names`` order (default archive order), a later mask winning."""
        names = list(self.masks) if names is None else names
        out = np.zeros(SHAPE, np.uint8)
        for k, n in enumerate(names, start=1):
            if n in self.masks:
                out[self.masks[n]] = k
        return out


def make_cases(root: Path, n: int = 2) -> list[PhantomCase]:
    """``n`` phantom cases under ``root``: ``.mska``, CT as ``.nii.gz``, ``.nii``, ``.b2nd``."""
    segs = write_phantom_dataset(root / "raw", n_cases=n, shape_zyx=SHAPE)
    nii = convert_images(root / "raw", root / "nii", to="nii", pattern="*/ct.nii.gz")
    b2 = convert_images(
        root / "raw", root / "b2nd", to="b2nd", pattern="*/ct.nii.gz", patch=(8, 8, 8)
    )
    out = []
    for seg, a, b in zip(segs, nii, b2):
        archive = root / f"{seg.parent.name}.mska"
        folder_to_archive(seg, archive)
        with MaskArchive(archive) as ar:
            masks = {name: ar.read_array(name).astype(bool) for name in ar.all_names()}
        import nibabel as nib

        ct = np.asarray(nib.load(str(a.src)).dataobj).T.astype(np.float32)
        out.append(PhantomCase(archive, a.dst, b.dst, a.src, ct, masks))
    return out


def window(volume: np.ndarray, box, pad=0) -> np.ndarray:
    """``box`` = (z0, z1, y0, y1, x0, x1) of a ``(z, y, x)`` volume, ``pad`` outside."""
    size = [box[2 * a + 1] - box[2 * a] for a in range(3)]
    out = np.full(size, pad, volume.dtype)
    src, dst = [], []
    for a in range(3):
        lo, hi = max(box[2 * a], 0), min(box[2 * a + 1], volume.shape[a])
        hi = max(hi, lo)
        src.append(slice(lo, hi))
        dst.append(slice(lo - box[2 * a], hi - box[2 * a]))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def box_of(centre, patch) -> tuple[int, ...]:
    out: list[int] = []
    for c, s in zip(centre, patch):
        out += [int(c) - s // 2, int(c) - s // 2 + s]
    return tuple(out)
