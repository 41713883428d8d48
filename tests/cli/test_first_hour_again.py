"""The first hour, again (issue 22): what a new user meets on the command line.

unpack -o DIR never mixes two cases; pack's ratio counts what it packed; one export report
for unpack and convert; missing inputs are bad usage (2); an object's size is printed;
--lacking says "did you mean"; errors name flags, not Python keywords; --window takes
negative numbers; a (z, y, x) space prints its axes in that order; the notebook table and
the pictures share one palette, non-empty masks first.
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

from medmask import MaskArchive, SegmentationMask
from medmask.attrs import PALETTE, palette_color
from medmask.geometry import affine_to_space
from medmask.spaces import Space

EXE = shutil.which("medmask", path=str(Path(sys.executable).parent))
AFF = np.array(
    [[-1.5, 0.0, 0.0, 90.0], [0.0, -1.5, 0.0, 60.0], [0.0, 0.0, 2.0, -40.0], [0, 0, 0, 1.0]]
)
SHAPE = (20, 16, 12)  # (x, y, z)


def run(*args, cwd=None):
    cmd = [EXE, *map(str, args)] if EXE else [sys.executable, "-m", "medmask", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300)


def archive(path: Path, boxes: dict) -> Path:
    space = affine_to_space(AFF, SHAPE)
    with MaskArchive(path, "w", space=space) as ar:
        for name, box in boxes.items():
            a = np.zeros(space.shape, bool)
            if box is not None:
                a[box] = True
            ar.add(name, SegmentationMask(a, {name: 1}, space))
    return path


@pytest.fixture
def two_cases(tmp_path):
    a = archive(
        tmp_path / "a.mska", {"liver": np.s_[1:4, 2:6, 3:9], "spleen": np.s_[5:8, 1:3, 1:4]}
    )
    b = archive(tmp_path / "b.mska", {"kidney": np.s_[2:5, 2:5, 2:5]})
    return a, b


# -- item 5: unpack -o DIR never mixes two cases --------------------------------------------------
def test_unpack_into_a_folder_of_another_case_is_refused(two_cases, tmp_path):
    a, b = two_cases
    out = tmp_path / "restored"
    assert run("unpack", a, "-o", out).returncode == 0
    assert run("unpack", a, "-o", out).returncode == 0  # again: the same files, replaced
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = run("unpack", b, "-o", out)
    assert r.returncode == 2
    assert f"{out}: the folder holds 2 file(s) this unpack would not write" in r.stderr
    assert "liver.nii.gz, spleen.nii.gz" in r.stderr and "--force" in r.stderr
    assert "force=True" not in r.stderr  # the command line names the flag only
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written
    r = run("unpack", b, "-o", out, "--force")
    assert r.returncode == 0 and sorted(p.name for p in out.iterdir()) == [
        "kidney.nii.gz",
        "liver.nii.gz",
        "spleen.nii.gz",
    ]


# -- item 7: the ratio of pack counts what was packed -------------------------------------------
def test_pack_of_a_case_folder_counts_only_the_masks(tmp_path):
    case = tmp_path / "s0001"
    (case / "segmentations").mkdir(parents=True)
    m = np.zeros(SHAPE, np.uint8)
    m[2:8, 3:9, 1:5] = 1
    for name in ("liver", "spleen"):
        nib.save(nib.Nifti1Image(m, AFF), str(case / "segmentations" / f"{name}.nii.gz"))
    ct = np.random.default_rng(0).integers(-1000, 1000, SHAPE).astype(np.int16)
    nib.save(nib.Nifti1Image(ct, AFF), str(case / "ct.nii.gz"))  # not packed
    masks = sum(p.stat().st_size for p in (case / "segmentations").iterdir())
    out = tmp_path / "s0001.mska"
    r = run("pack", case, "-o", out)
    assert r.returncode == 0, r.stderr
    assert f": {masks:,} -> {out.stat().st_size:,} bytes" in r.stdout
    report = json.loads(run("pack", case, "-o", tmp_path / "j.mska", "--json").stdout)
    assert report["source_bytes"] == masks


# -- item 10: the smaller things -----------------------------------------------------------------
def test_a_missing_source_or_reference_folder_is_bad_usage(two_cases, tmp_path):
    a, _ = two_cases
    r = run("unpack", a, "-o", tmp_path / "x.dcm", "--source", tmp_path / "nope")
    assert r.returncode == 2 and "--source" in r.stderr and "no such folder" in r.stderr
    r = run("pack", a, "-o", tmp_path / "y.mska", "--reference", tmp_path / "nope")
    assert r.returncode == 2 and "--reference" in r.stderr and "no such folder" in r.stderr


def test_convert_to_a_url_prints_its_size(two_cases, s3):
    a, _ = two_cases
    opts = [
        "--storage-option",
        f"client_kwargs.endpoint_url={s3.storage_options['client_kwargs']['endpoint_url']}",
    ]
    url = s3.url("packed/a.mska")
    r = run("convert", a, "-o", url, *opts)
    assert r.returncode == 0, r.stderr
    size = len(s3.get("packed/a.mska"))
    assert f"-> {size:,} bytes" in r.stdout and "?" not in r.stdout


def test_lacking_a_misspelt_name_says_did_you_mean(two_cases):
    a, b = two_cases
    r = run("stats", a, b, "--lacking", "livr")
    assert r.returncode == 2 and "did you mean: 'liver'" in r.stderr and r.stdout == ""
    r = run("stats", a, b, "--lacking", "liver")  # a real name: the case without it
    assert r.returncode == 0 and r.stdout.split() == ["b"]


def test_errors_name_the_flag_not_the_python_keyword(tmp_path):
    labels = np.zeros(SHAPE, np.uint8)
    labels[1:4, 1:4, 1:4], labels[5:8, 5:8, 5:8] = 1, 2
    nib.save(nib.Nifti1Image(labels, AFF), str(tmp_path / "labels.nii.gz"))
    r = run("pack", tmp_path / "labels.nii.gz", "-o", tmp_path / "l.mska")
    assert r.returncode == 2 and "--labels TABLE" in r.stderr
    assert "labels=" not in r.stderr
    archive(tmp_path / "a.mska", {"liver": np.s_[1:4, 2:6, 3:9]})
    r = run("unpack", tmp_path / "a.mska", "-o", tmp_path / "l.nii.gz", "--force")
    assert r.returncode == 2 and "--force: not applicable" in r.stderr
    assert "force=" not in r.stderr


def test_unpack_and_convert_give_one_label_map_report(tmp_path):
    src = archive(
        tmp_path / "o.mska",
        {"big": np.s_[0:6, 0:8, 0:10], "small": np.s_[2:3, 2:3, 2:4], "tiny": np.s_[1:2, 1:2, 1:2]},
    )
    u = run("unpack", src, "-o", tmp_path / "u.nii.gz", "--overlap", "first")
    c = run("convert", src, "-o", tmp_path / "c.nii.gz", "--overlap", "first")
    assert u.returncode == c.returncode == 0

    def same(r, name: str) -> tuple[str, str]:  # the command and the file names aside
        def norm(text: str) -> str:
            for a, b in (("medmask unpack", "X"), ("medmask convert", "X"), (name, "O")):
                text = text.replace(a, b)
            return text

        return norm(r.stdout), norm(r.stderr)

    assert same(u, "u.") == same(c, "c.")
    # the per-mask losses, in both
    assert "voxels lost to overlaps (rule --overlap first: the earlier mask wins):" in c.stdout
    assert "  small: 2 of 2" in c.stdout and "  tiny: 1 of 1" in c.stdout
    assert "mask 'small' lost all its 2 voxels" in c.stderr


def test_window_takes_negative_numbers(tmp_path):
    pytest.importorskip("matplotlib")
    src = archive(tmp_path / "a.mska", {"liver": np.s_[1:4, 2:6, 3:9]})
    ct = np.random.default_rng(0).integers(-1000, 1000, SHAPE).astype(np.int16)
    nib.save(nib.Nifti1Image(ct, AFF), str(tmp_path / "ct.nii.gz"))
    out = tmp_path / "overlay.png"
    r = run("show", src, "--image", tmp_path / "ct.nii.gz", "-o", out, "--window", "-160,240")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_zyx_space_prints_its_axes_in_that_order(two_cases):
    a, _ = two_cases
    with MaskArchive(a) as ar:
        space = ar.space
    text = repr(space)
    assert "Space in (z, y, x) order" in text
    assert "shape (z, y, x):   (12, 16, 20)" in text and "spacing (z, y, x): (2, 1.5, 1.5)" in text
    lines = [ln.strip() for ln in text.splitlines()]
    axes = [ln.split(":")[0] for ln in lines if "axis direction" in ln]
    assert axes == ["z axis direction", "y axis direction", "x axis direction"]
    assert "z axis direction:  (0, 0, 1)" in text  # axis 0 runs along the patient's z
    assert "x_orientation=" not in text
    plain = Space(
        shape=space.shape,
        origin=space.origin,
        spacing=space.spacing,
        x_orientation=space.x_orientation,
        y_orientation=space.y_orientation,
        z_orientation=space.z_orientation,
    )
    assert plain == space and space == plain  # the same grid, whatever the class


def test_the_notebook_lists_non_empty_masks_first_in_show_s_colours(tmp_path):
    boxes = {f"empty_{k}": None for k in range(40)}
    boxes.update({f"organ_{k}": np.s_[k % 10 : k % 10 + 2, 1:3, 1:3] for k in range(35)})
    with MaskArchive(archive(tmp_path / "a.mska", boxes)) as ar:
        html = ar._repr_html_()
        from medmask.viz.layers import _archive_layers

        drawn = {lay.name: lay.color for lay in _archive_layers(ar, None)[0]}
    names = re.findall(r"<td>\d+</td><td><span[^>]*></span> (\w+)</td>", html)
    assert names[:35] == [f"organ_{k}" for k in range(35)]  # non-empty first
    assert "25 more masks (25 of them empty)" in html
    swatches = dict(
        (n, tuple(int(v) for v in c))
        for c, n in re.findall(r"background:rgb\((\d+,\d+,\d+)\)\"></span> (\w+)", html)
        for c in [c.split(",")]
    )
    assert set(swatches) == {f"organ_{k}" for k in range(35)}  # empty masks get no colour
    assert len(set(swatches.values())) == 35  # no colour given twice, past the 30 fixed ones
    assert all(swatches[n] == tuple(drawn[n]) for n in swatches)  # the colours show draws
    assert [palette_color(k) for k in range(30)] == list(PALETTE)


def test_a_missing_sample_folder_says_where_a_relative_path_starts(tmp_path, monkeypatch):
    # the README's MONAI snippet run from another folder: a sentence, not a pathlib traceback
    from medmask.conversions.nifti import folder_to_archive

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        folder_to_archive("../shared/data/totalseg_s0000", "s0000.mska")
    msg = str(info.value)
    assert msg.startswith("../shared/data/totalseg_s0000: no such folder of NIfTI masks")
    assert f"(relative to {tmp_path})" in msg
    assert not (tmp_path / "s0000.mska").exists()
