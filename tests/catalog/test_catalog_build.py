"""Catalogues: what they hold (medmask.stats written down, byte ranges, fingerprints, archive
attributes), writing and opening, processes and Dask, updates, the command line."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from catalog_support import A_NAMES, write_archive

import medmask
from medmask import Catalog, MaskArchive
from medmask.catalog import COLUMNS, META_KEY, SCHEMA_VERSION
from medmask.cli import main
from medmask.schemes import LabelScheme
from medmask.stats import lacking, summarize


def same(a, b) -> bool:
    """Two catalogue tables hold the same rows (chunks and dictionaries aside)."""
    return a.unify_dictionaries().combine_chunks().to_pylist() == (
        b.unify_dictionaries().combine_chunks().to_pylist()
    )


def test_rows_are_the_stats_table_written_down(dataset, tmp_path):
    cat = Catalog.build(dataset)
    st = medmask.stats(dataset)
    assert [c for c, _ in COLUMNS] == cat.table.column_names
    df = cat.df
    assert len(df) == len(st) == 3 * 5 + 3 + 2 + 2
    assert df["path"].astype(str).tolist() == st["path"].tolist()  # absolute paths given
    for col in ("case", "name", "source", "format"):
        assert df[col].astype(str).tolist() == st[col].astype(str).tolist(), col
    for col in ("voxels", "touches_border", "empty"):
        assert df[col].tolist() == st[col].tolist(), col
    np.testing.assert_allclose(df["volume_ml"], st["volume_ml"])
    boxes = [None if b is pd.NA else tuple(b) for b in df["bbox"].tolist()]  # Arrow lists
    assert boxes == st["bbox"].tolist()
    cen = [None if c is pd.NA else tuple(c) for c in df["centroid_ras_mm"].tolist()]
    for a, b in zip(cen, st["centroid_ras_mm"], strict=True):
        assert (a is None and b is None) or np.allclose(a, b)
    # the stats functions take the catalogue's frame
    pd.testing.assert_frame_equal(
        summarize(df).drop(columns="lacking"), summarize(st).drop(columns="lacking"),
        check_dtype=False,
    )  # fmt: skip
    assert lacking(df, "liver") == lacking(st, "liver")


def test_byte_ranges_fingerprints_and_archive_attrs(dataset):
    cat = Catalog.build(dataset)
    df = cat.df
    for path, rows in df.groupby("path", observed=True, sort=False):
        raw = Path(path).read_bytes()
        with MaskArchive(path) as ar:
            fp = ar.fingerprint
            infos = ar.infos()
            attrs = dict(ar.archive_attrs)
        assert rows["archive_size"].unique().tolist() == [len(raw)]
        assert rows["archive_generation"].tolist() == [fp.generation] * len(rows) or (
            fp.generation is None and rows["archive_generation"].isna().all()
        )
        assert rows["archive_index_crc"].unique().tolist() == [fp.index_crc]
        got = rows["archive_attrs"].iloc[0]
        assert (json.loads(got) if isinstance(got, str) else {}) == attrs
        for r, info in zip(rows.itertuples(), infos, strict=True):
            assert (r.position, r.name) == (info.index, info.name)
            assert info.voxels is None or r.voxels == info.voxels  # version 1: decoded
            assert r.blob_length == info.nbytes
            if info.nbytes:  # the recorded range holds the blob the index points at
                blob = raw[r.blob_offset : r.blob_offset + r.blob_length]
                if info.crc is not None:
                    assert zlib.crc32(blob) == r.blob_crc == info.crc
            else:
                assert pd.isna(r.blob_offset) and pd.isna(r.blob_crc)
            assert r.label == 1 and json.loads(r.labels) == {info.name: 1}
    annotated = df[df["case"] == "case_4"]["archive_attrs"].iloc[0]
    assert json.loads(annotated)["annotated"] == ["Liver", "left kidney", "right kidney"]


def test_write_open_roundtrip(dataset, tmp_path):
    cat = Catalog.build(dataset)
    out = tmp_path / "cat.parquet"
    cat.write(out)
    meta = json.loads(pq.read_schema(out).metadata[META_KEY])
    assert meta["version"] == SCHEMA_VERSION and meta["writer"].startswith("medmask ")
    back = Catalog.open(out)
    assert back.table.equals(cat.table.unify_dictionaries().combine_chunks())
    assert back.source == str(out) and all(r.catalog == str(out) for r in back.refs())
    df = back.df
    assert isinstance(df["name"].dtype, pd.CategoricalDtype)
    assert str(df["blob_offset"].dtype) == "Int64" and df["voxels"].dtype == np.int64
    assert repr(back).startswith("Catalog(22 masks, 6 archives from ")


def test_filter_union_and_archive_facts(dataset):
    cat = Catalog.build(dataset)
    livers = cat.filter(lambda df: df.name.isin(["liver", "Liver"]) & ~df["empty"])
    assert set(livers.df["name"].astype(str)) <= {"liver", "Liver"}
    assert len(livers) and not livers.df["empty"].any()
    arch = livers.archives()
    # a filtered catalogue still knows what each archive stores
    k = arch.cases.index("case_0")
    assert arch.names[k] == list(A_NAMES.values())
    b = cat.filter(lambda df: df.path.str.contains("/b/"))
    a = cat.filter(lambda df: df.case == "case_0")
    u = a | b | a
    assert u.archive_paths() == a.archive_paths() + b.archive_paths()
    assert len(u) == len(a) + len(b)
    with pytest.raises(medmask.MaskValidationError, match="one bool per row"):
        cat.filter(np.ones(3, bool))
    # each row's archive, as positions into archive_paths(), also after a union
    for c in (cat, u):
        paths = c.archive_paths()
        assert [paths[k] for k in c.archive_index()] == c.df["path"].astype(str).tolist()
    # df_of: every row of the archives asked for, in catalogue order
    two = [cat.archive_paths()[1], cat.archive_paths()[0]]
    rows = cat.df_of(two)
    assert rows["path"].astype(str).tolist() == [
        p for p in cat.df["path"].astype(str) if p in two
    ]  # fmt: skip


def test_availability_and_datalist(dataset):
    cat = Catalog.build(dataset)
    scheme = LabelScheme("abd", ["liver", "kidney", "spleen"])
    avail = dict(zip(cat.archives().cases, cat.availability(scheme).tolist(), strict=True))
    assert avail["case_0"] == [True, True, True]
    assert avail["case_3"] == [True, True, False]  # B: no spleen annotated
    assert avail["case_4"] == [True, True, False]  # annotated for both kidneys, one stored
    assert avail["old"] == [True, False, True]
    labels = dict(zip(cat.archives().cases, cat.case_labels(scheme), strict=True))
    assert list(labels["case_3"].available) == avail["case_3"]
    assert labels["case_0"].table.to_dict() == {
        "liver": 1,
        "kidney_left": 2,
        "kidney_right": 2,
        "spleen": 3,
    }
    dl = cat.datalist(scheme=scheme)
    assert [d["case"] for d in dl] == cat.archives().cases
    assert dl[4]["label_available"].tolist() == [True, True, False]
    cov = cat.coverage(scheme)
    state = cov.set_index(["case", "class"])["state"]
    assert state[("case_4", "kidney")] == "present"
    assert state[("case_3", "spleen")] == "not_annotated"


def test_processes_and_dask_give_the_same_catalogue(dataset, monkeypatch):
    import medmask.catalog.build as build

    one = Catalog.build(dataset)
    monkeypatch.setattr(build, "POOL_MIN_FILES", 0)  # a pool even for six files
    spawned = []
    real = build._run_pool
    monkeypatch.setattr(build, "_run_pool", lambda *a: spawned.append(a) or real(*a))
    two = Catalog.build(dataset, workers=2)
    assert len(spawned) == 1 and two.report.cpu_seconds > 0
    assert same(two.table, one.table)
    pytest.importorskip("distributed")
    from medmask.packing import dask_client

    with dask_client(workers=2) as client:
        on_dask = Catalog.build(dataset, client=client)
    assert same(on_dask.table, one.table)


def test_update_reads_only_what_changed(dataset, tmp_path, monkeypatch):
    import medmask.catalog.build as build

    cat = Catalog.build(dataset)
    changed = dataset / "a" / "case_1.mska"
    with MaskArchive(changed, "a") as ar:  # an attribute change: same masks, new index
        ar.set_attrs("liver", {"description": "reviewed"})
    (dataset / "a" / "case_2.mska").unlink()
    write_archive(dataset / "b" / "case_9.mska", 9, {"liver": "Liver"})
    read = []
    real = build.file_part
    monkeypatch.setattr(build, "file_part", lambda t: read.append(t.path) or real(t))
    new = cat.update(dataset)
    assert sorted(read) == sorted([str(changed), str(dataset / "b" / "case_9.mska")])
    rep = new.report
    assert rep.removed == [str(dataset / "a" / "case_2.mska")]
    assert sorted(rep.read) == sorted(read) and len(rep.kept) == 4
    monkeypatch.setattr(build, "file_part", real)
    fresh = Catalog.build(dataset)
    assert same(new.table, fresh.table)
    assert "reviewed" in new.df[new.df["case"] == "case_1"]["attrs"].dropna().iloc[0]


def test_unreadable_files_raise_or_are_skipped(dataset):
    bad = dataset / "a" / "broken.mska"
    bad.write_bytes(b"MSKA" + b"\0" * 200)
    with pytest.raises(medmask.CorruptFileError, match="broken.mska"):
        Catalog.build(dataset)
    cat = Catalog.build(dataset, on_error="skip")
    assert [f for f, _ in cat.report.failed] == [str(bad)]
    assert str(bad) not in cat.archive_paths() and len(cat.archive_paths()) == 6


def test_cli_catalog_update_and_scheme(dataset, tmp_path, capsys):
    out = tmp_path / "cat.parquet"
    assert main(["catalog", str(dataset), "-o", str(out), "-w", "1"]) == 0
    assert f"wrote {out}: 22 masks of 6 archives" in capsys.readouterr().out
    assert same(Catalog.open(out).table, Catalog.build(dataset).table)
    write_archive(dataset / "b" / "case_7.mska", 7, {"liver": "Liver"})
    assert main(["catalog", str(dataset), "-o", str(out), "--update", "-w", "1"]) == 0
    assert "(1 read, 6 unchanged, 0 no longer found)" in capsys.readouterr().out
    assert main(["catalog", str(dataset), "-o", str(out), "--scheme", "btcv", "-w", "1"]) == 0
    printed = capsys.readouterr().out
    assert "coverage under scheme 'btcv' (13 classes)" in printed
    line = next(ln for ln in printed.splitlines() if ln.startswith("case_4 "))
    assert line.split()[1:] == ["2", "1", "10"]  # liver, left kidney; the right one: absent
    assert main(["catalog", str(dataset), "-o", str(tmp_path / "cat.csv")]) == 2
    assert "name it like 'cat.parquet'" in capsys.readouterr().err
    assert main(["catalog", str(dataset), "-o", str(out), "--scheme", "nope"]) == 2


def test_stats_scheme_shows_coverage(dataset, capsys, tmp_path):
    assert main(["stats", str(dataset), "--scheme", "amos"]) == 0
    out, err = capsys.readouterr()
    rows = {ln.split()[0]: ln.split()[1:] for ln in out.splitlines()[2:8]}
    assert rows["case_3"] == ["3", "0", "12"] and rows["case_4"] == ["2", "1", "12"]
    assert main(["stats", str(dataset), "--scheme", "amos", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["scheme"] == "amos22" and len(doc["classes"]) == 15
    assert main(["stats", str(dataset), "--scheme", "amos", "--csv", "x.csv"]) == 2
    own = tmp_path / "mine.json"
    own.write_text(json.dumps({"liver": 1, "kidney": 2}))
    assert main(["stats", str(dataset), "--scheme", str(own), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["scheme"] == "mine" and [c["class"] for c in doc["classes"]] == ["liver", "kidney"]
    own.write_text(json.dumps({"liver": 1, "kidney": 1}))  # one label for two classes
    assert main(["stats", str(dataset), "--scheme", str(own)]) == 2
    assert "label 1 is given to 'liver', 'kidney'" in capsys.readouterr().err
