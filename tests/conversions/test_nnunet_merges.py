"""``medmask unpack-tree --labels`` takes merges (one rule: ``LabelTable``): an nnU-Net
dataset with one kidney class from ``kidney_left`` and ``kidney_right``, ``dataset.json``
with one entry per label, accepted by nnU-Net v2's own dataset check."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medmask import MaskArchive
from medmask.cli import main
from medmask.spaces import default_space

SHAPE = (10, 12, 14)


def organs(k: int) -> dict[str, np.ndarray]:
    z, y, x = np.indices(SHAPE)
    return {
        "liver": (z < 5 + k) & (y < 6) & (x < 7),
        "kidney_left": (z >= 4) & (y >= 7) & (x < 5),
        "kidney_right": (z >= 4) & (y >= 7) & (x >= 9),
        "spleen": (z >= 6) & (y < 4) & (x >= 10),
    }


def test_unpack_tree_with_a_merged_kidney_class(tmp_path):
    packed = tmp_path / "packed"
    packed.mkdir()
    cases = {}
    for k, case in enumerate(["c1", "c2"]):
        cases[case] = organs(k)
        with MaskArchive(packed / f"{case}.mska", "w", space=default_space(SHAPE)) as ar:
            for n, a in cases[case].items():
                ar.add(n, a)
    table = tmp_path / "classes.json"
    table.write_text(json.dumps({"liver": 1, "kidney_left": 2, "kidney_right": 2}))
    out = tmp_path / "Dataset101_Kidney"
    argv = ["unpack-tree", packed, "-o", out, "--labels", table, "-q"]
    assert main([str(a) for a in argv]) == 0
    ds = json.loads((out / "dataset.json").read_text())
    assert ds["labels"] == {"background": 0, "liver": 1, "kidney_left+kidney_right": 2}
    for case, masks in cases.items():
        img = nib.load(out / "labelsTr" / f"{case}.nii.gz")
        got = np.asarray(img.dataobj).transpose(2, 1, 0)
        want = np.zeros(SHAPE, np.uint8)
        want[masks["liver"]] = 1
        want[masks["kidney_left"] | masks["kidney_right"]] = 2
        assert np.array_equal(got, want), case
        # nnU-Net needs images: a zero CT on the same grid, as imagesTr/<case>_0000
        (out / "imagesTr").mkdir(exist_ok=True)
        ct = nib.Nifti1Image(np.zeros(img.shape, np.float32), img.affine)
        nib.save(ct, out / "imagesTr" / f"{case}_0000.nii.gz")
    verify = pytest.importorskip("nnunetv2.experiment_planning.verify_dataset_integrity")
    verify.verify_dataset_integrity(str(out), num_processes=1)
