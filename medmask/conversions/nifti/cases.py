"""Where the masks of a local dataset are: the folders that directly hold NIfTI masks
(*cases*), in TotalSegmentator's layout or as plain folders of masks."""

from __future__ import annotations

import os
from pathlib import Path

from ..names import NIFTI_SUFFIXES
from .images import image_name

__all__ = ["is_mask_file_name", "holds_masks", "mask_folders"]


def is_mask_file_name(name: str) -> bool:
    """Whether a file name is a NIfTI mask's (``.nii.gz`` / ``.nii``, not hidden)."""
    return name.endswith(NIFTI_SUFFIXES) and not name.startswith(".")


def holds_masks(names: list[str]) -> bool:
    """Whether a folder with these file names holds masks: a NIfTI file that is not named
    as an image (a folder of images only, such as nnU-Net's ``imagesTr`` of
    ``case_0000.nii.gz``, is not a case)."""
    return any(is_mask_file_name(n) and not image_name(n) for n in names)


def _has_nifti(d: Path) -> bool:
    try:
        return holds_masks([p.name for p in d.iterdir() if p.is_file()])
    except OSError:
        return False


def _is_case(d: Path) -> bool:
    """A folder holding masks; in TotalSegmentator's layout (``CASE/ct.nii.gz`` beside
    ``CASE/segmentations/``) the ``segmentations`` folder is the case, not ``CASE``."""
    return _has_nifti(d) and not (d / "segmentations").is_dir()


def mask_folders(root: str | os.PathLike) -> list[Path]:
    """The case folders under a local root (the root itself when it is one).

    A case is a folder that directly holds NIfTI masks (:func:`holds_masks`: a folder of
    images only is not one); in TotalSegmentator's layout
    (``CASE/ct.nii.gz`` + ``CASE/segmentations/<organ>.nii.gz``) the ``segmentations``
    folder is the case and the image beside it is not a mask. Hidden folders and files are
    skipped.

    Args:
        root: A local folder.

    Returns:
        The case folders, sorted (``[root]`` when ``root`` is a case).

    Raises:
        FileNotFoundError: ``root`` does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder")
    if _is_case(root):
        return [root]
    found = []
    for dirpath, dirnames, _files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        d = Path(dirpath)
        if d != root and _is_case(d):
            found.append(d)
    return sorted(found)
