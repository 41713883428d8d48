"""A collection of every kind pack-tree reads, mixed at any depth (shared by the local and
Dask tests): NIfTI case folders, DICOM SEGs in IDC's collection/patient/study/series
layout (one with its CT series beside it, two of one absent series, one split in two
instances), other DICOM files, a Slicer ``.seg.nrrd`` and files that are no case."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from interop_support import highdicom_seg, oblique_space, write_ct_series
from seg_support import SegGrid, SegIds, square_frames, write_seg

from medmask import MaskArchive
from medmask.conversions import from_archive
from medmask.phantoms import write_phantom_dataset

#: The image series the two SEGs of ``P2`` reference (absent from the tree).
ABSENT = "1.2.826.0.1.3680043.8.498.77"


@dataclass
class Tree:
    root: Path
    ct_series: str  # SeriesInstanceUID of the CT beside SEG 1
    ct_files: int
    seg1_masks: list[np.ndarray]  # on the CT's grid
    seg2: SegIds
    seg3: SegIds
    split: SegIds  # two instances of one SEG series
    slicer_masks: dict[str, np.ndarray] = field(default_factory=dict)
    expected: dict[str, str] = field(default_factory=dict)  # archive name -> case rel


def build_tree(root: Path) -> Tree:
    """Write the collection under ``root``."""
    write_phantom_dataset(root / "nifti", n_cases=2, shape_zyx=(8, 10, 10), layout="mixed")
    study = root / "idc" / "collection" / "P1" / "ST1"
    space = oblique_space(shape_zyx=(9, 12, 14))
    ct_files = write_ct_series(study / "CT_A", space)
    masks = [np.zeros(tuple(space.shape), bool) for _ in range(3)]
    masks[0][2:5, 3:8, 4:9] = True
    masks[1][6:8, 1:4, 2:12] = True  # masks[2] empty
    (study / "SEG1").mkdir(parents=True)
    highdicom_seg(study / "CT_A", masks, ["liver", "spleen", "kidney"], study / "SEG1" / "1-1.dcm")
    from pydicom import dcmread

    ct_series = str(dcmread(ct_files[0], stop_before_pixels=True).SeriesInstanceUID)
    grid = SegGrid(16, 18)
    p2 = root / "idc" / "collection" / "P2" / "ST2"
    seg2 = SegIds(patient="P2", series="1.2.826.0.1.3680043.8.498.201", referenced_series=ABSENT)
    seg3 = SegIds(patient="P2", series="1.2.826.0.1.3680043.8.498.202", referenced_series=ABSENT)
    for folder, ids, top in (("SEG2", seg2, 2), ("SEG3", seg3, 6)):
        (p2 / folder).mkdir(parents=True)
        write_seg(
            p2 / folder / "seg.dcm",
            grid,
            [("aorta", square_frames(grid, [0, 1, 2, 3], top, 3, 4))],
            ids=ids,
        )
    split = SegIds(
        patient="P3",
        series="1.2.826.0.1.3680043.8.498.301",
        frame_of_reference="1.2.826.0.1.3680043.8.498.302",
        referenced_series=None,
    )
    (root / "idc" / "collection" / "P3").mkdir(parents=True)
    for k in (1, 2):
        write_seg(
            root / "idc" / "collection" / "P3" / f"part{k}",  # no suffix: told by content
            grid,
            [(f"lobe_{k}", square_frames(grid, [k, k + 1], k, k, 3))],
            ids=split,
            instance_number=k,
        )
    slicer = _slicer(root / "slicer" / "case.seg.nrrd")
    (root / "README.txt").write_text("a collection\n")
    (root / "idc" / "notes.json").write_text("{}\n")
    tree = Tree(root, ct_series, len(ct_files), masks, seg2, seg3, split, slicer)
    tree.expected = {
        "nifti__case_0000": "nifti/case_0000/segmentations",
        "nifti__case_0001": "nifti/case_0001",
        ct_series: "idc/collection/P1/ST1/SEG1/1-1.dcm",
        f"{ABSENT}__{seg2.series}": "idc/collection/P2/ST2/SEG2/seg.dcm",
        f"{ABSENT}__{seg3.series}": "idc/collection/P2/ST2/SEG3/seg.dcm",
        "idc__collection__P3__part1": "idc/collection/P3/part1",
        "slicer__case": "slicer/case.seg.nrrd",
    }
    return tree


def _slicer(path: Path) -> dict[str, np.ndarray]:
    space = oblique_space(shape_zyx=(5, 6, 7))
    masks = {"left": np.zeros((5, 6, 7), bool), "right": np.zeros((5, 6, 7), bool)}
    masks["left"][1:3, 1:3, 1:3] = True
    masks["right"][2:4, 2:5, 3:6] = True  # overlaps "left": two layers
    path.parent.mkdir(parents=True)
    with MaskArchive(path.with_suffix(".tmp.mska"), "w", space=space) as ar:
        for n, m in masks.items():
            ar.add(n, m)
    from_archive(path.with_suffix(".tmp.mska"), path)
    path.with_suffix(".tmp.mska").unlink()
    return masks


def check_packed(tree: Tree, dest: Path) -> None:
    """Every archive holds what its source holds."""
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.mska" for n in tree.expected)
    with MaskArchive(dest / f"{tree.ct_series}.mska") as ar:  # on the CT's full grid
        assert ar.space.shape == tree.seg1_masks[0].shape
        for name, m in zip(["liver", "spleen", "kidney"], tree.seg1_masks, strict=True):
            assert np.array_equal(ar.read_array(name), m), name
    for ids, top in ((tree.seg2, 2), (tree.seg3, 6)):
        with MaskArchive(dest / f"{ABSENT}__{ids.series}.mska") as ar:  # its own positions
            assert ar.space.shape == (4, 16, 18)
            assert ar.info("aorta").bbox == (0, 4, top, top + 4, 3, 7)
    with MaskArchive(dest / "idc__collection__P3__part1.mska") as ar:
        assert ar.all_names() == ["lobe_1", "lobe_2"] and ar.space.shape == (3, 16, 18)
    with MaskArchive(dest / "slicer__case.mska") as ar:
        for n, m in tree.slicer_masks.items():
            assert np.array_equal(ar.read_array(n), m)
    for name in ("nifti__case_0000", "nifti__case_0001"):
        with MaskArchive(dest / f"{name}.mska") as ar:
            assert len(ar) > 3 and "liver" in ar.all_names()
