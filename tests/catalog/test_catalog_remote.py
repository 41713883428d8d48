"""Catalogues in a bucket (moto S3 behind the counting proxy): building from an s3:// prefix,
writing to a URL, and startup costs: opening a catalogue is one GET, a dataset over it
costs nothing more until the first batch, which reads only its own archives."""

from __future__ import annotations

import pytest

from medmask import Catalog
from medmask.cli import main
from medmask.errors import MissingArchiveError
from medmask.schemes import LabelScheme

pytest.importorskip("s3fs")
torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from monai.data import Dataset  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from medmask_monai import LoadMaskd, MaskArchiveDataset  # noqa: E402


@pytest.fixture
def bucket_catalog(dataset, s3p):
    """The dataset's archives under s3://BUCKET/packed/ and its catalogue beside them."""
    for f in sorted(dataset.rglob("*.mska")):
        s3p.put(f"packed/{f.parent.name}_{f.name}", f.read_bytes())
    url = s3p.url("catalog.parquet")
    cat = Catalog.build(s3p.url("packed/"), storage_options=s3p.storage_options)
    cat.write(url)
    return url, cat


def keys_read(records) -> set[str]:
    return {r.path.split("?")[0].rsplit("/", 1)[-1] for r in records if r.method == "GET"}


def test_built_from_a_prefix_like_local_files(bucket_catalog, dataset):
    _url, cat = bucket_catalog
    local = Catalog.build(dataset)
    assert all(p.startswith("s3://") for p in cat.archive_paths())
    cols = [
        "name",
        "voxels",
        "bbox_z0",
        "bbox_x1",
        "blob_offset",
        "blob_length",
        "archive_index_crc",
    ]
    assert cat.table.select(cols).to_pylist() == local.table.select(cols).to_pylist()


def test_open_is_one_get_and_the_first_batch_reads_its_archives(bucket_catalog, s3p):
    url, _ = bucket_catalog
    s3p.proxy.reset_counts()
    cat = Catalog.open(url, storage_options=s3p.storage_options)
    assert s3p.proxy.count() == 1 and s3p.proxy.count("GET") == 1, s3p.proxy.records()
    ds = MaskArchiveDataset(cat, names=["liver", "Liver"])
    assert len(ds) == 6 and s3p.proxy.count() == 1  # startup: the catalogue only
    batch = next(iter(DataLoader(ds, batch_size=2)))  # no worker prefetching the next ones
    archives = {a.rsplit("/", 1)[-1] for a in batch["archive"]}
    assert archives == {"a_case_0.mska", "a_case_1.mska"}
    assert keys_read(s3p.proxy.records()[1:]) == archives  # nothing else was read
    assert s3p.proxy.count() - 1 <= 2 * len(archives)  # each small archive: one or two GETs


def test_datalist_startup_and_first_batch(bucket_catalog, s3p):
    url, _ = bucket_catalog
    scheme = LabelScheme("abd", ["liver", "kidney"])
    s3p.proxy.reset_counts()
    cat = Catalog.open(url, storage_options=s3p.storage_options)
    dl = cat.datalist(scheme=scheme)
    load = LoadMaskd("label", scheme=scheme, storage_options=s3p.storage_options)
    assert s3p.proxy.count() == 1
    batch = next(iter(DataLoader(Dataset(dl, load), batch_size=3)))
    assert batch["label_available"].shape == (3, 2)
    assert keys_read(s3p.proxy.records()[1:]) == {
        "a_case_0.mska", "a_case_1.mska", "a_case_2.mska"
    }  # fmt: skip


def test_missing_object_is_reported_at_first_use(bucket_catalog, s3p):
    url, _ = bucket_catalog
    s3p.server.client().delete_object(Bucket=s3p.name, Key="packed/b_case_3.mska")
    cat = Catalog.open(url, storage_options=s3p.storage_options)
    ds = MaskArchiveDataset(cat)  # startup: no error
    k = next(i for i in range(len(ds)) if ds.items[i][0] == 4)
    with pytest.raises(MissingArchiveError) as err:
        ds[k]
    assert "b_case_3.mska" in str(err.value) and "catalog.parquet" in str(err.value)


def test_cli_to_and_from_a_bucket(dataset, s3p, capsys):
    for f in sorted(dataset.rglob("*.mska")):
        s3p.put(f"packed/{f.name}", f.read_bytes())
    opts = ["--storage-option", f"client_kwargs.endpoint_url={s3p.proxy.url}"]
    out = s3p.url("cat.parquet")
    assert main(["catalog", s3p.url("packed/"), "-o", out, "-w", "1", *opts]) == 0
    assert "6 archives" in capsys.readouterr().out
    assert main(["catalog", s3p.url("packed/"), "-o", out, "--update", "-w", "1", *opts]) == 0
    assert "(0 read, 6 unchanged, 0 no longer found)" in capsys.readouterr().out
