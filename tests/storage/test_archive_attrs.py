"""Archive-level attributes (format 2.3): ``MaskArchive.archive_attrs`` and
``set_archive_attrs``, stored in the archive-attributes segment at the head of the index
chain; validated like per-mask attributes plus the reserved keys; each change one commit;
older layouts refuse them, a 2.2 archive is upgraded, medmask 0.4.0 refuses a 2.3 archive
that holds them."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zstandard

import medmask
from medmask import MaskArchive, SegmentationMask
from medmask.attrs import MAX_ATTRS_BYTES
from medmask.errors import CorruptFileError, MaskValidationError
from medmask.inspect import file_info, list_masks
from medmask.spaces import default_space

SHAPE = (6, 7, 9)
SPACE = default_space(SHAPE)
ATTRS = {
    "source": {"PatientID": "p1", "SeriesInstanceUID": "1.2.3", "path": "seg.dcm"},
    "grid": "segmentation",
    "annotated": ["liver", "spleen", "gall_bladder"],
    "free": {"nested": [1, 2.5, None, True]},
}
ROOT = Path(__file__).resolve().parents[2]


def organ(k: int) -> np.ndarray:
    a = np.zeros(SHAPE, bool)
    a[k % 3 : k % 3 + 3, 1 : 3 + k % 4, k % 5 : k % 5 + 4] = True
    return a


def write(path: Path, compat: str | None = None, n: int = 2, attrs: dict | None = None) -> None:
    with MaskArchive(path, "w", space=SPACE, compat=compat) as ar:
        for k in range(n):
            ar.add(f"m{k}", organ(k))
        if attrs is not None:
            ar.set_archive_attrs(attrs)


def head_segment(raw: bytes) -> dict:
    """The newest index segment the valid slot of higher generation points at."""
    import struct
    import zlib

    slots = []
    for at in (16, 80):
        s = raw[at : at + 64]
        if struct.unpack_from("<I", s, 60)[0] == zlib.crc32(s[:60]):
            slots.append(struct.unpack_from("<QQQIIQIIQI", s))
    slot = max(slots)
    off, length = slot[5], slot[6]
    return json.loads(zstandard.ZstdDecompressor().decompress(raw[off : off + length]))


@pytest.mark.parametrize("mode", ["w", "a"])
def test_round_trip_and_read_only_copy(tmp_path, mode):
    path = tmp_path / "a.mska"
    with MaskArchive(path, mode, space=SPACE) as ar:
        ar.add("liver", organ(1))
        assert ar.archive_attrs == {}
        ar.set_archive_attrs(ATTRS)
        assert ar.archive_attrs == ATTRS  # the handle sees its own change at once
    with MaskArchive(path) as ar:
        assert ar.layout.name == "2.3" and ar.layout.archive_attrs
        assert ar.archive_attrs == ATTRS
        assert ar.annotated == ("liver", "spleen", "gall_bladder")
        assert ar.grid_kind == "segmentation"
        with pytest.raises(TypeError):
            ar.archive_attrs["grid"] = "image"  # a read-only mapping
        ar.archive_attrs["source"]["PatientID"] = "changed"  # a copy: nothing stored changes
        assert ar.archive_attrs["source"]["PatientID"] == "p1"
        assert "archive attrs ['annotated', 'free', 'grid', 'source']" in repr(ar)
        assert np.array_equal(ar.read_array("liver"), organ(1))
    seg = head_segment(path.read_bytes())
    assert seg["fields"] == ["archive_attrs"] and seg["rows"] == [[ATTRS]]


def test_each_change_is_one_commit_and_later_commits_keep_them(tmp_path):
    path = tmp_path / "a.mska"
    write(path)
    with MaskArchive(path, "a") as ar:
        gen = ar.generation
        ar.set_archive_attrs({"grid": "image"})
        assert ar.generation == gen + 1
        ar.add("m9", organ(9))  # appends, deletions and replacements keep them
        ar.delete("m0")
        ar.replace("m1", organ(4))
        ar.set_attrs("m9", {"color": [1, 2, 3]})
        assert ar.generation == gen + 5
    with MaskArchive(path) as ar:
        assert ar.archive_attrs == {"grid": "image"} and ar.all_names() == ["m1", "m9"]
        assert np.array_equal(ar.read_array("m1"), organ(4))
        assert ar.index_segments == 2  # one row segment after the edits, and the attrs one
    with MaskArchive(path, "a") as ar:
        ar.set_archive_attrs({})  # cleared: the chain ends with a row segment again
    with MaskArchive(path) as ar:
        assert ar.archive_attrs == {} and ar.layout.name == "2.3" and ar.index_segments == 1
    assert head_segment(path.read_bytes())["fields"][0] == "name"


def test_an_archive_with_attributes_and_no_mask(tmp_path):
    path = tmp_path / "a.mska"
    with MaskArchive(path, "w") as ar:
        ar.set_archive_attrs({"annotated": ["liver"]})
    with MaskArchive(path) as ar:
        assert len(ar) == 0 and ar.space is None and ar.annotated == ("liver",)
    with MaskArchive(path, "a") as ar:
        ar.add("liver", SegmentationMask(organ(2), {"liver": 1}, SPACE))
    with MaskArchive(path) as ar:
        assert ar.all_names() == ["liver"] and ar.annotated == ("liver",)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"grid": "ct"}, "'grid' must be one of"),
        ({"annotated": "liver"}, "'annotated' must be a list"),
        ({"annotated": ["liver", "liver"]}, "more than once"),
        ({"annotated": ["liver", ""]}, "'annotated' must be a list"),
        ({"source": "p1"}, "'source' must be an object"),
        ({"source": {"PatientID": 7}}, "'source.PatientID' must be a string"),
        ({"x": float("nan")}, "JSON"),
        ({"x": object()}, "JSON"),
        ({"": 1}, "non-empty strings"),
        ({"x": "a" * MAX_ATTRS_BYTES}, "bytes as JSON"),
        ({"x": [[[[[[[[[1]]]]]]]]]}, "nested deeper"),
        (["grid"], "JSON object"),
    ],
)
def test_bad_attributes_are_refused_and_nothing_changes(tmp_path, bad, match):
    path = tmp_path / "a.mska"
    write(path, attrs={"grid": "image"})
    before = path.read_bytes()
    with MaskArchive(path, "a") as ar:
        with pytest.raises(MaskValidationError, match=match):
            ar.set_archive_attrs(bad)
        assert ar.archive_attrs == {"grid": "image"}
    assert path.read_bytes() == before


@pytest.mark.parametrize("compat", ["0.4", "0.3", "0.2", "0.1"])
def test_layouts_before_23_refuse_them(tmp_path, compat):
    path = tmp_path / "a.mska"
    with MaskArchive(path, "w", space=SPACE, compat=compat) as ar:
        ar.add("m0", organ(0))
        with pytest.raises(MaskValidationError, match="cannot hold archive attributes") as err:
            ar.set_archive_attrs({"grid": "image"})
        assert err.value.path is not None
        assert ar.archive_attrs == {}
    with MaskArchive(path) as ar:
        assert ar.archive_attrs == {} and not ar.layout.archive_attrs


@pytest.mark.parametrize("compat", ["0.3", "0.2", "0.1"])
def test_appending_to_older_layouts_refuses_them_and_keeps_the_file(tmp_path, compat):
    path = tmp_path / "a.mska"
    write(path, compat)
    before = path.read_bytes()
    with (
        MaskArchive(path, "a") as ar,
        pytest.raises(MaskValidationError, match="cannot hold archive attributes"),
    ):
        ar.set_archive_attrs({"grid": "image"})
    assert path.read_bytes() == before


def test_setting_them_on_a_22_archive_makes_it_23(tmp_path):
    path = tmp_path / "a.mska"
    write(path, "0.4", n=3)
    with MaskArchive(path, "a") as ar:
        assert ar.layout.name == "2.2"
        ar.set_archive_attrs({"grid": "image"})
        assert ar.layout.name == "2.3" and ar.minor_version == 3
        ar.add("m7", organ(7))
    raw = path.read_bytes()
    assert raw[5] == 2  # the preamble is never rewritten: readers go by the segments
    with MaskArchive(path) as ar:
        assert ar.layout.name == "2.3" and ar.archive_attrs == {"grid": "image"}
        assert ar.all_names() == ["m0", "m1", "m2", "m7"]
        for k in (0, 1, 2, 7):
            assert np.array_equal(ar.read_array(f"m{k}"), organ(k))
    assert file_info(path)["minor_version"] == 3 and file_info(path)["layout"] == "2.3"


def test_a_23_archive_without_attributes_holds_only_22_segments(tmp_path):
    """New archives are 2.3; without archive attributes their index is 2.2's, so medmask 0.4
    reads them (nothing it would miss)."""
    path = tmp_path / "a.mska"
    write(path)
    raw = path.read_bytes()
    assert raw[5] == 3
    seg = head_segment(raw)
    assert seg["fields"] == [
        "name", "codec", "offset", "length", "crc32", "dtype", "bbox", "voxels", "mapping",
        "centroid", "extra",
    ]  # fmt: skip


# -- stored attributes that break the rules are corruption --------------------------------------
def _with_head(path: Path, body: dict) -> None:
    """Commit a forged head segment (``prev`` pointing at the current head) by hand."""
    import struct
    import zlib

    raw = bytearray(path.read_bytes())
    slots = [struct.unpack_from("<QQQIIQIIQII", raw, at) for at in (16, 80)]
    k = max(range(2), key=lambda i: slots[i][0])
    gen, count, so, sl, sc, io, il, ic, end, _r, _c = slots[k]
    body = {"prev": [io, il, ic], **body}
    seg = zstandard.ZstdCompressor().compress(json.dumps(body).encode())
    off = len(raw)
    raw += seg
    slot = struct.pack("<QQQIIQIIQI", gen + 1, count, so, sl, sc, off, len(seg), zlib.crc32(seg),
                       len(raw), 0)  # fmt: skip
    slot += struct.pack("<I", zlib.crc32(slot))
    at = (16, 80)[1 - k]
    raw[at : at + 64] = slot
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "body, match",
    [
        ({"fields": ["archive_attrs"], "rows": [[{"grid": 3}]]}, "'grid' must be one of"),
        ({"fields": ["archive_attrs"], "rows": [[[1, 2]]]}, "JSON object"),
        ({"fields": ["archive_attrs"], "rows": [[{}], [{}]]}, "one row"),
        ({"fields": ["archive_attrs"], "rows": [[{}, {}]]}, r"must be \[attributes\]"),
    ],
)
def test_stored_attributes_that_break_the_rules_are_corruption(tmp_path, body, match):
    path = tmp_path / "a.mska"
    write(path)
    _with_head(path, body)
    with pytest.raises(CorruptFileError, match=match) as err:
        MaskArchive(path)
    assert err.value.path == str(path) and err.value.field == "archive_attrs"


def test_an_attributes_segment_below_the_head_is_corruption(tmp_path):
    path = tmp_path / "a.mska"
    write(path, attrs={"grid": "image"})
    rows = head_segment(path.read_bytes())  # the attrs segment is the head now
    assert rows["fields"] == ["archive_attrs"]
    with MaskArchive(path) as ar:  # a row segment on top of the attrs segment: forged
        row = ["late", 1, 0, 0, 0, "bool", None, 0, 1, None, None]
        n = len(ar)
    body = {"fields": head_segment_fields(), "rows": [row]}
    _with_head(path, body)
    raw = bytearray(path.read_bytes())
    import struct
    import zlib

    for at in (16, 80):  # the forged commit lists one more mask
        s = list(struct.unpack_from("<QQQIIQIIQII", raw, at))
        if s[0] == max(struct.unpack_from("<Q", raw, a)[0] for a in (16, 80)):
            s[1] = n + 1
            packed = struct.pack("<QQQIIQIIQI", *s[:10])
            raw[at : at + 64] = packed + struct.pack("<I", zlib.crc32(packed))
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptFileError, match="must be the newest") as err:
        MaskArchive(path)
    assert err.value.field == "index"


def head_segment_fields() -> list[str]:
    from medmask.format.v2 import INDEX_FIELDS

    return list(INDEX_FIELDS)


# -- shown by info, ls --json, stats and the notebook table --------------------------------------
def test_info_ls_stats_and_notebook_show_them(tmp_path):
    a, b = tmp_path / "a.mska", tmp_path / "b.mska"
    write(a, attrs=ATTRS)
    write(b, "0.4")
    assert file_info(a)["archive_attrs"] == ATTRS and file_info(b)["archive_attrs"] == {}
    assert all(r["archive_attrs"] == ATTRS for r in list_masks(a))
    pd = pytest.importorskip("pandas")
    df = medmask.stats([a, b])
    assert list(df["archive_grid"])[:2] == ["segmentation"] * 2
    assert df["archive_annotated"][0] == ("liver", "spleen", "gall_bladder")
    assert df["archive_source"][0] == ATTRS["source"] and pd.isna(df["archive_grid"][2])
    with MaskArchive(a) as ar:
        page = ar._repr_html_()
    assert "grid: segmentation" in page and "gall_bladder" in page


# -- medmask 0.4.0 refuses a 2.3 archive that has them -------------------------------------------
RELEASE_040 = "0c8a49a"


def _release_tree(dest: Path) -> Path | None:
    """medmask 0.4.0's package from the repository's history (``None``: no history here)."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        return None
    archive = subprocess.run(
        [git, "-C", str(ROOT), "archive", RELEASE_040, "medmask"], capture_output=True
    )
    if archive.returncode != 0:
        return None
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def test_medmask_040_refuses_a_23_archive_with_attributes(tmp_path):
    tree = _release_tree(tmp_path / "v040")
    if tree is None:
        pytest.skip("needs the repository's git history (medmask 0.4.0 is taken from it)")
    with_attrs, without = tmp_path / "with.mska", tmp_path / "without.mska"
    write(with_attrs, attrs={"grid": "image"})
    write(without)
    script = textwrap.dedent(
        f"""
        import json, medmask
        from medmask import MaskArchive
        out = {{"version": medmask.__version__, "file": medmask.__file__}}
        for key, path in (("with", {str(with_attrs)!r}), ("without", {str(without)!r})):
            try:
                with MaskArchive(path) as ar:
                    out[key] = ["ok", ar.all_names()]
            except Exception as exc:
                out[key] = [type(exc).__name__, str(exc)]
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tree
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["version"] == "0.4.0" and Path(out["file"]).is_relative_to(tree)
    assert out["with"][0] == "UnsupportedFormatError"
    assert "upgrade medmask" in out["with"][1] and "archive_attrs" in out["with"][1]
    assert out["without"] == ["ok", ["m0", "m1"]]


def test_convert_keeps_them_and_says_when_a_layout_drops_them(tmp_path, capsys):
    from medmask.cli import main

    src = tmp_path / "a.mska"
    write(src, attrs=ATTRS)
    assert main(["convert", str(src), "-o", str(tmp_path / "b.mska")]) == 0
    with MaskArchive(tmp_path / "b.mska") as ar:
        assert ar.archive_attrs == ATTRS and ar.layout.name == "2.3"
    capsys.readouterr()
    assert main(["convert", str(src), "-o", str(tmp_path / "c.mska"), "--compat", "0.4"]) == 0
    assert "archive attributes" in capsys.readouterr().err
    with MaskArchive(tmp_path / "c.mska") as ar:
        assert ar.archive_attrs == {} and ar.layout.name == "2.2" and len(ar) == 2
