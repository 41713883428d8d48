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
    r = run("info", tmp_path / "nothing.mska")  # a missing input is bad usage (docs/cli.md)
    assert r.returncode == 2 and "no such file" in r.stderr.lower()
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
    assert r.returncode == 0 and "no voxel belongs to two masks" in r.stdout
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


def test_global_flags_before_or_after_the_command(dataset, tmp_path):
    out = tmp_path / "c.mska"
    assert run("-q", "pack", dataset / "case_0000" / "segmentations", "-o", out).stdout == ""
    for args in (["-q", "verify", out], ["verify", out, "-q"], ["--quiet", "verify", out]):
        r = run(*args)
        assert r.returncode == 0 and r.stdout == "", args
    assert "ok" in run("verify", out).stdout
    r = run("--debug", "info", tmp_path / "nothing.mska")
    assert r.returncode == 1 and "Traceback" in r.stderr


def _dataset_with_bad_case(root):
    write_phantom_dataset(root, n_cases=3, shape_zyx=(12, 16, 16))
    liver = root / "case_0000" / "segmentations" / "liver.nii.gz"
    bad = root / "case_0001" / "segmentations"
    (bad / "truncated.nii.gz").write_bytes(liver.read_bytes()[:200])
    return bad


@pytest.mark.parametrize("workers", ["1", "2"])
def test_pack_tree_reports_a_bad_case_and_packs_the_others(tmp_path, workers):
    bad = _dataset_with_bad_case(tmp_path / "ds")
    dest = tmp_path / "packed"
    r = run("pack-tree", tmp_path / "ds", "-o", dest, "-w", workers)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "truncated.nii.gz" in lines[0] and "cannot read" in lines[0]
    assert "2 packed" in r.stdout and "1 failed" in r.stdout
    assert sorted(p.name for p in dest.iterdir()) == ["case_0000.mska", "case_0002.mska"]
    (bad / "truncated.nii.gz").unlink()  # fixed: the next run packs only that case
    r = run("pack-tree", tmp_path / "ds", "-o", dest, "-w", workers)
    assert r.returncode == 0 and "1 packed" in r.stdout and "2 already packed" in r.stdout


def test_pack_errors_are_one_line_and_leave_nothing(tmp_path):
    bad = _dataset_with_bad_case(tmp_path / "ds")
    out = tmp_path / "c.mska"
    r = run("pack", bad, "-o", out)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "truncated.nii.gz" in r.stderr
    assert not out.exists() and not list(tmp_path.glob(".c.mska*"))
    (bad / "truncated.nii.gz").unlink()
    # a shifted grid: refused with both grids named, or resampled on request
    img = nib.load(bad / "liver.nii.gz")
    affine = img.affine.copy()
    affine[:3, 3] += 5.0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), str(bad / "shifted.nii.gz"))
    r = run("pack", bad, "-o", out)
    assert r.returncode == 1 and "shifted.nii.gz" in r.stderr and "origin" in r.stderr
    assert r.stderr.count("\n") == 1 and not out.exists()
    r = run("pack", bad, "-o", out, "--resample")
    assert r.returncode == 0 and "resampled" in r.stderr and "shifted.nii.gz" in r.stderr
    assert [x["name"] for x in json.loads(run("ls", out, "--json").stdout)].count("shifted") == 1
    # float data is refused unless asked for
    (bad / "shifted.nii.gz").unlink()
    nib.save(
        nib.Nifti1Image(np.asarray(img.dataobj).astype(np.float32), img.affine),
        str(bad / "float.nii.gz"),
    )
    r = run("pack", bad, "-o", out)
    assert r.returncode == 1 and "float" in r.stderr and "--allow-float" in r.stderr
    assert run("pack", bad, "-o", out, "--allow-float").returncode == 0


def test_verify_folders_and_usage(dataset, tmp_path):
    dest = tmp_path / "packed"
    assert run("pack-tree", dataset, "-o", dest, "-w", "1", "-q").returncode == 0
    r = run("verify", dest)
    assert r.returncode == 0 and "3 of 3 files sound" in r.stdout
    (dest / "junk.mska").write_bytes(b"not an archive at all")
    r = run("verify", dest, "--json")
    assert r.returncode == 1
    assert [x["ok"] for x in json.loads(r.stdout)] == [True, True, True, False]
    assert "junk.mska" in r.stderr and "not a medmask file" in r.stderr
    assert run("verify", tmp_path / "empty_dir_does_not_exist").returncode == 2
    (tmp_path / "empty").mkdir()
    assert run("verify", tmp_path / "empty").returncode == 2
    assert run("pack-tree", dataset, "-o", dest, "-w", "0").returncode == 2
    r = run("unpack", dest / "case_0000.mska")
    assert r.returncode == 2 and "-o " in r.stderr


def test_msk_files_and_v1_round_trip(dataset, tmp_path):
    lab = np.zeros((6, 7, 8), np.uint8)
    lab[1:3] = 1
    lab[4:] = 2
    nib.save(nib.Nifti1Image(lab, np.diag([0.8, 0.8, 2.0, 1.0])), str(tmp_path / "lab.nii.gz"))
    (tmp_path / "t.txt").write_text("# label name\n1 liver\n2 spleen\n")
    msk = tmp_path / "m.msk"
    assert (
        run("pack", tmp_path / "lab.nii.gz", "--labels", tmp_path / "t.txt", "-o", msk).returncode
        == 0
    )
    rows = json.loads(run("ls", msk, "--json").stdout)
    assert {r["name"]: r["voxels"] for r in rows} == {"liver": 112, "spleen": 112}
    info = json.loads(run("info", msk, "--json").stdout)
    assert info["kind"] == "msk" and info["labels"] == {"liver": 1, "spleen": 2}
    assert run("convert", msk, "-o", tmp_path / "m1.msk", "--to", "1").returncode == 0
    assert json.loads(run("info", tmp_path / "m1.msk", "--json").stdout)["version"] == 1
    assert run("verify", msk, tmp_path / "m1.msk").returncode == 0
    assert run("unpack", tmp_path / "m1.msk", "-o", tmp_path / "o", "-q").returncode == 0
    back = nib.load(tmp_path / "o" / "m1.nii.gz")
    np.testing.assert_array_equal(np.asarray(back.dataobj), lab)
    np.testing.assert_allclose(back.affine, np.diag([0.8, 0.8, 2.0, 1.0]), atol=1e-6)
    # a label present in the file but absent from the table is refused, not dropped
    (tmp_path / "short.json").write_text(json.dumps({"liver": 1}))
    r = run("pack", tmp_path / "lab.nii.gz", "--labels", tmp_path / "short.json", "-o", msk)
    assert r.returncode == 1 and "[2]" in r.stderr and "not in the label table" in r.stderr
    # version 1 archives: pack, ls (decodes for the counts), convert back to 2
    v1 = tmp_path / "v1.mska"
    assert (
        run("pack", dataset / "case_0002" / "segmentations", "-o", v1, "--codec", "zstd").returncode
        == 0
    )
    assert json.loads(run("info", v1, "--json").stdout)["version"] == 1
    assert run("convert", v1, "-o", tmp_path / "v2.mska").returncode == 0

    def listing(path):
        return [
            (x["name"], x["voxels"], x["bbox"])
            for x in json.loads(run("ls", path, "--json").stdout)
        ]

    assert listing(v1) == listing(tmp_path / "v2.mska")
    r = run("convert", v1, "-o", v1)
    assert r.returncode == 2


def test_labelmap_export_reports_overlap(tmp_path):
    a = np.zeros((4, 4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4, 4), bool)
    b[1:3] = True
    with MaskArchive(tmp_path / "o.mska", "w") as ar:
        ar.add_segmask(SegmentationMask(a, {"a": 1}), "a")
        ar.add_segmask(SegmentationMask(b, {"b": 1}), "b")
    r = run("unpack", tmp_path / "o.mska", "-o", tmp_path / "l.nii.gz")
    assert r.returncode == 0 and "16 voxels belonged to several masks" in r.stderr
    assert json.loads((tmp_path / "l.json").read_text()) == {"a": 1, "b": 2}
    r = run("convert", tmp_path / "o.mska", "-o", tmp_path / "c.nii.gz")  # the same export
    assert r.returncode == 0 and "16 voxels belonged to several masks" in r.stderr
    assert json.loads((tmp_path / "c.json").read_text()) == {"a": 1, "b": 2}


def test_demo_runs_end_to_end(tmp_path):
    """examples/demo.py (the job of 'make demo') on a tiny phantom dataset."""
    demo = Path(__file__).resolve().parents[2] / "examples" / "demo.py"
    r = subprocess.run(
        [sys.executable, str(demo), "--out", str(tmp_path / "d"), "--cases", "2"]
        + ["--shape", "12", "20", "20", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK: 16 of 16 masks came back equal" in r.stdout
    assert "smaller" in r.stdout and "faster" in r.stdout
    assert len(list((tmp_path / "d" / "packed").glob("*.mska"))) == 2


def test_find_cases_layouts_and_names(tmp_path):
    from medmask.cli import case_name, find_cases

    root = tmp_path / "ds"
    write_phantom_dataset(root / "site", n_cases=2, shape_zyx=(6, 8, 8), layout="mixed")
    case = root / "site" / "case_0001"  # flat layout: CASE/<organ>.nii.gz
    for twin in ("a b", "a_b"):  # two folders whose safe names collide
        shutil.copytree(case, root / twin)
    (root / ".hidden").mkdir()
    shutil.copy(case / "liver.nii.gz", root / ".hidden" / "liver.nii.gz")
    cases = find_cases(root)
    rel = [Path(c).relative_to(root).as_posix() for c in cases]
    assert rel == ["a b", "a_b", "site/case_0000/segmentations", "site/case_0001"]
    assert case_name(root, cases[2]) == "site__case_0000"
    assert [Path(c) for c in find_cases(case)] == [case] and case_name(case, case) == "case_0001"
    seg = root / "site" / "case_0000" / "segmentations"
    assert case_name(seg, seg) == "case_0000"
    dest = tmp_path / "packed"
    r = run("pack-tree", root, "-o", dest, "-w", "2")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in dest.iterdir()) == [
        "a_b-2.mska",
        "a_b.mska",
        "site__case_0000.mska",
        "site__case_0001.mska",
    ]
    assert "ct" not in [
        x["name"] for x in json.loads(run("ls", dest / "site__case_0000.mska", "--json").stdout)
    ]


def test_convert_compat_writes_what_each_release_reads(dataset, tmp_path):
    """``convert --compat RELEASE`` writes the layout that release reads newest (the index
    fields are read from the file, as that release would), with the same masks; attributes
    are kept where the layout holds them and their loss is said where it does not."""
    import struct
    import zlib

    import zstandard

    src = tmp_path / "c.mska"
    assert run("pack", dataset / "case_0001" / "segmentations", "-o", src).returncode == 0
    with MaskArchive(src, "a") as ar:
        ar.set_attrs("liver", {"color": [200, 30, 40]})
        arrays = {n: ar.read_array(n) for n in ar.all_names()}

    def index_fields(path: Path) -> list[str]:
        """The newest index segment's ``fields``, read as docs/format.md describes."""
        data = path.read_bytes()
        slots = []
        for at in (16, 80):  # the two commit slots; the valid one of higher generation counts
            raw = data[at : at + 64]
            if struct.unpack_from("<I", raw, 60)[0] == zlib.crc32(raw[:60]):
                slots.append(struct.unpack_from("<QQQIIQIIQI", raw))
        slot = max(slots, key=lambda s: s[0])
        off, length = slot[5], slot[6]
        seg = zstandard.ZstdDecompressor().decompress(data[off : off + length])
        return json.loads(seg)["fields"]

    expected = {
        None: (2, 3, "centroid"),  # the current layout: 2.2's rows (a centroid column)
        "0.4": (2, 2, "centroid"),  # medmask 0.4.0: no archive attributes
        "0.3": (2, 1, "extra"),  # medmask 0.3.0: 10 columns, the centroid inside extra
        "0.2": (2, 0, "mapping"),  # medmask 0.2.0: 9 columns, no extras
        "0.1": (1, 0, None),
    }
    for compat, (version, minor, last_but) in expected.items():
        out = tmp_path / f"out_{compat}.mska"
        r = run("convert", src, "-o", out, *(["--compat", compat] if compat else []))
        assert r.returncode == 0, r.stderr
        info = json.loads(run("info", out, "--json").stdout)
        assert (info["version"], info["minor_version"]) == (version, minor), compat
        if version == 2:
            fields = index_fields(out)
            assert fields[-1] == "extra" if minor else fields[-1] == "mapping"
            assert last_but in fields
        with MaskArchive(out) as ar:
            assert ar.all_names() == list(arrays)
            for name, arr in arrays.items():
                np.testing.assert_array_equal(ar.read_array(name), arr)
            kept = ar.info("liver").attrs
        assert kept == ({"color": [200, 30, 40]} if minor else {}), compat
        assert ("attributes of 1 mask(s) not kept" in r.stderr) == (not minor), compat
    r = run("convert", src, "-o", tmp_path / "x.mska", "--compat", "0.2", "--to", "2")
    assert r.returncode == 2 and "not both" in r.stderr
