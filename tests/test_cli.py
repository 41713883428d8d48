"""The installed ``medmask`` console script, called in a subprocess (real exit codes and stderr)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medmask import MaskArchive, SegmentationMask
from medmask.phantoms import write_phantom_dataset

EXE = shutil.which("medmask", path=str(Path(sys.executable).parent))


def run(*args, cwd=None):
    cmd = [EXE, *map(str, args)] if EXE else [sys.executable, "-m", "medmask", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    write_phantom_dataset(root, n_cases=3, shape_zyx=(16, 24, 24))
    return root


def test_help():
    r = run("--help")
    assert r.returncode == 0 and "pack-tree" in r.stdout and "Exit status" in r.stdout
    for sub in ["pack", "pack-tree", "unpack", "ls", "info", "verify", "convert"]:
        r = run(sub, "--help")
        assert r.returncode == 0 and "usage: medmask" in r.stdout, sub


def test_bad_usage_exits_2(tmp_path):
    assert run().returncode == 2
    assert run("frobnicate").returncode == 2
    r = run("pack", tmp_path / "missing", "-o", tmp_path / "x.mska")
    assert (
        r.returncode == 2 and "no such file or folder" in r.stderr and "Traceback" not in r.stderr
    )


def test_pack_ls_info_verify_unpack(dataset, tmp_path):
    case = dataset / "case_0000" / "segmentations"
    out = tmp_path / "c.mska"
    r = run("pack", case, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "packed 8 masks" in r.stdout
    rows = json.loads(run("ls", out, "--json").stdout)
    assert [x["name"] for x in rows] == sorted(p.name[:-7] for p in case.glob("*.nii.gz"))
    liver = nib.load(case / "liver.nii.gz")
    row = next(x for x in rows if x["name"] == "liver")
    assert row["voxels"] == int(np.count_nonzero(liver.dataobj))
    info = json.loads(run("info", out, "--json").stdout)
    assert info["version"] == 2 and info["masks"] == 8 and info["codec"] == "bitzstd"
    assert run("verify", out).returncode == 0
    r = run("unpack", out, "-o", tmp_path / "restored", "-q")
    assert r.returncode == 0 and r.stdout == ""
    back = nib.load(tmp_path / "restored" / "liver.nii.gz")
    np.testing.assert_array_equal(np.asarray(back.dataobj), np.asarray(liver.dataobj))
    np.testing.assert_allclose(back.affine, liver.affine, atol=1e-3)
    r = run("convert", out, "-o", tmp_path / "v1.mska", "--to", "1")
    assert r.returncode == 0
    assert json.loads(run("info", tmp_path / "v1.mska", "--json").stdout)["version"] == 1
    r = run("ls", tmp_path / "v1.mska", "--json")
    assert json.loads(r.stdout) == rows or [x["voxels"] for x in json.loads(r.stdout)] == [
        x["voxels"] for x in rows
    ]


def test_verify_reports_damage(dataset, tmp_path):
    out = tmp_path / "c.mska"
    assert run("pack", dataset / "case_0001" / "segmentations", "-o", out, "-q").returncode == 0
    raw = bytearray(out.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    bad = tmp_path / "bad.mska"
    bad.write_bytes(raw)
    r = run("verify", out, bad)
    assert r.returncode == 1
    assert (
        "bad.mska" in r.stderr
        and "Traceback" not in r.stderr
        and len(r.stderr.strip().splitlines()) == 1
    )
    results = json.loads(run("verify", out, bad, "--json").stdout)
    assert [x["ok"] for x in results] == [True, False]
    r = run("info", tmp_path / "nothing.mska")
    assert r.returncode == 1 and "No such file" in r.stderr
    assert "Traceback" in run("info", tmp_path / "nothing.mska", "--debug").stderr


def test_pack_tree_parallel_and_resumable(dataset, tmp_path):
    dest = tmp_path / "packed"
    r = run("pack-tree", dataset, "-o", dest, "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert "3 packed" in r.stdout
    assert sorted(p.name for p in dest.iterdir()) == [
        "case_0000.mska",
        "case_0001.mska",
        "case_0002.mska",
    ]
    r = run("pack-tree", dataset, "-o", dest, "--workers", "2")
    assert "0 packed" in r.stdout and "3 already packed and verified" in r.stdout
    (dest / "case_0001.mska").write_bytes(b"MSKA\x02garbage")  # damaged: repacked
    r = run("pack-tree", dataset, "-o", dest)
    assert "1 packed" in r.stdout and run("verify", dest / "case_0001.mska").returncode == 0


def test_labelmap_pack_and_unpack(tmp_path):
    lab = np.zeros((8, 9, 10), np.uint8)
    lab[:3] = 1
    lab[4:6] = 2
    nib.save(nib.Nifti1Image(lab, np.eye(4)), str(tmp_path / "lab.nii.gz"))
    (tmp_path / "t.json").write_text(json.dumps({"liver": 1, "spleen": 2}))
    assert (
        run(
            "pack",
            tmp_path / "lab.nii.gz",
            "-o",
            tmp_path / "a.mska",
            "--labels",
            tmp_path / "t.json",
        ).returncode
        == 0
    )
    assert (
        run(
            "pack",
            tmp_path / "lab.nii.gz",
            "-o",
            tmp_path / "m.msk",
            "--labels",
            tmp_path / "t.json",
        ).returncode
        == 0
    )
    r = run("pack", tmp_path / "lab.nii.gz", "-o", tmp_path / "b.mska")
    assert r.returncode == 2 and "--labels" in r.stderr
    r = run("unpack", tmp_path / "a.mska", "--labelmap", tmp_path / "back.nii.gz")
    assert r.returncode == 0 and "0 voxels belonged to several masks" in r.stdout
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "back.nii.gz").dataobj), lab)


def test_unpack_hostile_names_stay_inside(tmp_path):
    names = ["../escape", "/etc/passwd", "a/../../b", "nul\0x", "..", "CON", "same", "SAME"]
    arr = np.zeros((4, 4, 4), bool)
    arr[1, 1, 1] = True
    with MaskArchive(tmp_path / "h.mska", "w") as ar:
        for n in names:
            try:
                ar.add_segmask(SegmentationMask(arr, {"x": 1}), n)
            except ValueError:
                assert "\0" in n  # NUL is refused at write time
    out = tmp_path / "deep" / "out"
    r = run("unpack", tmp_path / "h.mska", "-o", out)
    assert r.returncode == 0, r.stderr
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.nii.gz"))
    assert all(p.parent == Path("deep/out") for p in written)
    assert len(written) == len(names) - 1  # all but the NUL name, none overwritten
