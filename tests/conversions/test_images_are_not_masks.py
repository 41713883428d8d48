"""An image in a folder of masks is called an image, never packed as a mask (issue 22, item 2).

An MR volume (uint16, 0..799), a float image or a file named like an image (t1, image,
nnU-Net's _0000) is refused with "it looks like an image", as a CT is; the advice never
suggests --binarize for one (and --binarize refuses it too). A label map gets label-map
advice; a 0/255 mask keeps the --binarize hint. A folder of images only is not a case.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medmask.conversions import NeedsOptionError, to_archive
from medmask.conversions.nifti.images import image_name
from medmask.errors import MaskValidationError
from medmask.packing import find_cases

SHAPE = (24, 20, 16)


def _save(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 2.0, 1.0])), str(path))
    return path


def _case(tmp_path: Path, name: str, data: np.ndarray) -> Path:
    case = tmp_path / "case"
    m = np.zeros(SHAPE, np.uint8)
    m[4:9, 5:10, 2:6] = 1
    _save(case / "liver.nii.gz", m)
    _save(case / name, data)
    return case


def _mr(dtype=np.uint16, top=800) -> np.ndarray:
    return np.random.default_rng(0).integers(0, top, SHAPE).astype(dtype)


@pytest.mark.parametrize(
    ("name", "data", "why"),
    [
        ("t1.nii.gz", _mr(), "800 distinct values (0..799)"),
        ("scan.nii.gz", _mr(np.uint8, 200), "distinct values in 9"),  # 99% non-zero
        ("image.nii.gz", _mr(np.float32, 5) + 0.5, "fractional values"),
        ("case_0000.nii.gz", _mr(np.uint8, 4), "an image's name ('case_0000.nii.gz')"),
        ("sub-01_T2w.nii.gz", _mr(np.uint8, 6), "an image's name"),
    ],
)
def test_an_image_in_a_folder_of_masks_is_called_an_image(tmp_path, name, data, why):
    case = _case(tmp_path, name, data)
    for binarize in (False, True):
        with pytest.raises(MaskValidationError) as err:
            to_archive(case, tmp_path / "out.mska", binarize=binarize)
        text = str(err.value)
        assert not isinstance(err.value, NeedsOptionError)  # no option makes it a mask
        assert text.startswith(str(case / name)) and why in text
        assert "it looks like an image (a CT or MR volume), not a mask" in text
        assert "binarize=True" not in text and "--binarize reads every" not in text
        assert not (tmp_path / "out.mska").exists()


def test_a_label_map_gets_label_map_advice_and_a_0_255_mask_the_binarize_hint(tmp_path):
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:6, 2:6, 2:6], labels[8:12, 8:12, 8:12] = 1, 2
    case = _case(tmp_path, "t1_mask.nii.gz", labels)  # 'mask' wins over 't1'
    with pytest.raises(NeedsOptionError) as err:
        to_archive(case, tmp_path / "out.mska")
    assert "looks like a label map" in str(err.value) and "--labels TABLE" in str(err.value)
    assert "binarize" not in str(err.value)
    (case / "t1_mask.nii.gz").unlink()
    _save(case / "kidney.nii.gz", (labels > 0).astype(np.uint8) * 255)
    with pytest.raises(NeedsOptionError, match="0 and 255.*--binarize reads every non-zero"):
        to_archive(case, tmp_path / "out.mska")
    report = to_archive(case, tmp_path / "out.mska", binarize=True)
    assert sorted(report.masks) == ["kidney", "liver"]


def test_image_names():
    for n in ("t1.nii.gz", "T2w.nii", "sub-01_FLAIR.nii.gz", "ct.nii.gz", "la_003_0000.nii.gz"):
        assert image_name(n), n
    for n in ("liver.nii.gz", "t1_mask.nii.gz", "heart.nii.gz", "ct_seg.nii.gz", "pct.nii.gz"):
        assert not image_name(n), n


def test_a_folder_of_images_is_not_a_case(tmp_path):
    raw = tmp_path / "Dataset001"
    _save(raw / "imagesTr" / "la_003_0000.nii.gz", _mr())
    _save(raw / "imagesTr" / "la_004_0000.nii.gz", _mr())
    m = np.zeros(SHAPE, np.uint8)
    m[1:3, 1:3, 1:3] = 1
    _save(raw / "s0001" / "liver.nii.gz", m)
    _save(raw / "s0001" / "ct.nii.gz", _mr())  # an image beside masks: still a case
    assert [Path(c) for c in find_cases(raw)] == [raw / "s0001"]
