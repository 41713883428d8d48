"""Loaders over catalogues: startup reads the catalogue only; each archive is checked when a
process first opens it (stale, missing); label_available under a scheme; bad catalogues."""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from catalog_support import SHAPE

from medmask import Catalog, MaskArchive
from medmask.catalog import META_KEY, StaleArchiveWarning
from medmask.errors import (
    CorruptFileError,
    MaskValidationError,
    MissingArchiveError,
    StaleCatalogError,
    UnsupportedFormatError,
)
from medmask.schemes import LabelScheme

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from monai.data import Dataset  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from medmask_monai import LoadMaskd, MaskArchiveDataset  # noqa: E402

SCHEME = LabelScheme("abd", ["liver", "kidney", "spleen"])


@pytest.fixture
def catalog(dataset, tmp_path) -> Catalog:
    path = tmp_path / "cat.parquet"
    Catalog.build(dataset).write(path)
    return Catalog.open(path)


def test_startup_opens_no_archive(catalog, dataset):
    for f in dataset.rglob("*.mska"):  # every archive gone: building the dataset still works
        f.unlink()
    ds = MaskArchiveDataset(catalog, names=["liver", "spleen"])
    assert len(ds) == 8 and ds.items[:2] == [(0, 0, "liver"), (0, 1, "spleen")]
    dl = catalog.datalist(scheme=SCHEME)
    assert len(dl) == 6
    with pytest.raises(MissingArchiveError) as err:  # the first use says what is missing
        ds[0]
    assert str(catalog.archive_paths()[0]) in str(err.value)
    assert catalog.source in str(err.value)
    with pytest.raises(MissingArchiveError, match="cat.parquet"):
        LoadMaskd("label", scheme=SCHEME)(dl[0])


def test_items_equal_the_archives(catalog, dataset):
    from_paths = MaskArchiveDataset(sorted(dataset.rglob("*.mska")))
    from_cat = MaskArchiveDataset(catalog)
    by_key = {(it["archive"], it["name"]): it["mask"] for it in from_paths}
    assert len(from_cat) == len(by_key)
    for it in from_cat:
        assert torch.equal(it["mask"].as_tensor(), by_key[(it["archive"], it["name"])].as_tensor())
    some = MaskArchiveDataset(catalog, names=["spleen", "liver"], min_voxels=1)
    want = [
        (a, n)
        for a in catalog.archive_paths()
        for n in ("spleen", "liver")
        if (a, n) in by_key and by_key[(a, n)].sum() > 0
    ]
    assert [(it["archive"], it["name"]) for it in some] == want
    with pytest.raises(MaskValidationError, match="filter the catalogue"):
        MaskArchiveDataset(catalog, where=lambda info: True)


def test_changed_archive_is_caught_in_a_worker(catalog, dataset):
    changed = dataset / "a" / "case_1.mska"
    with MaskArchive(changed, "a") as ar:
        ar.add("extra", np.ones(SHAPE, bool))
    ds = MaskArchiveDataset(catalog, names=["liver"])  # startup: fine
    assert ds[0]["name"] == "liver"  # case_0 unchanged
    loader = DataLoader(ds, batch_size=1, num_workers=1)
    with pytest.raises(StaleCatalogError) as err:
        list(loader)
    text = str(err.value)
    assert str(changed) in text and catalog.source in text and "size" in text
    with pytest.warns(StaleArchiveWarning, match="case_1.mska"):
        fresh = MaskArchiveDataset(catalog, names=["liver"], on_stale="reread")[1]
    with MaskArchive(changed) as ar:
        assert np.array_equal(fresh["mask"][0].numpy().transpose(2, 1, 0), ar.read_array("liver"))
    with pytest.raises(StaleCatalogError, match="case_1.mska"):
        LoadMaskd("label")(catalog.datalist()[1])


def test_rewritten_archive_of_equal_size_is_caught(catalog, dataset):
    """A rewrite (mode 'w') restarts the generation; the index checksum still differs."""
    path = dataset / "a" / "case_2.mska"
    with MaskArchive(path) as ar:
        masks = {n: ar.read_array(n) for n in ar.all_names()}
        space = ar.space
    ref = catalog.refs()[2]
    # the index is compressed: look for a rewrite (blobs of two masks swapped, one mask
    # renamed) whose file has the catalogued size
    alphabets = ("qzjxkvwbfgmhyuc", "spleen_spleen_s", "0123456789abcde")
    for swap, alphabet, length in itertools.product((True, False), alphabets, range(1, 16)):
        new = dict(masks)
        if swap:
            new["liver"], new["spleen"] = masks["spleen"], masks["liver"]
        new[alphabet[:length]] = new.pop("spleen")
        with MaskArchive(path, "w", space=space) as ar:
            for n, m in new.items():
                ar.add(n, m)
        with MaskArchive(path) as ar:
            now = ar.fingerprint
        if now.size == ref.size:
            break
    assert (now.size, now.generation) == (ref.size, ref.generation) != (None, None)
    with pytest.raises(StaleCatalogError, match="index checksum"):
        MaskArchiveDataset(catalog)[10]


def test_label_available_and_scheme_painting(catalog, dataset):
    dl = catalog.datalist(scheme=SCHEME)
    load = LoadMaskd("label", scheme=SCHEME)
    loaded = [load(d) for d in dl]
    for d, out in zip(dl, loaded, strict=True):
        assert out["label_available"].dtype == bool
        assert out["label_available"].tolist() == d["label_available"].tolist()
        assert out["label"].meta["labels"] == {"liver": 1, "kidney": 2, "spleen": 3}
    by_case = dict(zip(catalog.archives().cases, loaded, strict=True))
    # dataset B's case_4: annotated for both kidneys, only the left one stored
    with MaskArchive(dataset / "b" / "case_4.mska") as ar:
        liver, kidney = ar.read_array("Liver"), ar.read_array("left kidney")
    got = by_case["case_4"]["label"][0].numpy().transpose(2, 1, 0)
    want = np.zeros(SHAPE, np.uint8)
    want[liver] = 1
    want[kidney] = 2
    assert np.array_equal(got, want)
    assert by_case["case_4"]["label_available"].tolist() == [True, True, False]
    case_4 = next(d for d in dl if d["case"] == "case_4")
    chan = LoadMaskd("label", scheme=SCHEME, mode="channels")(case_4)["label"]
    assert chan.shape[0] == 3 and not chan[2].any()  # spleen: not annotated, empty channel
    assert np.array_equal(chan[1].numpy().transpose(2, 1, 0), kidney.astype(np.uint8))
    batches = list(DataLoader(Dataset(dl, load), batch_size=3, num_workers=2))
    stacked = torch.cat([b["label_available"] for b in batches])
    assert stacked.dtype == torch.bool
    assert stacked.numpy().tolist() == catalog.availability(SCHEME).tolist()
    with pytest.raises(MaskValidationError, match="not both"):
        LoadMaskd("label", names=["liver"], scheme=SCHEME)


def test_dataset_label_available_paths_and_catalogue(catalog, dataset):
    paths = MaskArchiveDataset(sorted(dataset.rglob("*.mska")), scheme=SCHEME)
    cat = MaskArchiveDataset(catalog, scheme=SCHEME)
    by_archive = {it["archive"]: it["label_available"].tolist() for it in paths}
    for it in cat:
        assert it["label_available"].tolist() == by_archive[it["archive"]]
    classes = {(it["archive"].rsplit("/", 1)[-1], it["name"]): it["class"] for it in cat}
    assert classes[("case_3.mska", "left kidney")] == "kidney"
    assert classes[("case_0.mska", "gallbladder")] is None


def test_bad_catalogue_files(catalog, tmp_path):
    newer = tmp_path / "newer.parquet"
    meta = {META_KEY: json.dumps({"version": 99}).encode()}
    pq.write_table(catalog.table.replace_schema_metadata(meta), newer)
    with pytest.raises(UnsupportedFormatError, match="version 99 is newer.*upgrade medmask"):
        Catalog.open(newer)
    other = tmp_path / "other.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(other)
    with pytest.raises(CorruptFileError, match="not a medmask catalogue") as err:
        Catalog.open(other)
    assert str(other) in str(err.value)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all" * 10)
    with pytest.raises(CorruptFileError, match="not a Parquet file"):
        Catalog.open(junk)
    with pytest.raises(FileNotFoundError, match="nope.parquet"):
        Catalog.open(tmp_path / "nope.parquet")
    with pytest.raises(MaskValidationError, match="catalogue schema"):
        Catalog(pq.read_table(other))
    with pytest.raises(MaskValidationError, match="name it like"):
        catalog.write(tmp_path / "cat.csv")
    with pytest.raises(MaskValidationError, match="on_stale"):
        MaskArchiveDataset(catalog, on_stale="ignore")


def test_stale_check_fields():
    from medmask.catalog import ArchiveRef
    from medmask.catalog.refs import check_fingerprint
    from medmask.format import ArchiveFingerprint

    ref = ArchiveRef("x.mska", 100, 3, 7, "cat.parquet")
    assert check_fingerprint(ref, ArchiveFingerprint(100, 3, 7))
    for found, what in [((101, 3, 7), "size 100 -> 101"), ((100, 4, 7), "generation 3 -> 4"),
                        ((100, 3, 8), "index checksum 7 -> 8")]:  # fmt: skip
        with pytest.raises(StaleCatalogError, match=what):
            check_fingerprint(ref, ArchiveFingerprint(*found))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert not check_fingerprint(ref, ArchiveFingerprint(1, 3, 7), "reread")
    assert "cat.parquet" in str(seen[0].message)
