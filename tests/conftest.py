"""Shared pytest configuration and fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["remote_support"]  # moto S3 server and fault-injecting proxy fixtures

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
#: The real TotalSegmentator case beside the repository (never copied into it); env
#: ``MEDMASK_REAL_CASE`` points elsewhere.
REAL_CASE = Path(os.environ.get("MEDMASK_REAL_CASE", SHARED / "totalseg_s0000"))
#: The interchange samples (a Slicer ``.seg.nrrd``, a highdicom DICOM SEG); env
#: ``MEDMASK_INTERCHANGE`` points elsewhere.
INTERCHANGE = Path(os.environ.get("MEDMASK_INTERCHANGE", SHARED / "interchange"))
INTERCHANGE_FILES = ("Segmentation.seg.nrrd", "seg_image_ct_binary.dcm")
#: The fixtures that hand out sample data: a test that uses one carries ``realdata``.
REAL_DATA_FIXTURES = {"real_case", "interchange"}
#: ``config.<this>``: the tests that use sample data without the ``realdata`` marker (checked
#: by tests/architecture/test_test_rules.py; an attribute, not a stash key, because a test
#: module cannot import this conftest by name when other folders' conftests are loaded too).
UNMARKED_REAL_DATA = "medmask_unmarked_real_data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run the long variants (marker 'slow')")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [
        item.nodeid
        for item in items
        if REAL_DATA_FIXTURES & set(getattr(item, "fixturenames", ()))
        and "realdata" not in item.keywords
    ]
    setattr(config, UNMARKED_REAL_DATA, unmarked)
    if config.getoption("--runslow") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="long variant: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def real_case() -> Path:
    """Folder of the 117 real TotalSegmentator masks (``MEDMASK_REAL_CASE``); skips when absent."""
    if not (REAL_CASE.is_dir() and any(REAL_CASE.glob("*.nii.gz"))):
        pytest.skip(f"sample data: real case not found at {REAL_CASE} (set MEDMASK_REAL_CASE)")
    return REAL_CASE


@pytest.fixture(scope="session")
def interchange() -> Path:
    """Folder of the interchange samples (``MEDMASK_INTERCHANGE``): ``Segmentation.seg.nrrd``
    (3D Slicer) and ``seg_image_ct_binary.dcm`` (highdicom); skips when absent."""
    missing = [n for n in INTERCHANGE_FILES if not (INTERCHANGE / n).is_file()]
    if missing:
        pytest.skip(
            f"sample data: {', '.join(missing)} not found in {INTERCHANGE} (set MEDMASK_INTERCHANGE)"
        )
    return INTERCHANGE


#: A few masks of the real case for the fast real-data tests: overlapping ones (rib_right_12
#: lies inside the sacrum; femur/hip touch), big and small, one empty.
REAL_FEW = (
    "adrenal_gland_left",
    "colon",
    "femur_right",
    "hip_left",
    "liver",
    "rib_right_12",
    "sacrum",
    "urinary_bladder",
)


@pytest.fixture
def real_subset(real_case, tmp_path):
    """``f(names=REAL_FEW) -> folder``: a folder of links to some masks of the real case
    (the fast real-data tests use it; the whole case is for the ``--runslow`` variants)."""

    def make(names=REAL_FEW) -> Path:
        folder = tmp_path / "real_subset"
        folder.mkdir(exist_ok=True)
        for name in names:
            src = real_case / f"{name}.nii.gz"
            assert src.is_file(), f"{src}: not in the real case"
            (folder / src.name).symlink_to(src)
        return folder

    return make


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
