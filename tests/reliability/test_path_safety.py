"""Path safety: mask names become file names when an archive is unpacked or exported;
whatever a (hostile) archive calls its masks, nothing is written outside the target
folder, no file overwrites another, and a symlink planted in the folder is replaced,
not followed. Names come from forged archives (any string, NUL and separators included,
which ``add_segmask`` would refuse) and from hypothesis."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reliability import samples as S

pytest.importorskip("nibabel")

from medmask import MaskArchive, nifti  # noqa: E402

HOSTILE_NAMES = [
    "../../escape", "../escape2", "/etc/passwd", "/tmp/abs", "a/../../b", "a/b/c", "..", ".",
    "...", "nul\x00byte", "..\\..\\windows", "C:\\evil", "\uff0e\uff0e\uff0fwide", "\u2025slash",
    "CON", "con.txt", "NUL", "LPT1", "x" * 5000, "dot.", " space ", "tab\tname", "new\nline",
    "same", "SAME", "Same", "stra\u00dfe", "strasse", "\ufb01le", "\u0000", "-rf", "~", "$HOME",
    "emoji\U0001f600", "\u202eevil.gz.exe", "trailing/", "//double", "a" * 255 + "/../b",
]  # fmt: skip


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def hostile_archive(kind: str, names: list[str]) -> bytes:
    """A sample archive whose masks are renamed to ``names`` (forged, valid checksums):
    ``v1``, ``v2`` (index format 2.2) or ``v2.1`` (format 2.1); version-2 rows stay in the
    sample's own layout (a 2.2 bare label number then means ``{new name: label}``)."""
    s = S.build_samples()[{"v1": "mska1", "v2": "mska2", "v2.1": "mska2_21"}[kind]]
    if kind != "v1":
        rows = S.parse_mska2(s.data)["rows"]
        new = [[n, *rows[k % len(rows)][1:]] for k, n in enumerate(names)]
        return S.mska2_commit(s.data, rows=new)
    index = S.parse_mska1(s.data)["index"]
    new = [{**index[k % len(index)], "name": n} for k, n in enumerate(names)]
    return S.mska1_with_index(s.data, new)


@pytest.mark.parametrize("kind", ["v1", "v2", "v2.1"])
@pytest.mark.parametrize("how", ["cli", "api"])
def test_hostile_names_never_leave_the_folder(tmp_path, kind, how):
    sandbox = tmp_path / "sandbox"
    out = sandbox / "out"
    sandbox.mkdir()
    (sandbox / "outside.txt").write_text("keep")
    arch = sandbox / "hostile.mska"
    arch.write_bytes(hostile_archive(kind, HOSTILE_NAMES))
    with MaskArchive(arch) as ar:  # the reader takes the names as they are
        assert ar.all_names() == HOSTILE_NAMES
    before = _tree(sandbox)
    if how == "cli":
        from medmask.cli import main

        assert main(["-q", "unpack", str(arch), "-o", str(out)]) == 0
    else:
        nifti.archive_to_folder(arch, out)
    created = _tree(sandbox) - before
    files = sorted(p for p in created if p != "out")
    assert all(Path(p).parent == Path("out") for p in files), files  # directly inside out/
    assert len(files) == len(HOSTILE_NAMES)  # one file per mask: nothing overwritten
    assert all(p.endswith(".nii.gz") and not Path(p).name.startswith(".") for p in files)
    assert all(len(Path(p).name.encode()) <= 255 for p in files)
    assert (sandbox / "outside.txt").read_text() == "keep"
    assert _tree(sandbox) >= before


def test_a_planted_symlink_is_replaced_not_followed(tmp_path):
    """An existing ``out/<name>.nii.gz`` symlink pointing outside: the export replaces the
    link itself (atomic rename), the file it pointed at is untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    arch = tmp_path / "a.mska"
    arch.write_bytes(hostile_archive("v2", ["liver"]))
    (out / "liver.nii.gz").symlink_to(victim)
    nifti.archive_to_folder(arch, out)
    assert victim.read_text() == "precious"
    assert not (out / "liver.nii.gz").is_symlink()


def test_a_symlink_planted_at_the_temporary_name_is_not_followed(tmp_path):
    """Found by this campaign, fixed in medmask/nifti.py (283ddf0): the export's temporary
    file had a predictable name and was written through a symlink planted there."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    arch = tmp_path / "a.mska"
    arch.write_bytes(hostile_archive("v2", ["liver"]))
    (out / f".liver.nii.gz.tmp{os.getpid()}.nii.gz").symlink_to(victim)
    nifti.archive_to_folder(arch, out)
    assert victim.read_text() == "precious"


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=300), min_size=1, max_size=12))
def test_safe_filename_stays_in_the_folder_and_never_collides(tmp_path_factory, names):
    folder = tmp_path_factory.getbasetemp() / "names"
    root = folder.resolve()
    taken: set[str] = set()
    got = [nifti.safe_filename(n, taken) for n in names]
    for f in got:
        assert f and f not in (".", "..") and "/" not in f and "\\" not in f and "\0" not in f
        assert not f.startswith(".")
        assert len((f + ".nii.gz").encode()) <= 255
        assert (root / f"{f}.nii.gz").resolve().parent == root
        assert os.path.basename(f) == f
    assert len({f.lower() for f in got}) == len(got)  # distinct even on case-insensitive disks
