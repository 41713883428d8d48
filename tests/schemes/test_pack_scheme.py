"""``medmask pack --scheme``: a dataset's numbered label map named on the way in, under the
canonical vocabulary (AMOS's 2 "right kidney" -> kidney_right, MSD Task03's 2 "cancer" ->
liver_tumor), so that every scheme maps the archive without knowing where it came from."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medmask import MaskArchive
from medmask.cli import main
from medmask.schemes import get_scheme

SHAPE = (12, 10, 8)  # x, y, z as NIfTI stores it


def _label_map(tmp_path, labels: dict[int, tuple[slice, ...]], name: str):
    data = np.zeros(SHAPE, np.uint8)
    for value, box in labels.items():
        data[box] = value
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.diag([1.5, 1.5, 3.0, 1.0])), str(path))
    return path, data


def test_amos_label_map_gets_canonical_names(tmp_path):
    # AMOS numbers: 1 spleen, 2 right kidney, 3 left kidney, 6 liver, 8 "arota" (sic)
    boxes = {
        1: np.s_[0:3, 0:3, 0:3],
        2: np.s_[4:6, 0:3, 0:2],
        3: np.s_[4:6, 5:8, 0:2],
        6: np.s_[7:12, 0:10, 4:8],
        8: np.s_[0:2, 8:10, 5:8],
    }
    src, data = _label_map(tmp_path, boxes, "amos_0001.nii.gz")
    out = tmp_path / "amos_0001.mska"
    assert main(["pack", str(src), "--scheme", "amos", "-o", str(out), "-q"]) == 0
    scheme = get_scheme("amos")
    with MaskArchive(out) as ar:
        names = ar.all_names()
        assert set(names) == set(scheme.canonical_table().to_dict())
        for cls in scheme:
            got = ar.read_array(cls.canonical) > 0  # (z, y, x)
            want = (data == cls.label).transpose(2, 1, 0)
            assert np.array_equal(got, want), cls
            assert got.any() == (cls.label in boxes), cls  # absent labels: stored, empty
    # the stored names map onto other schemes with no source given
    btcv = get_scheme("btcv").map(names)
    assert not btcv.unknown
    assert btcv["right kidney"].sources == ("kidney_right",)
    assert btcv["aorta"].sources == ("aorta",)
    assert get_scheme("totalseg").map(names).unknown == {}


def test_msd_scoped_names_become_canonical(tmp_path):
    src, data = _label_map(tmp_path, {1: np.s_[0:6], 2: np.s_[2:4, 2:4, 2:4]}, "liver_7.nii.gz")
    out = tmp_path / "liver_7.mska"
    assert main(["pack", str(src), "--scheme", "msd_task03_liver", "-o", str(out), "-q"]) == 0
    with MaskArchive(out) as ar:
        assert sorted(ar.all_names()) == ["liver", "liver_tumor"]
        got = ar.read_array("liver_tumor") > 0
        assert np.array_equal(got, (data == 2).transpose(2, 1, 0))


def test_a_scheme_file_and_a_label_outside_the_scheme(tmp_path, capsys):
    src, _ = _label_map(tmp_path, {1: np.s_[0:3], 2: np.s_[5:8]}, "c.nii.gz")
    own = tmp_path / "mine.json"
    own.write_text(json.dumps({"gall_bladder": 1}))
    out = tmp_path / "c.mska"
    # label 2 is not in the scheme: refused (its voxels would be lost), nothing written
    assert main(["pack", str(src), "--scheme", str(own), "-o", str(out), "-q"]) != 0
    assert not out.exists()
    assert "2" in capsys.readouterr().err
    argv = ["pack", str(src), "--scheme", str(own), "--drop-unlisted", "-o", str(out), "-q"]
    assert main(argv) == 0
    with MaskArchive(out) as ar:
        assert ar.all_names() == ["gallbladder"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scheme", "amoss"], "amos"),  # close matches
        (["--scheme", "amos", "--labels", "t.json"], "not both"),
    ],
)
def test_bad_scheme_arguments_are_usage_errors(tmp_path, capsys, extra, message):
    src, _ = _label_map(tmp_path, {1: np.s_[0:3]}, "c.nii.gz")
    out = tmp_path / "c.mska"
    assert main(["pack", str(src), "-o", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
