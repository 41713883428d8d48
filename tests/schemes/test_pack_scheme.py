"""``medmask pack --scheme``: a dataset's numbered label map named on the way in (its
published names and numbers), every class stored (absent ones empty: annotated, no voxels),
and the stored names map onto other schemes at index level."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from medmask import MaskArchive
from medmask.cli import main
from medmask.schemes import get_scheme

SHAPE = (12, 10, 8)  # x, y, z as NIfTI stores it


def test_amos_label_map_packed_and_mapped_onto_btcv(tmp_path):
    # AMOS numbers: 1 spleen, 2 right kidney, 3 left kidney, 6 liver, 8 "arota" (sic)
    boxes = {
        1: np.s_[0:3, 0:3, 0:3],
        2: np.s_[4:6, 0:3, 0:2],
        3: np.s_[4:6, 5:8, 0:2],
        6: np.s_[7:12, 0:10, 4:8],
        8: np.s_[0:2, 8:10, 5:8],
    }
    data = np.zeros(SHAPE, np.uint8)
    for value, box in boxes.items():
        data[box] = value
    src = tmp_path / "amos_0001.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 3.0, 1.0])), str(src))
    out = tmp_path / "amos_0001.mska"
    assert main(["pack", str(src), "--scheme", "amos", "-o", str(out), "-q"]) == 0
    scheme = get_scheme("amos")
    with MaskArchive(out) as ar:
        names = ar.all_names()
        assert set(names) == set(scheme.names())
        for cls in scheme:
            got = ar.read_array(cls.name) > 0  # (z, y, x)
            assert np.array_equal(got, (data == cls.label).transpose(2, 1, 0)), cls
            assert got.any() == (cls.label in boxes), cls  # absent labels: stored, empty
    btcv = get_scheme("btcv").map(names)
    assert btcv["right kidney"].sources == ("right kidney",)
    assert btcv["aorta"].sources == ("arota",)  # AMOS's spelling, resolved
    assert btcv.available() == [c for c in get_scheme("btcv").names() if btcv[c].sources]
