"""pack-tree over collections of every kind pack reads: discovery (DICOM SEG by SOP class at
any depth, SEG series of several instances, referenced images found in the tree, .seg.nrrd,
NIfTI folders, label maps with a label table or a scheme), the naming rule (referenced
series, --name-by, collisions settled), the source identifiers, resumability, and the
failure report (the rest is packed, the exit status says something failed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("highdicom")

from mixed_tree import ABSENT, build_tree, check_packed  # noqa: E402
from seg_support import SegGrid, SegIds, square_frames, write_seg  # noqa: E402

from medmask import MaskArchive  # noqa: E402
from medmask.errors import MaskValidationError  # noqa: E402
from medmask.packing import (  # noqa: E402
    Case,
    case,
    discover,
    find_cases,
    pack_tree,
    plan_outputs,
)
from medmask.packing.discover import SKIPPED_DICOM, SKIPPED_REPEATS  # noqa: E402
from medmask.schemes import VocabularyError, get_scheme  # noqa: E402


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return build_tree(tmp_path_factory.mktemp("collection"))


def _names(tree, dest) -> dict[str, str]:
    """``{archive name: case rel}`` of a plan."""
    cases = find_cases(tree.root)
    return {Path(o).stem: c.rel for c, o in plan_outputs(tree.root, dest, cases)}


# -- discovery and naming ---------------------------------------------------------------------
def test_every_kind_is_found_and_named(tree, tmp_path):
    found = discover(tree.root)
    kinds = {c.rel: c.kind for c in found.cases}
    assert kinds == {
        "idc/collection/P1/ST1/SEG1/1-1.dcm": "dicom-seg",
        "idc/collection/P2/ST2/SEG2/seg.dcm": "dicom-seg",
        "idc/collection/P2/ST2/SEG3/seg.dcm": "dicom-seg",
        "idc/collection/P3/part1": "dicom-seg",
        "nifti/case_0000/segmentations": "folder",
        "nifti/case_0001": "folder",
        "slicer/case.seg.nrrd": "seg.nrrd",
    }
    assert found.skipped == {SKIPPED_DICOM: tree.ct_files}  # the CT slices, counted
    by_rel = {c.rel: c for c in found.cases}
    seg1 = by_rel["idc/collection/P1/ST1/SEG1/1-1.dcm"]
    assert len(seg1.reference) == tree.ct_files and seg1.name_hint == tree.ct_series
    assert seg1.ids["SeriesInstanceUID"] == tree.ct_series
    split = by_rel["idc/collection/P3/part1"]  # a series of two instances: one case
    assert [Path(f).name for f in split.files] == ["part1", "part2"]
    assert len(split.ids["SOPInstanceUID"]) == 2
    # two SEGs of one (absent) series: both kept, each named with its own series
    assert _names(tree, tmp_path) == tree.expected


def test_name_by_a_dicom_attribute(tree, tmp_path):
    cases = find_cases(tree.root, name_by="PatientID")
    names = sorted(Path(o).stem for _c, o in plan_outputs(tree.root, tmp_path, cases))
    assert "MM0001" in names  # SEG 1's patient (highdicom copies it from the CT)
    assert f"P2__{tree.seg2.series}" in names and f"P2__{tree.seg3.series}" in names
    assert "P3" in names and "slicer__case" in names
    # an attribute a SEG lacks: the referenced series names it
    cases = find_cases(tree.root, name_by="NoSuchAttribute")
    names = sorted(Path(o).stem for _c, o in plan_outputs(tree.root, tmp_path, cases))
    assert tree.ct_series in names


def test_a_case_given_alone(tree, tmp_path):
    seg = tree.root / "idc" / "collection" / "P2" / "ST2" / "SEG2" / "seg.dcm"
    c = case.as_case(seg)
    assert c.kind == "dicom-seg" and c.files == (str(seg),)
    r = case.pack_case(seg, tmp_path / "one.mska")
    assert r.status == "packed" and r.masks == 1
    with pytest.raises(MaskValidationError, match="not a case"):
        case.as_case(tree.root / "README.txt")


# -- packing ----------------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_mixed_tree_packs_and_resumes(tree, tmp_path, workers):
    dest = tmp_path / "packed"
    report = pack_tree(tree.root, dest, workers=workers)
    assert report.ok, [r.error for r in report.failed]
    assert len(report.packed) == 7 and f"{SKIPPED_DICOM} skipped: {tree.ct_files}" in (
        report.summary()
    )
    check_packed(tree, dest)
    again = pack_tree(tree.root, dest, workers=workers)
    assert [r.status for r in again.results] == ["skipped"] * 7
    # a changed source is packed again, the rest is not
    seg2 = tree.root / "idc" / "collection" / "P2" / "ST2" / "SEG2" / "seg.dcm"
    out = dest / f"{ABSENT}__{tree.seg2.series}.mska"
    os.utime(out, (out.stat().st_mtime - 100, out.stat().st_mtime - 100))
    third = pack_tree(tree.root, dest, workers=workers)
    assert [r.case for r in third.packed] == [str(seg2)]


def test_source_identifiers_are_recorded(tree, tmp_path):
    """Each archive's ``source`` archive attribute (format 2.3) holds the SEG's identifiers,
    its format and its path below the root; medmask.stats carries it on every row."""
    dest = tmp_path / "p"
    report = pack_tree(tree.root, dest, workers=1)
    assert report.ok
    seen: dict[str, dict] = {}
    grids: dict[str, str | None] = {}
    for r in report.packed:
        with MaskArchive(r.out) as ar:
            assert ar.layout.archive_attrs  # format 2.3
            seen[ar.archive_attrs["source"]["path"]] = dict(ar.archive_attrs["source"])
            grids[ar.archive_attrs["source"]["path"]] = ar.grid_kind
    assert len(seen) == 7
    seg2 = seen["idc/collection/P2/ST2/SEG2/seg.dcm"]
    assert seg2 == {
        "PatientID": "P2",
        "StudyInstanceUID": seg2["StudyInstanceUID"],
        "SeriesInstanceUID": ABSENT,
        "SegSeriesInstanceUID": tree.seg2.series,
        "SOPInstanceUID": seg2["SOPInstanceUID"],
        "Modality": "SEG",
        "AlgorithmName": "TotalSegmentator",
        "AlgorithmVersion": "2.4.0",
        "format": "dicom-seg",
        "path": "idc/collection/P2/ST2/SEG2/seg.dcm",
    }
    assert seg2["SOPInstanceUID"].startswith("1.") and seg2["StudyInstanceUID"]
    # a SEG series of two instances: both instances, a list (docs/format.md)
    assert len(seen["idc/collection/P3/part1"]["SOPInstanceUID"]) == 2
    # a SEG whose images are in the tree lies on their grid; one without, on its own extent
    assert grids["idc/collection/P1/ST1/SEG1/1-1.dcm"] == "image"
    assert grids["idc/collection/P2/ST2/SEG2/seg.dcm"] == "segmentation"
    assert seen["slicer/case.seg.nrrd"] == {"format": "seg.nrrd", "path": "slicer/case.seg.nrrd"}
    assert seen["nifti/case_0001"] == {"format": "folder", "path": "nifti/case_0001"}
    pytest.importorskip("pandas")
    from medmask.stats import stats

    df = stats(sorted(dest.glob("*.mska")))
    joined = df["archive_source"].str.get("SeriesInstanceUID")
    assert set(joined.dropna()) >= {ABSENT, tree.ct_series}
    assert set(df["archive_source"].str.get("path")) == set(seen)


def test_failures_are_reported_and_the_rest_is_packed(tree, tmp_path):
    root = tmp_path / "bad"
    grid = SegGrid(10, 10)
    good = write_seg(
        _mk(root / "a" / "good.dcm"), grid, [("x", square_frames(grid, [0, 1], 1, 1, 3))]
    )
    other = write_seg(tmp_path / "other.dcm", grid, [("y", square_frames(grid, [0], 1, 1, 3))])
    _mk(root / "b" / "truncated.dcm").write_bytes(other.read_bytes()[:-40])
    _mk(root / "b" / "copy_of_good.dcm").write_bytes(good.read_bytes())  # one instance twice
    write_seg(  # frames at 0, 1 and 2.5 steps, its series absent: no grid
        _mk(root / "c" / "irregular.dcm"),
        grid,
        [("x", square_frames(grid, [0, 1, 2.5], 1, 1, 3))],
        ids=SegIds(referenced_series="1.2.3.404"),
    )
    from interop_support import highdicom_seg, oblique_space, write_ct_series

    space = oblique_space(shape_zyx=(4, 6, 7))
    write_ct_series(root / "d" / "ct", space)
    m = np.zeros(tuple(space.shape), bool)
    m[1:3, 1:4, 2:5] = True
    highdicom_seg(
        root / "d" / "ct",
        [m],
        ["p"],
        _mk(root / "d" / "frac.dcm"),
        seg_type="FRACTIONAL",
        fractional=[m * 0.4],
    )
    for k, frame_of_reference in enumerate(("1.2.3.100", "1.2.3.200")):  # one SEG series
        write_seg(
            _mk(root / "e" / f"for{k}.dcm"),
            grid,
            [(f"z{k}", square_frames(grid, [k], 1, 1, 3))],
            ids=SegIds(series="1.2.3.77", frame_of_reference=frame_of_reference),
        )
    report = pack_tree(root, tmp_path / "out", workers=2)
    status = {Path(r.case).name: r.status for r in report.results}
    assert status == {
        "good.dcm": "packed",
        "truncated.dcm": "failed",
        "irregular.dcm": "failed",
        "frac.dcm": "failed",
        "for0.dcm": "failed",
    }
    errors = {Path(r.case).name: r.error for r in report.failed}
    assert "another frame of reference" in errors["for0.dcm"] and "1.2.3.200" in errors["for0.dcm"]
    assert "truncated or damaged" in errors["truncated.dcm"]
    assert "1.2.3.404" in errors["irregular.dcm"] and "--reference" in errors["irregular.dcm"]
    assert "--threshold" in errors["frac.dcm"]
    assert not report.ok
    assert report.skipped_files == {SKIPPED_DICOM: 4, SKIPPED_REPEATS: 1}
    # with --threshold the fractional SEG packs; the CLI's exit status says the rest failed
    cmd = [sys.executable, "-m", "medmask", "pack-tree", str(root), "-o", str(tmp_path / "out")]
    r = subprocess.run([*cmd, "--threshold", "0.3", "-w", "1"], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    errors = [line for line in r.stderr.splitlines() if ": error: " in line]
    assert sorted(Path(e.split(": ")[2]).name for e in errors) == [
        "for0.dcm",
        "irregular.dcm",
        "truncated.dcm",
    ]
    assert "1 packed" in r.stdout and "1 already packed" in r.stdout and "3 failed" in r.stdout
    assert f"{SKIPPED_DICOM} skipped: 4" in r.stdout and f"{SKIPPED_REPEATS} skipped: 1" in r.stdout


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


# -- label maps -------------------------------------------------------------------------------
def _label_maps(root: Path) -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    maps = []
    for k, rel in enumerate(("site_a/c1.nii.gz", "site_a/c2.nii.gz", "site_b/deeper/c3.nii")):
        lab = np.zeros((9, 8, 7), np.uint8)
        for label in (1, 2, 3, 6):
            x, y, z = rng.integers(0, 5, 3)
            lab[x : x + 3, y : y + 3, z : z + 2] = label
        lab[0, 0, 0] = 13 if k == 0 else 0
        _mk(root / rel)
        nib.save(nib.Nifti1Image(lab, np.diag([0.8, 0.8, 2.0, 1.0])), root / rel)
        maps.append(lab)
    return maps


def test_label_maps_with_a_scheme_or_a_table(tmp_path):
    maps = _label_maps(tmp_path / "labels")
    found = find_cases(tmp_path / "labels", label_maps=True)
    assert [c.kind for c in found] == ["nifti"] * 3
    report = pack_tree(tmp_path / "labels", tmp_path / "btcv", scheme="btcv", workers=2)
    assert report.ok, [r.error for r in report.failed]
    table = get_scheme("btcv").table().to_dict()
    names = ["site_a__c1", "site_a__c2", "site_b__deeper__c3"]
    assert sorted(p.stem for p in (tmp_path / "btcv").iterdir()) == names
    for name, lab in zip(names, maps, strict=True):
        with MaskArchive(tmp_path / "btcv" / f"{name}.mska") as ar:
            assert ar.all_names() == list(table)
            for organ in ("spleen", "liver"):
                want = lab.transpose(2, 1, 0) == table[organ]
                assert np.array_equal(ar.read_array(organ), want), (name, organ)
    table_file = tmp_path / "t.json"
    table_file.write_text('{"a": 1, "b": 2, "c": 3, "f": 6, "m": 13}')
    report = pack_tree(tmp_path / "labels", tmp_path / "own", labels=table_file, workers=1)
    assert report.ok
    with MaskArchive(tmp_path / "own" / "site_a__c1.mska") as ar:
        assert ar.all_names() == ["a", "b", "c", "f", "m"] and ar.read_array("m").sum() == 1
    # a table without label 13: that case fails (its voxels would be lost), the rest packs
    table_file.write_text('{"a": 1, "b": 2, "c": 3, "f": 6}')
    report = pack_tree(tmp_path / "labels", tmp_path / "short", labels=table_file, workers=1)
    assert [r.status for r in report.results] == ["failed", "packed", "packed"]
    assert "13" in report.failed[0].error
    with pytest.raises(MaskValidationError, match="not both"):
        pack_tree(tmp_path / "labels", tmp_path / "x", labels=table_file, scheme="btcv")
    with pytest.raises(VocabularyError):
        pack_tree(tmp_path / "labels", tmp_path / "x", scheme="no-such-scheme")


def test_cli_label_maps_and_usage_errors(tmp_path):
    _label_maps(tmp_path / "labels")
    cmd = [sys.executable, "-m", "medmask", "pack-tree", str(tmp_path / "labels")]
    r = subprocess.run(
        [*cmd, "-o", str(tmp_path / "o"), "--scheme", "amos", "-w", "1"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "3 packed" in r.stdout
    r = subprocess.run(
        [*cmd, "-o", str(tmp_path / "o2"), "--scheme", "nope"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "nope" in r.stderr
    # without a table the files are taken for binary masks: each case fails, saying so
    r = subprocess.run([*cmd, "-o", str(tmp_path / "o3")], capture_output=True, text=True)
    assert r.returncode == 1 and "label table" in r.stderr and "2 failed" in r.stdout


# -- URLs ---------------------------------------------------------------------------------------
def test_mixed_tree_from_a_bucket(tree, s3):
    for f in sorted(tree.root.rglob("*")):
        if f.is_file():
            s3.put(f"raw/{f.relative_to(tree.root).as_posix()}", f.read_bytes())
    opts = s3.storage_options
    report = pack_tree(s3.url("raw/"), s3.url("packed/"), workers=2, storage_options=opts)
    assert report.ok, [r.error for r in report.failed]
    assert report.skipped_files == {SKIPPED_DICOM: tree.ct_files}
    assert sorted(Path(k).stem for k in s3.keys("packed/")) == sorted(tree.expected)
    local = Path(os.environ.get("TMPDIR", "/tmp")) / f"medmask-mixed-{os.getpid()}"
    local.mkdir(exist_ok=True)
    try:
        for k in s3.keys("packed/"):
            (local / Path(k).name).write_bytes(s3.get(k))
        check_packed(tree, local)
    finally:
        for f in local.iterdir():
            f.unlink()
        local.rmdir()
    again = pack_tree(s3.url("raw"), s3.url("packed"), workers=1, storage_options=opts)
    assert [r.status for r in again.results] == ["skipped"] * 7


def test_case_objects_travel_to_worker_processes():
    import pickle

    c = Case("dicom-seg", "/x/a.dcm", "a.dcm", ("/x/a.dcm",), ("/x/ct1",), {"PatientID": "p"}, "u")
    assert pickle.loads(pickle.dumps(c)) == c


def test_cli_pack_one_label_map_with_a_scheme(tmp_path, capsys):
    from medmask.cli import main

    maps = _label_maps(tmp_path / "labels")
    src = tmp_path / "labels" / "site_a" / "c2.nii.gz"
    assert (
        main(
            ["pack", str(src), "--scheme", "btcv", "--threads", "2", "-o", str(tmp_path / "c.mska")]
        )
        == 0
    )
    with MaskArchive(tmp_path / "c.mska") as ar:
        assert ar.all_names() == get_scheme("btcv").names()
        assert np.array_equal(ar.read_array("spleen"), maps[1].transpose(2, 1, 0) == 1)
    assert main(["pack", str(src), "--scheme", "nope", "-o", str(tmp_path / "d.mska")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["pack", str(src), "--threads", "0", "-o", str(tmp_path / "d.mska")]) == 2
