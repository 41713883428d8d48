"""Shared pytest configuration and fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["remote_support"]  # moto S3 server and fault-injecting proxy fixtures

REPO = Path(__file__).resolve().parents[1]
#: The real TotalSegmentator case beside the repository (never copied into it).
REAL_CASE = Path(
    os.environ.get("MEDMASK_REAL_CASE", REPO.parent / "shared" / "data" / "totalseg_s0000")
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run the long variants (marker 'slow')")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="long variant: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def real_case() -> Path:
    """Folder of the 117 real TotalSegmentator masks; skips when absent."""
    if not (REAL_CASE.is_dir() and any(REAL_CASE.glob("*.nii.gz"))):
        pytest.skip(f"real case not found at {REAL_CASE}")
    return REAL_CASE


def write_nifti_case(
    folder: Path,
    masks: dict,
    affine,
    *,
    header=None,
    image_seed: int | None = 0,
    labelmap: bool = False,
    archives: dict | None = None,
) -> Path:
    """Write a TotalSegmentator-like NIfTI case (shared by the MONAI and NIfTI tests).

    Writes ``folder/segmentations/<name>.nii.gz`` (one binary ``(x, y, z)`` mask each),
    ``ct.nii.gz`` (float32 noise from ``image_seed``; none when ``None``), ``labels.nii.gz``
    (uint8, the k-th mask labelled k, later masks winning; when ``labelmap``), and packs the
    masks with ``folder_to_archive`` into each ``{file name: codec}`` of ``archives``.

    Args:
        folder: The case folder (created when missing).
        masks: ``{name: (x, y, z) uint8 array}``, in label order.
        affine: The NIfTI affine (``None`` when ``header`` sets it).
        header: Optional ``f(image) -> image`` applied to every file before saving
            (e.g. sform/qform codes that differ).
        image_seed: Seed of the ``ct.nii.gz`` noise, or ``None`` for no image.
        labelmap: Also write ``labels.nii.gz``.
        archives: ``{archive file name: codec}`` to pack (``None`` codec: version 2).

    Returns:
        ``folder``.
    """
    import nibabel as nib
    import numpy as np

    from medmask.nifti import folder_to_archive

    def save(data, path: Path) -> None:
        img = nib.Nifti1Image(data, affine)
        nib.save(header(img) if header is not None else img, str(path))

    seg = folder / "segmentations"
    seg.mkdir(parents=True, exist_ok=True)
    for name, a in masks.items():
        save(a, seg / f"{name}.nii.gz")
    shape = next(iter(masks.values())).shape
    if image_seed is not None:
        save(
            np.random.default_rng(image_seed).normal(size=shape).astype(np.float32),
            folder / "ct.nii.gz",
        )
    if labelmap:
        lab = np.zeros(shape, np.uint8)
        for k, a in enumerate(masks.values(), start=1):
            lab[a == 1] = k
        save(lab, folder / "labels.nii.gz")
    for name, codec in (archives or {}).items():
        folder_to_archive(seg, folder / name, codec=codec)
    return folder


@pytest.fixture(scope="session")
def nifti_case():
    """:func:`write_nifti_case`: builds a NIfTI case folder (skips without nibabel)."""
    pytest.importorskip("nibabel")
    return write_nifti_case
