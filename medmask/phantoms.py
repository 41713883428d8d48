"""Synthetic phantom cases (organ-like ellipsoids and tubes on oblique grids).

Used by ``make demo``, the tests and the benchmarks when no real data is at hand.
Writing ``.nii.gz`` needs nibabel (the ``nifti`` extra).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .spaces import Space, zyx_of

__all__ = ["phantom_case", "write_phantom_dataset", "ORGANS"]

#: Organ names of the phantoms, TotalSegmentator style.
ORGANS = [
    "liver",
    "spleen",
    "kidney_left",
    "kidney_right",
    "aorta",
    "stomach",
    "pancreas",
    "gallbladder",
]


def _rotation(rng: np.random.Generator, max_angle: float = 0.35) -> np.ndarray:
    """A random rotation of up to ``max_angle`` radians about a random axis (Rodrigues)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = rng.uniform(-max_angle, max_angle)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def phantom_case(
    seed: int, shape_zyx: tuple[int, int, int] = (48, 96, 96), organs: list[str] | None = None
) -> tuple[dict[str, np.ndarray], Space]:
    """One synthetic case: ``{organ: bool (z, y, x) array}`` on an oblique grid.

    Ellipsoids for solid organs, a tube along z for the aorta; some overlap, and one
    organ of every few cases is left empty (absent organs are normal in real data).
    """
    rng = np.random.default_rng(seed)
    organs = organs or ORGANS
    zz, yy, xx = np.meshgrid(*(np.arange(s, dtype=np.float32) for s in shape_zyx), indexing="ij")
    masks = {}
    for k, name in enumerate(organs):
        if (seed + k) % 7 == 6:
            masks[name] = np.zeros(shape_zyx, bool)
            continue
        c = [rng.uniform(0.25, 0.75) * s for s in shape_zyx]
        if name == "aorta":
            r = rng.uniform(0.04, 0.07) * shape_zyx[2]
            masks[name] = (
                ((yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r) & (zz > 2) & (zz < shape_zyx[0] - 3)
            )
        else:
            r = [rng.uniform(0.08, 0.25) * s for s in shape_zyx]
            masks[name] = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + (
                (xx - c[2]) / r[2]
            ) ** 2 <= 1
    rot = _rotation(rng)
    xyz = Space(
        shape=tuple(shape_zyx[::-1]),
        origin=tuple(rng.uniform(-200, 200, 3)),
        spacing=(
            float(rng.uniform(0.6, 1.0)),
            float(rng.uniform(0.6, 1.0)),
            float(rng.uniform(1.5, 3.0)),
        ),
        x_orientation=tuple(rot[:, 0]),
        y_orientation=tuple(rot[:, 1]),
        z_orientation=tuple(rot[:, 2]),
    )
    return masks, zyx_of(xyz)


def write_phantom_dataset(
    root: str | os.PathLike,
    n_cases: int = 4,
    shape_zyx: tuple[int, int, int] = (48, 96, 96),
    seed: int = 0,
    layout: str = "segmentations",
) -> list[Path]:
    """Write ``n_cases`` phantom cases as ``.nii.gz``, laid out as TotalSegmentator does.

    Args:
        root: Dataset root (created if missing).
        n_cases: Number of cases.
        shape_zyx: Grid of every case (each case gets its own oblique orientation,
            spacing and origin).
        seed: Seed of the first case (case ``c`` uses ``seed + c``).
        layout: ``"segmentations"``: ``root/case_XXXX/segmentations/<organ>.nii.gz`` plus
            a synthetic CT ``root/case_XXXX/ct.nii.gz`` (the TotalSegmentator dataset);
            ``"flat"``: ``root/case_XXXX/<organ>.nii.gz`` (TotalSegmentator's output
            folder); ``"mixed"``: alternating the two.

    Returns:
        The folders holding the masks of each case.

    Raises:
        ValueError: Unknown ``layout``.
    """
    import nibabel as nib

    from .nifti import space_to_affine

    if layout not in ("segmentations", "flat", "mixed"):
        raise ValueError(f"layout must be 'segmentations', 'flat' or 'mixed', got {layout!r}")
    root = Path(root)
    cases = []
    for c in range(n_cases):
        masks, space = phantom_case(seed + c, shape_zyx)
        affine = space_to_affine(space)
        case = root / f"case_{c:04d}"
        nested = layout == "segmentations" or (layout == "mixed" and c % 2 == 0)
        seg = case / "segmentations" if nested else case
        seg.mkdir(parents=True, exist_ok=True)
        ct = np.random.default_rng(seed + c).normal(-100, 30, shape_zyx).astype(np.float32)
        for k, (name, m) in enumerate(masks.items()):
            ct[m] = 40 + 10 * k
            img = nib.Nifti1Image(m.transpose(2, 1, 0).astype(np.uint8), affine)
            img.set_qform(affine, code=1)
            img.set_sform(affine, code=1)
            img.header.set_xyzt_units("mm")
            nib.save(img, str(seg / f"{name}.nii.gz"))
        if nested:
            nib.save(nib.Nifti1Image(ct.transpose(2, 1, 0), affine), str(case / "ct.nii.gz"))
        cases.append(seg)
    return cases
