"""medmask.stats and ``medmask stats``: figures from the index, checked against nibabel and
against the arrays themselves, for every file version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import medmask
from medmask import MaskArchive, SegmentationMask, save_mask
from medmask.cli import main
from medmask.errors import CorruptFileError, MaskValidationError
from medmask.phantoms import phantom_case

pd = pytest.importorskip("pandas")


# -- helpers ----------------------------------------------------------------------------------
def ras_of(space, centroid_zyx) -> np.ndarray:
    """World RAS of a (z, y, x) voxel position, from the Space fields (LPS) directly."""
    xyz = space.reverse_axis_order()
    rot = np.column_stack([xyz.x_orientation, xyz.y_orientation, xyz.z_orientation])
    ijk = np.asarray(centroid_zyx, float)[::-1]
    lps = np.asarray(xyz.origin) + rot @ (np.asarray(xyz.spacing) * ijk)
    return lps * np.array([-1.0, -1.0, 1.0])


def expected(masks: dict[str, np.ndarray], space) -> dict[str, dict]:
    out = {}
    vml = float(np.prod(space.spacing)) / 1000
    for name, m in masks.items():
        idx = np.argwhere(m)
        if len(idx) == 0:
            out[name] = {"voxels": 0, "bbox": None, "ras": None, "border": False}
            continue
        lo, hi = idx.min(0), idx.max(0) + 1
        bbox = (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])
        border = bool(np.any(lo == 0) or np.any(hi == np.asarray(m.shape)))
        out[name] = {
            "voxels": len(idx),
            "ml": len(idx) * vml,
            "bbox": tuple(int(b) for b in bbox),
            "ras": ras_of(space, idx.mean(0)),
            "border": border,
        }
    return out


def write_case(path: Path, masks, space, **kw) -> None:
    with MaskArchive(path, "w", space=space, **kw) as ar:
        for name, m in masks.items():
            ar.add(name, SegmentationMask(m, {name: 1}, space))


def check_rows(df, exp, case: str) -> None:
    rows = df[df["case"] == case].set_index("name")
    assert sorted(rows.index) == sorted(exp)
    for name, e in exp.items():
        r = rows.loc[name]
        assert r["voxels"] == e["voxels"], name
        assert bool(r["empty"]) == (e["voxels"] == 0)
        assert bool(r["touches_border"]) == e["border"], name
        if e["voxels"] == 0:
            assert r["bbox"] is None and r["centroid_ras_mm"] is None
            assert r["volume_ml"] == 0
            continue
        assert r["bbox"] == e["bbox"], name
        assert r["volume_ml"] == pytest.approx(e["ml"], rel=1e-12)
        np.testing.assert_allclose(r["centroid_ras_mm"], e["ras"], atol=1e-2)


@pytest.fixture(scope="module")
def phantom():
    masks, space = phantom_case(3, shape_zyx=(24, 40, 36))
    # one mask cut by the border, one empty
    edge = np.zeros(space.shape, bool)
    edge[0:5, 10:20, 30:36] = True
    masks["edge"] = edge
    masks["nothing"] = np.zeros(space.shape, bool)
    return masks, space


# -- the table --------------------------------------------------------------------------------
def test_current_format_answers_from_the_index(tmp_path, phantom):
    masks, space = phantom
    write_case(tmp_path / "c1.mska", masks, space)
    df = medmask.stats(tmp_path / "c1.mska")
    check_rows(df, expected(masks, space), "c1")
    assert set(df["source"]) == {"index"}
    assert set(df["format"]) == {"2.3"}
    assert df.attrs["decoded"] == 0
    assert list(df.columns[:8]) == [
        "case", "name", "voxels", "volume_ml", "bbox", "centroid_ras_mm", "touches_border", "empty"
    ]  # fmt: skip
    assert df["voxels"].dtype == np.int64 and df["empty"].dtype == bool


def test_index_answer_does_not_decode(tmp_path, phantom, monkeypatch):
    masks, space = phantom
    write_case(tmp_path / "c1.mska", masks, space)

    def boom(*a, **k):
        raise AssertionError("stats decoded a mask of an archive that stores centroids")

    monkeypatch.setattr(MaskArchive, "read_cropped", boom)
    monkeypatch.setattr(MaskArchive, "read_array", boom)
    monkeypatch.setattr(MaskArchive, "__getitem__", boom)
    assert len(medmask.stats(tmp_path / "c1.mska")) == len(masks)


@pytest.mark.parametrize(
    "kw, fmt", [({"codec": "zstd"}, "1"), ({"compat": "0.2"}, "2.0")], ids=["v1", "v2.0"]
)
def test_older_files_are_decoded_and_say_so(tmp_path, phantom, kw, fmt):
    masks, space = phantom
    write_case(tmp_path / "old.mska", masks, space, **kw)
    df = medmask.stats(tmp_path / "old.mska")
    check_rows(df, expected(masks, space), "old")
    assert set(df["format"]) == {fmt}
    full = df[~df["empty"]]
    assert set(full["source"]) == {"decoded"}
    assert df.attrs["decoded"] == len(full) + (int(df["empty"].sum()) if fmt == "1" else 0)


def test_msk_files_and_folders(tmp_path, phantom):
    masks, space = phantom
    case = tmp_path / "data" / "patient7"
    case.mkdir(parents=True)
    for name in ("edge", "nothing"):
        save_mask(SegmentationMask(masks[name], {name: 1}, space), case / f"{name}.msk")
    (tmp_path / "data" / "deeper").mkdir()
    write_case(tmp_path / "data" / "deeper" / "c2.mska", masks, space)
    (tmp_path / "data" / "notes.txt").write_text("not a mask")
    df = medmask.stats(tmp_path / "data")
    assert set(df["case"]) == {"patient7", "c2"}
    check_rows(df, expected(masks, space), "c2")
    msk = df[df["case"] == "patient7"].set_index("name")
    assert msk.loc["edge", "voxels"] == int(masks["edge"].sum())
    assert msk.loc["edge", "touches_border"] and msk.loc["nothing", "empty"]
    assert set(msk["source"]) == {"decoded"}
    assert len(df.attrs["files"]) == 3


def test_stored_attributes_become_columns(tmp_path, phantom):
    masks, space = phantom
    with MaskArchive(tmp_path / "a.mska", "w", space=space) as ar:
        ar.add(
            "edge",
            SegmentationMask(masks["edge"], {"edge": 1}, space),
            attrs={"color": [1, 2, 3], "description": "cut by the border"},
        )
        ar.add("nothing", SegmentationMask(masks["nothing"], {"nothing": 1}, space))
    df = medmask.stats(tmp_path / "a.mska").set_index("name")
    assert df.loc["edge", "color"] == (1, 2, 3)
    assert df.loc["edge", "description"] == "cut by the border"
    assert df.loc["nothing", "color"] is None


def test_summary_and_lacking(tmp_path, phantom):
    masks, space = phantom
    write_case(tmp_path / "a.mska", masks, space)
    write_case(tmp_path / "b.mska", {k: masks[k] for k in ("edge",)}, space)
    write_case(tmp_path / "c.mska", {"edge": np.zeros(space.shape, bool)}, space)
    df = medmask.stats(tmp_path)
    s = medmask.stats.summarize(df).set_index("name")
    e = s.loc["edge"]
    assert (e["cases"], e["present"], e["empty"], e["missing"], e["touching_border"]) == (
        3,
        2,
        1,
        0,
        2,
    )
    ml = float(masks["edge"].sum() * np.prod(space.spacing) / 1000)
    assert e["volume_ml_min"] == pytest.approx(ml) and e["volume_ml_max"] == pytest.approx(ml)
    assert e["lacking"] == ["c"]
    n = s.loc["nothing"]
    assert (n["cases"], n["present"], n["missing"]) == (1, 0, 2) and np.isnan(n["volume_ml_median"])
    assert n["lacking"] == ["a", "b", "c"]
    assert medmask.stats.lacking(df, "edge") == ["c"]
    assert medmask.stats.lacking(df, "edge", empty_is_missing=False) == []
    assert medmask.stats.lacking(df, "no_such_organ") == ["a", "b", "c"]
    # the pandas one-liner of docs/stats.md
    cohort = df[(df.name == "edge") & ~df["empty"]].case.tolist()
    assert sorted(cohort) == ["a", "b"]
    with pytest.raises(MaskValidationError, match="medmask.stats"):
        medmask.stats.summarize(pd.DataFrame({"x": [1]}))


def test_bad_files(tmp_path, phantom):
    masks, space = phantom
    write_case(tmp_path / "good.mska", {"edge": masks["edge"]}, space)
    data = bytearray((tmp_path / "good.mska").read_bytes())
    data[-40] ^= 0xFF
    (tmp_path / "bad.mska").write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="bad.mska"):
        medmask.stats(tmp_path)
    with pytest.warns(RuntimeWarning, match="bad.mska"):
        df = medmask.stats(tmp_path, on_error="skip")
    assert set(df["case"]) == {"good"}
    assert [p for p, _ in df.attrs["failed"]] == [str(tmp_path / "bad.mska")]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        medmask.stats(tmp_path / "nowhere")
    with pytest.raises(MaskValidationError, match="on_error"):
        medmask.stats(tmp_path, on_error="ignore")


def test_import_medmask_does_not_import_pandas_or_matplotlib():
    code = (
        "import sys, medmask; medmask.stats; import medmask.viz; "
        "print('pandas' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_callable_module():
    import medmask.stats as module

    assert module is medmask.stats and callable(medmask.stats)
    assert medmask.stats.summarize is module.summarize


# -- the real case against nibabel ------------------------------------------------------------
@pytest.fixture(scope="module")
def real_archive(real_case, tmp_path_factory):
    from medmask.nifti import folder_to_archive

    out = tmp_path_factory.mktemp("real") / "s0000.mska"
    folder_to_archive(real_case, out)
    return out


@pytest.mark.realdata
def test_real_case_matches_nibabel(real_case, real_archive):
    nib = pytest.importorskip("nibabel")
    df = medmask.stats(real_archive).set_index("name")
    assert len(df) == 117 and set(df["source"]) == {"index"}
    worst = 0.0
    for f in sorted(real_case.glob("*.nii.gz")):
        img = nib.load(f)
        a = np.asarray(img.dataobj) != 0
        r = df.loc[f.name[: -len(".nii.gz")]]
        v = int(a.sum())
        assert r["voxels"] == v
        voxel_ml = abs(np.linalg.det(img.affine[:3, :3])) / 1000
        assert r["volume_ml"] == pytest.approx(v * voxel_ml, rel=1e-5)
        if v == 0:
            assert r["empty"] and not r["touches_border"]
            continue
        ras = (img.affine @ np.r_[np.argwhere(a).mean(0), 1])[:3]
        worst = max(worst, float(np.abs(ras - np.asarray(r["centroid_ras_mm"])).max()))
        border = any(a.take(0, axis=k).any() or a.take(-1, axis=k).any() for k in range(3))
        assert bool(r["touches_border"]) == border
    assert worst < 0.5, worst


# -- the command ------------------------------------------------------------------------------
def test_cli_json_csv_parquet_lacking(tmp_path, phantom, capsys):
    masks, space = phantom
    write_case(tmp_path / "a.mska", masks, space)
    write_case(tmp_path / "b.mska", {"edge": masks["edge"]}, space)
    assert main(["stats", str(tmp_path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"masks", "summary"}
    assert len(doc["masks"]) == len(masks) + 1
    row = next(r for r in doc["masks"] if r["case"] == "b")
    assert row["name"] == "edge" and row["voxels"] == int(masks["edge"].sum())
    assert row["touches_border"] is True and len(row["bbox"]) == 6
    summ = {r["name"]: r for r in doc["summary"]}
    assert summ["nothing"]["lacking"] == ["a", "b"] and summ["nothing"]["volume_ml_min"] is None

    assert main(["stats", str(tmp_path), "--csv", str(tmp_path / "t.csv")]) == 0
    back = pd.read_csv(tmp_path / "t.csv")
    assert len(back) == len(masks) + 1 and json.loads(back["bbox"].dropna().iloc[0])
    assert len(pd.read_csv(tmp_path / "t.summary.csv")) == len(masks)
    capsys.readouterr()

    pytest.importorskip("pyarrow")
    assert main(["stats", str(tmp_path), "--parquet", str(tmp_path / "t.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "t.parquet")) == len(masks) + 1
    assert (tmp_path / "t.summary.parquet").is_file()
    capsys.readouterr()

    assert main(["stats", str(tmp_path), "--lacking", "nothing"]) == 0
    assert capsys.readouterr().out.split() == ["a", "b"]
    assert main(["stats", str(tmp_path), "--lacking", "edge"]) == 0
    assert capsys.readouterr().out.split() == []


def test_cli_text_names_and_errors(tmp_path, phantom, capsys):
    masks, space = phantom
    write_case(tmp_path / "a.mska", masks, space, codec="zstd")
    assert main(["stats", str(tmp_path / "a.mska"), "--masks"]) == 0
    out = capsys.readouterr().out
    assert "edge" in out and "decoded" in out and "median mL" in out
    # the output's name says its format, or the command refuses (bad usage)
    assert main(["stats", str(tmp_path), "--csv", str(tmp_path / "t.json")]) == 2
    assert "t.csv" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()
    (tmp_path / "bad.mska").write_bytes(b"MSKA" + b"\0" * 60)
    assert main(["stats", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "bad.mska" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["stats", str(empty)]) == 2
    assert main(["stats", str(tmp_path / "gone.mska")]) == 2
    assert "gone.mska" in capsys.readouterr().err


# -- URLs ---------------------------------------------------------------------------------------
def test_s3_prefix(tmp_path, phantom, s3):
    masks, space = phantom
    write_case(tmp_path / "a.mska", masks, space)
    s3.put("data/x/a.mska", (tmp_path / "a.mska").read_bytes())
    s3.put("data/readme.txt", b"hello")
    save_mask(SegmentationMask(masks["edge"], {"edge": 1}, space), tmp_path / "edge.msk")
    s3.put("data/p9/edge.msk", (tmp_path / "edge.msk").read_bytes())
    files = medmask.stats.find_mask_files(s3.url("data/"), storage_options=s3.storage_options)
    assert files == [s3.url("data/p9/edge.msk"), s3.url("data/x/a.mska")]
    df = medmask.stats(s3.url("data/"), storage_options=s3.storage_options)
    check_rows(df, expected(masks, space), "a")
    assert set(df[df["case"] == "a"]["source"]) == {"index"}
    check_rows(df, {"edge": expected(masks, space)["edge"]}, "p9")


@pytest.mark.parametrize(
    "compat, fmt", [(None, "2.3"), ("0.4", "2.2"), ("0.3", "2.1")], ids=["2.3", "2.2", "2.1"]
)
def test_index_answer_equals_decoding(tmp_path, phantom, compat, fmt):
    """Both layouts that store the centroid answer from the index, with the figures that
    decoding the same masks from a format-2.0 file gives (centroids to 1e-4 voxel)."""
    masks, space = phantom
    for path, kw in (
        (tmp_path / "a.mska", {"compat": compat}),
        (tmp_path / "b.mska", {"compat": "0.2"}),
    ):
        with MaskArchive(path, "w", space=space, **kw) as ar:
            for k, (name, m) in enumerate(masks.items()):
                with_attrs = k % 2 and path.name == "a.mska"
                attrs = {"color": [k, 2, 3], "description": name} if with_attrs else None
                ar.add(name, SegmentationMask(m, {name: 1}, space), attrs=attrs)
            multi = masks["edge"].astype(np.uint8) * 3
            ar.add("three", SegmentationMask(multi, {"x": 3}, space))
    index = medmask.stats(tmp_path / "a.mska").set_index("name")
    decoded = medmask.stats(tmp_path / "b.mska").set_index("name")
    assert set(index["format"]) == {fmt} and set(decoded["format"]) == {"2.0"}
    full = ~index["empty"]
    assert set(index.loc[full, "source"]) == {"index"}
    assert set(decoded.loc[full, "source"]) == {"decoded"}
    for col in ("voxels", "volume_ml", "bbox", "touches_border", "empty", "labels"):
        assert list(index[col]) == list(decoded[col]), col
    for name in index.index[full]:
        np.testing.assert_allclose(
            index.loc[name, "centroid_ras_mm"], decoded.loc[name, "centroid_ras_mm"], atol=1e-3
        )
    assert index.loc["three", "labels"] == {"x": 3}
    check_rows(index.drop("three").reset_index(), expected(masks, space), "a")


def test_archive_without_masks_and_empty_tables(tmp_path, phantom):
    _masks, space = phantom
    with MaskArchive(tmp_path / "none.mska", "w", space=space):
        pass
    df = medmask.stats(tmp_path / "none.mska")
    assert len(df) == 0 and list(df.columns) == list(medmask.stats.MASK_COLUMNS)
    assert df.attrs["files"] == [str(tmp_path / "none.mska")]
    assert len(medmask.stats.summarize(df)) == 0
    assert medmask.stats.lacking(df, "liver") == ["none"]
