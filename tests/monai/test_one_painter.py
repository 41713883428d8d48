"""One label-map painter: ``LoadMask``'s label-map mode, ``MaskArchive.read_window`` and the
NIfTI label-map export paint the same label map from the same table, overlaps, merges and
labels in any order included; the export's overlap rules and its loss report come from the
painter and agree with a brute-force reference written here."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medmask import MaskArchive, SegmentationMask
from medmask.conversions.nifti import export_labelmap
from medmask.labeltable import LabelTable
from medmask.spaces import default_space
from medmask_monai import LoadMask

SHAPE = (12, 14, 17)


def overlapping_masks() -> dict[str, np.ndarray]:
    """Boxes that overlap pairwise, of different sizes, one empty, one multi-label map."""
    z, y, x = np.indices(SHAPE)
    masks = {
        "big": (z < 9) & (y < 10) & (x < 12),
        "mid": (z >= 3) & (y >= 4) & (x >= 5) & (x < 14),
        "small": (abs(z - 5) <= 1) & (abs(y - 6) <= 2) & (abs(x - 7) <= 2),
        "empty": np.zeros(SHAPE, bool),
        "tail": (z >= 8) & (x >= 10),
    }
    return masks


@pytest.fixture
def archive(tmp_path):
    masks = overlapping_masks()
    path = tmp_path / "o.mska"
    with MaskArchive(path, "w", space=default_space(SHAPE)) as ar:
        for n, a in masks.items():
            ar.add(n, a)
    return path, masks


def brute(masks: dict, table: dict, overlap: str = "last") -> tuple[np.ndarray, dict, dict]:
    """Whole volumes painted in the rule's order; ``(label map, voxels, lost)``."""
    names = list(table)
    if overlap == "first":
        names.reverse()
    elif overlap == "smaller":
        names.sort(key=lambda n: -int(masks[n].sum()))
    out = np.zeros(SHAPE, np.int64)
    for n in names:
        out[masks[n]] = table[n]
    voxels = {n: int(masks[n].sum()) for n in table}
    lost = {n: voxels[n] - int((out[masks[n]] == table[n]).sum()) for n in table}
    return out, voxels, {n: v for n, v in lost.items() if v}


TABLES = [
    None,
    ["small", "big", "tail"],
    {"big": 5, "mid": 2, "small": 9, "tail": 2},  # decreasing labels and a merge
    {"tail": 300, "big": 1, "small": 7},  # int16 output
]


@pytest.mark.parametrize("names", TABLES, ids=["all", "list", "merge", "wide"])
def test_loadmask_read_window_and_export_paint_the_same_label_map(archive, names, tmp_path):
    path, masks = archive
    table = (
        {n: k for k, n in enumerate(masks, 1)}
        if names is None
        else (dict(names) if isinstance(names, dict) else {n: k for k, n in enumerate(names, 1)})
    )
    want, voxels, lost = brute(masks, table)
    loaded = LoadMask(names=names)(path)  # (1, x, y, z)
    got = np.asarray(loaded)[0].transpose(2, 1, 0)
    assert np.array_equal(got, want)
    with MaskArchive(path) as ar:
        window = ar.read_window((slice(None),) * 3, names)
        assert window.dtype == np.asarray(loaded).dtype and np.array_equal(window, want)
    res = export_labelmap(path, tmp_path / "l.nii.gz", labels=table)
    back = np.asarray(nib.load(tmp_path / "l.nii.gz").dataobj).transpose(2, 1, 0)
    assert np.array_equal(back, want)
    assert res.voxels == voxels and res.lost == lost
    assert json.loads((tmp_path / "l.json").read_text()) == table


@pytest.mark.parametrize("overlap", ["last", "first", "smaller"])
def test_export_rules_and_loss_report(archive, overlap, tmp_path):
    path, masks = archive
    table = {"big": 1, "mid": 2, "small": 3, "empty": 4, "tail": 5}  # archive order
    want, voxels, lost = brute(masks, table, overlap)
    res = export_labelmap(path, tmp_path / "l.nii.gz", overlap=overlap)
    back = np.asarray(nib.load(tmp_path / "l.nii.gz").dataobj).transpose(2, 1, 0)
    assert np.array_equal(back, want), overlap
    assert res.voxels == voxels and res.lost == lost and res.overlap_rule == overlap
    assert res.emptied == [n for n, v in lost.items() if v == voxels[n]]
    assert lost, "the fixture's masks overlap"
    if overlap == "smaller":
        assert "small" not in lost  # the smallest structure survives


def test_a_merge_is_one_class_in_the_files_own_table(archive, tmp_path):
    path, masks = archive
    table = LabelTable({"big": 1, "mid": 2, "tail": 2}, class_names={2: "rest"})
    res = export_labelmap(path, tmp_path / "l.nii.gz", labels=table)
    from medmask.conversions.nifti import nifti_label_table

    header, _colors = nifti_label_table(tmp_path / "l.nii.gz")
    assert dict(header) == {"big": 1, "rest": 2}  # one name per label in the header
    assert res.table == {"big": 1, "mid": 2, "tail": 2}  # the whole table in the report
    assert "mid" not in res.lost or res.lost["mid"] < res.voxels["mid"]


def test_multilabel_masks_are_painted_per_label(tmp_path):
    space = default_space(SHAPE)
    lab = np.zeros(SHAPE, np.uint8)
    lab[:4] = 3
    lab[4:7] = 5
    single = np.zeros(SHAPE, bool)
    single[5:9] = True
    with MaskArchive(tmp_path / "m.mska", "w", space=space) as ar:
        ar.add("kidneys", SegmentationMask(lab, {"kidney_left": 3, "kidney_right": 5}, space))
        ar.add("liver", single)
    res = export_labelmap(tmp_path / "m.mska", tmp_path / "l.nii.gz", overlap="first")
    back = np.asarray(nib.load(tmp_path / "l.nii.gz").dataobj).transpose(2, 1, 0)
    want = np.zeros(SHAPE, np.uint8)
    want[single] = 3
    want[lab == 5] = 2
    want[lab == 3] = 1
    assert np.array_equal(back, want)
    assert res.table == {"kidney_left": 1, "kidney_right": 2, "liver": 3}
    assert res.lost == {"liver": int((single & (lab == 5)).sum())}
