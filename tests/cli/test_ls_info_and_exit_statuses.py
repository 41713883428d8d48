"""What a new user meets in the first hour (issue 10): ls/info over several files, info's
structured space, exit statuses of every command, convert's output names, medmask.inspect.

The console script runs in a subprocess (real exit codes and stderr).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medmask import MaskArchive, SegmentationMask, save_mask
from medmask.geometry import affine_to_space

EXE = shutil.which("medmask", path=str(Path(sys.executable).parent))

#: Oblique, with axes not in RAS order: the x/y/z and z/y/x conventions differ visibly.
AFF = np.array(
    [
        [-1.4, -0.45, 0.0, 250.0],
        [0.45, -1.4, 0.0, 80.0],
        [0.0, 0.0, 2.5, -90.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
SHAPE = (20, 16, 12)  # (x, y, z)


def run(*args, cwd=None):
    cmd = [EXE, *map(str, args)] if EXE else [sys.executable, "-m", "medmask", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=120)


def make_archive(path: Path, names=("liver", "spleen", "empty"), codec=None) -> Path:
    space = affine_to_space(AFF, SHAPE)
    with MaskArchive(path, "w", space=space, codec=codec) as ar:
        for k, name in enumerate(names):
            a = np.zeros(SHAPE[::-1], bool)
            if name != "empty":
                a[1 + k : 5 + k, 2 : 8 + k, 3 : 9 + 2 * k] = True
            ar.add_segmask(SegmentationMask(a, {name: 1}, space), name)
    return path


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "packed"
    d.mkdir()
    a = make_archive(d / "a.mska")
    (d / "sub").mkdir()
    b = make_archive(d / "sub" / "b.mska", ("colon",))
    v1 = make_archive(tmp_path / "v1.mska", ("liver", "kidney"), codec="zstd")
    space = affine_to_space(AFF, SHAPE)
    lab = np.zeros(SHAPE[::-1], np.uint8)
    lab[2:5, 3:7, 4:9] = 3
    lab[6:8, 1:3, 1:4] = 7
    msk = tmp_path / "m.msk"
    save_mask(SegmentationMask(lab, {"a": 3, "b": 7}, space), msk)
    return {"dir": d, "a": a, "b": b, "v1": v1, "msk": msk}


# -- ls / info over several files and folders ----------------------------------------------------
def test_ls_several_files_and_folders(files):
    r = run("ls", files["dir"], files["v1"], files["msk"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["file", "name"]
    body = [ln.split() for ln in lines[1:]]
    assert [(Path(x[0]).name, x[1]) for x in body] == [
        ("a.mska", "liver"),
        ("a.mska", "spleen"),
        ("a.mska", "empty"),
        ("b.mska", "colon"),
        ("v1.mska", "liver"),
        ("v1.mska", "kidney"),
        ("m.msk", "a"),
        ("m.msk", "b"),
    ]
    rows = json.loads(run("ls", files["dir"], files["msk"], "--json").stdout)
    assert [Path(x["file"]).name for x in rows] == ["a.mska"] * 3 + ["b.mska", "m.msk", "m.msk"]
    by = {(Path(x["file"]).name, x["name"]): x for x in rows}
    assert by[("m.msk", "a")]["voxels"] == 3 * 4 * 5
    assert by[("m.msk", "a")]["bbox"] == [2, 5, 3, 7, 4, 9]
    assert by[("m.msk", "b")]["bbox"] == [6, 8, 1, 3, 1, 4]
    assert by[("a.mska", "empty")]["bbox"] is None
    one = run("ls", files["a"])  # one file: the table has no file column (as before)
    assert one.stdout.splitlines()[0].split()[0] == "name"


def test_info_several_files_gives_a_json_list(files):
    r = run("info", files["a"], files["v1"], "--json")
    assert r.returncode == 0, r.stderr
    infos = json.loads(r.stdout)
    assert isinstance(infos, list) and [i["version"] for i in infos] == [2, 1]
    assert isinstance(json.loads(run("info", files["a"], "--json").stdout), dict)
    folder = json.loads(run("info", files["dir"], "--json").stdout)
    assert [Path(i["file"]).name for i in folder] == ["a.mska", "b.mska"]
    text = run("info", files["a"], files["msk"])
    assert text.returncode == 0 and text.stdout.count("kind:") == 2
    assert "before" not in text.stderr and "usage:" not in text.stderr


def test_info_space_fields_match_nibabel(files, tmp_path):
    """x, y, z as nibabel reads the NIfTI; z, y, x (LPS) as medmask stores it."""
    img = nib.Nifti1Image(np.zeros(SHAPE, np.uint8), AFF)
    info = json.loads(run("info", files["a"], "--json").stdout)
    sp = info["space"]
    assert sp["shape"] == list(img.shape)
    np.testing.assert_allclose(sp["spacing"], img.header.get_zooms(), atol=1e-6)
    np.testing.assert_allclose(sp["origin"], img.affine[:3, 3], atol=1e-6)
    np.testing.assert_allclose(
        sp["direction"], img.affine[:3, :3] / np.asarray(img.header.get_zooms()), atol=1e-6
    )
    np.testing.assert_allclose(sp["affine_ras"], img.affine, atol=1e-6)
    assert sp["shape_zyx"] == list(SHAPE[::-1])
    np.testing.assert_allclose(sp["spacing_zyx"], img.header.get_zooms()[::-1], atol=1e-6)
    np.testing.assert_allclose(sp["origin_lps"], img.affine[:3, 3] * [-1, -1, 1], atol=1e-6)
    lps_cols = (np.diag([-1, -1, 1]) @ img.affine[:3, :3] / img.header.get_zooms()).T
    np.testing.assert_allclose(sp["axes_zyx_lps"], lps_cols[::-1], atol=1e-6)
    msk = json.loads(run("info", files["msk"], "--json").stdout)
    assert msk["space"]["shape"] == list(SHAPE) and msk["labels"] == {"a": 3, "b": 7}
    assert msk["voxels"] == 3 * 4 * 5 + 2 * 2 * 3


@pytest.mark.realdata
def test_info_space_on_the_real_case(real_case, tmp_path):
    from medmask.conversions.nifti import folder_to_archive

    folder_to_archive(real_case, tmp_path / "s0000.mska")
    img = nib.load(str(real_case / "liver.nii.gz"))
    sp = json.loads(run("info", tmp_path / "s0000.mska", "--json").stdout)["space"]
    assert sp["shape"] == list(img.shape)
    np.testing.assert_allclose(sp["spacing"], img.header.get_zooms(), atol=1e-4)
    np.testing.assert_allclose(sp["origin"], img.affine[:3, 3], atol=1e-3)
    np.testing.assert_allclose(sp["affine_ras"], img.affine, atol=1e-3)


# -- exit statuses: a missing input is bad usage (2) for every command ---------------------------
COMMANDS = {
    "pack": ["pack", "{missing}", "-o", "{tmp}/x.mska"],
    "pack-tree": ["pack-tree", "{missing}", "-o", "{tmp}/out"],
    "unpack": ["unpack", "{missing}", "-o", "{tmp}/out"],
    "unpack-tree": ["unpack-tree", "{missing}", "-o", "{tmp}/out"],
    "ls": ["ls", "{missing}"],
    "info": ["info", "{missing}"],
    "verify": ["verify", "{missing}"],
    "convert": ["convert", "{missing}", "-o", "{tmp}/x.mska"],
    "stats": ["stats", "{missing}"],
    "catalog": ["catalog", "{missing}", "-o", "{tmp}/cat.parquet"],
    "show": ["show", "{missing}", "-o", "{tmp}/x.png"],
    "convert-images": ["convert-images", "{missing}", "-o", "{tmp}/images", "--to", "nii"],
}


@pytest.fixture(scope="module")
def top_help() -> str:
    return run("--help").stdout


def test_every_command_is_checked(top_help):
    """A new command joins COMMANDS (and so the exit-status check) when it is added."""
    listed = set(re.findall(r"^    ([a-z][a-z-]+)  ", top_help, flags=re.M))
    assert listed and listed <= set(COMMANDS), sorted(listed - set(COMMANDS))


@pytest.mark.parametrize("command", list(COMMANDS))
def test_missing_input_exits_2_for_every_command(command, tmp_path, top_help):
    assert f"    {command} " in top_help, f"medmask {command} is gone from medmask --help"
    args = [a.format(missing=tmp_path / "nope.mska", tmp=tmp_path) for a in COMMANDS[command]]
    r = run(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "nope.mska" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


def test_documented_exit_statuses(files, tmp_path):
    """0 success, 1 a file failed, 2 bad usage: docs/cli.md's table, command by command."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    assert "| 2 | bad usage" in doc and "an input that does not exist" in doc
    junk = tmp_path / "junk.mska"
    junk.write_bytes(b"not an archive at all")
    assert run("ls", files["a"]).returncode == 0
    assert run("ls", files["a"], junk).returncode == 1  # a damaged file: 1, the others listed
    r = run("info", junk, files["a"], "--json")
    assert r.returncode == 1 and "junk.mska" in r.stderr
    assert [Path(i["file"]).name for i in json.loads(r.stdout)] == ["a.mska"]
    assert run("verify", files["a"], junk).returncode == 1
    assert run("verify", files["a"], tmp_path / "gone.mska").returncode == 2
    assert run("convert", junk, "-o", tmp_path / "j2.mska").returncode == 1
    assert run("ls").returncode == 2 and run("info").returncode == 2


# -- convert: an output's name says its format ---------------------------------------------------
def test_convert_to_nii_gz_writes_a_label_map(files, tmp_path):
    out = tmp_path / "labels.nii.gz"
    r = run("convert", files["a"], "-o", out)
    assert r.returncode == 0, r.stderr
    img = nib.load(str(out))  # a real gzip NIfTI, not an archive named .nii.gz
    assert img.shape == SHAPE and np.allclose(img.affine, AFF, atol=1e-4)
    data = np.asarray(img.dataobj)
    with MaskArchive(files["a"]) as ar:
        liver = ar.read_array("liver").T
        spleen = ar.read_array("spleen").T
    table = json.loads((tmp_path / "labels.json").read_text())
    assert set(table) >= {"liver", "spleen"}
    np.testing.assert_array_equal(data == table["spleen"], spleen)
    np.testing.assert_array_equal(data == table["liver"], liver & ~spleen)  # later wins
    assert "several masks" in r.stderr  # the overlap is reported


def test_convert_to_seg_nrrd_round_trips(files, tmp_path):
    pytest.importorskip("nrrd")
    from medmask.conversions import to_archive

    out = tmp_path / "a.seg.nrrd"
    r = run("convert", files["a"], "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:4] == b"NRRD"  # a real NRRD, not an archive named .seg.nrrd
    to_archive(out, tmp_path / "back.mska")
    with MaskArchive(files["a"]) as want, MaskArchive(tmp_path / "back.mska") as got:
        for name in ("liver", "spleen"):
            np.testing.assert_array_equal(got.read_array(name) != 0, want.read_array(name))


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("x.msk", "x.mska"),
        ("x", "x.mska"),
        ("x.txt", "x.mska"),
        ("x.zip", "x.mska"),
        ("folder/", "out.mska"),
        ("x.dcm", "--source"),
    ],
)
def test_convert_refuses_names_that_lie_and_leaves_nothing(files, tmp_path, name, hint):
    work = tmp_path / "work"
    work.mkdir()
    if name.endswith("/"):
        (work / name).mkdir()
    before = sorted(p.name for p in work.rglob("*"))
    r = run("convert", files["a"], "-o", name, cwd=work)
    assert r.returncode == 2, r.stderr
    assert hint in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in work.rglob("*")) == before


def test_convert_msk_sources_and_versions(files, tmp_path):
    assert run("convert", files["msk"], "-o", tmp_path / "m1.msk", "--to", "1").returncode == 0
    info = json.loads(run("info", tmp_path / "m1.msk", "--json").stdout)
    assert (info["kind"], info["version"]) == ("msk", 1)
    r = run("convert", files["msk"], "-o", tmp_path / "one.mska")
    assert r.returncode == 0, r.stderr
    with MaskArchive(tmp_path / "one.mska") as ar:
        assert ar.all_names() == ["m"]
        np.testing.assert_array_equal(ar.read_array("m"), SegmentationMask.load(files["msk"]).data)
    r = run("convert", files["a"], "-o", tmp_path / "l.nii.gz", "--to", "1")
    assert r.returncode == 2 and "--to" in r.stderr
    assert not (tmp_path / "l.nii.gz").exists()


def test_convert_keeps_attributes_and_compacts(files, tmp_path):
    src = tmp_path / "attrs.mska"
    space = affine_to_space(AFF, SHAPE)
    a = np.zeros(SHAPE[::-1], bool)
    a[1:3, 1:3, 1:3] = True
    attrs = {"description": "reviewed liver", "color": [200, 40, 40]}
    with MaskArchive(src, "w", space=space) as ar:
        assert ar.supports_attrs
        ar.add_segmask(SegmentationMask(a, {"liver": 1}, space), "liver", attrs=attrs)
        ar.add_segmask(SegmentationMask(~a, {"rest": 1}, space), "rest")
    with MaskArchive(src, "a") as ar:  # appends leave superseded index segments behind
        ar.add_segmask(SegmentationMask(a, {"more": 1}, space), "more")
    before = json.loads(run("info", src, "--json").stdout)
    r = run("convert", src, "-o", tmp_path / "c.mska")
    assert r.returncode == 0, r.stderr
    after = json.loads(run("info", tmp_path / "c.mska", "--json").stdout)
    assert after["index_segments"] == 1 < before["index_segments"]
    with MaskArchive(tmp_path / "c.mska") as ar:
        assert ar.all_names() == ["liver", "rest", "more"]
        got = ar.info("liver").attrs
        assert got.get("description") == "reviewed liver"
        np.testing.assert_array_equal(ar.read_array("liver"), a)
    r = run("convert", src, "-o", tmp_path / "c1.mska", "--to", "1")
    assert r.returncode == 0 and "attributes of 1 mask" in r.stderr


def test_convert_reclaims_deleted_and_replaced_masks(files, tmp_path):
    """The documented way to get back the bytes of deleted or replaced masks."""
    src = tmp_path / "edited.mska"
    src.write_bytes(files["a"].read_bytes())
    big = np.ones(SHAPE[::-1], bool)
    big[::2, ::3, ::5] = False  # not trivially compressible
    with MaskArchive(src, "a") as ar:
        ar.add("big", big)
        ar.delete("big")
        ar.replace("spleen", big)
        diagonal = np.broadcast_to(np.eye(SHAPE[1], SHAPE[0], dtype=bool), SHAPE[::-1])
        ar.replace("spleen", diagonal.copy())
    with MaskArchive(src) as ar:
        names, spleen = ar.all_names(), ar.read_array("spleen")
        liver = ar.read_array("liver")
    r = run("convert", src, "-o", tmp_path / "compact.mska")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "compact.mska").stat().st_size < src.stat().st_size
    with MaskArchive(tmp_path / "compact.mska") as ar:
        assert ar.all_names() == names == ["liver", "spleen", "empty"]
        np.testing.assert_array_equal(ar.read_array("spleen"), spleen)
        np.testing.assert_array_equal(ar.read_array("liver"), liver)
    info = json.loads(run("info", tmp_path / "compact.mska", "--json").stdout)
    assert info["overhead_bytes"] < json.loads(run("info", src, "--json").stdout)["overhead_bytes"]


# -- the library behind the commands -------------------------------------------------------------
def test_inspect_library(files, tmp_path):
    from medmask import cli
    from medmask.inspect import expand_paths, file_info, list_masks, sniff_file, verify_file

    assert cli.verify_file is verify_file and cli.file_info is file_info  # kept importable
    found = expand_paths([files["dir"], files["msk"]])
    assert [Path(f).name for f in found] == ["a.mska", "b.mska", "m.msk"]
    with pytest.raises(FileNotFoundError, match="nope"):
        expand_paths([tmp_path / "nope"])
    assert sniff_file(files["a"])[:2] == ("mska", 2)
    assert sniff_file(files["v1"])[:2] == ("mska", 1)
    assert sniff_file(files["msk"])[0] == "msk"
    rows = list_masks(files["v1"])  # version 1: decoded for the counts
    assert [r["voxels"] for r in rows] == [4 * 6 * 6, 4 * 7 * 8]
    info = file_info(files["a"])
    assert info["masks"] == 3 and info["empty_masks"] == 1 and info["generation"] == 1
    assert verify_file(files["a"])["ok"] and not verify_file(tmp_path / "nope.mska")["ok"]


# -- URLs ---------------------------------------------------------------------------------------
def _cli_options(options: dict, prefix: str = "") -> list[str]:
    """A storage_options dict as repeated ``--storage-option KEY=VALUE`` arguments."""
    out: list[str] = []
    for k, v in options.items():
        if isinstance(v, dict):
            out += _cli_options(v, f"{prefix}{k}.")
        else:
            out += [
                "--storage-option",
                f"{prefix}{k}={json.dumps(v) if not isinstance(v, str) else v}",
            ]
    return out


def test_ls_info_verify_on_s3_urls(files, s3):
    """A real S3 endpoint on loopback (moto): URLs and prefixes, options from the command line."""
    pytest.importorskip("s3fs")
    a = s3.put("packed/a.mska", files["a"].read_bytes())
    m = s3.put("packed/m.msk", files["msk"].read_bytes())
    opts = _cli_options(s3.storage_options)
    rows = json.loads(run("ls", f"s3://{s3.name}/packed/", "--json", *opts).stdout)
    assert [(r["file"], r["name"]) for r in rows] == [
        (a, "liver"),
        (a, "spleen"),
        (a, "empty"),
        (m, "a"),
        (m, "b"),
    ]
    infos = json.loads(run("info", a, m, "--json", *opts).stdout)
    local = json.loads(run("info", files["a"], "--json").stdout)
    assert infos[0]["space"] == local["space"] and infos[0]["bytes"] == local["bytes"]
    r = run("verify", f"s3://{s3.name}/packed/", *opts)
    assert r.returncode == 0 and "2 of 2 files sound" in r.stdout
