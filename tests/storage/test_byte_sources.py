"""Every reader reads through a ByteSource; archives and .msk files on URLs (file:// and
memory://; S3 is covered by tests/io/test_archives_on_s3.py); writers follow the name rule."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from reliability.workload import SPACE, mask

from medmask import MaskArchive, MaskFile, load_mask, save_mask
from medmask.errors import MaskValidationError
from medmask.format import open_archive, read_msk_record, sniff
from medmask.io.source import LocalFileSource


class CountingSource(LocalFileSource):
    """A local source that records what is read through it."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.reads: list[tuple[int, int]] = []
        self.many: list[int] = []

    def read(self, offset, length, *, field="data", mask=None):
        self.reads.append((offset, length))
        return super().read(offset, length, field=field, mask=mask)

    def read_many(self, ranges, *, field="data"):
        self.many.append(len(ranges))
        return super().read_many(ranges, field=field)


def build(path, ks, codec=None) -> None:
    with MaskArchive(path, "w", space=SPACE, codec=codec) as ar:
        for k in ks:
            ar.add(f"m{k}", mask(k), attrs={"label_value": k} if codec is None else None)


# -- readers read through the source ----------------------------------------------------------
@pytest.mark.parametrize("codec", [None, "zstd"])
def test_archive_readers_read_only_through_the_source(tmp_path, codec):
    path = tmp_path / "a.mska"
    build(path, range(6), codec)
    with CountingSource(path) as src:
        assert sniff(src) == ("mska", 2 if codec is None else 1)
        backend = open_archive(src)
        opened = len(src.reads)
        entry = backend.entries[backend.names.index("m3")]
        assert np.array_equal(backend.read_full(entry), mask(3).data)
        blob_reads = src.reads[opened:]
        assert blob_reads == [(entry.offset, entry.length)]  # one read: the blob
        arrays = backend.read_many_full(list(backend.entries))
        assert src.many == [6]  # all blobs in one read_many call
        for k, a in enumerate(arrays):
            assert np.array_equal(a, mask(k).data)


@pytest.mark.parametrize("codec", [None, "zstd"])
def test_msk_reader_reads_through_the_source(tmp_path, codec):
    path = tmp_path / "m.msk"
    save_mask(mask(2), path, codec=codec)
    with CountingSource(path) as src:
        rec = read_msk_record(src)
        assert src.reads and np.array_equal(rec.array, mask(2).data)


def test_read_all_masks_reads_blobs_together(tmp_path, monkeypatch):
    path = tmp_path / "a.mska"
    build(path, range(5))
    calls = []
    real = LocalFileSource.read_many

    def spy(self, ranges, *, field="data"):
        calls.append(len(ranges))
        return real(self, ranges, field=field)

    monkeypatch.setattr(LocalFileSource, "read_many", spy)
    with MaskArchive(path) as ar:
        got = ar.read_all_masks()
    assert calls == [5]
    assert all(got[f"m{k}"] == mask(k) for k in range(5))


def test_an_open_descriptor_is_sniffed_through_a_byte_source(tmp_path):
    import os

    save_mask(mask(0), tmp_path / "m.msk")
    fd = os.open(tmp_path / "m.msk", os.O_RDONLY)
    try:
        with LocalFileSource(tmp_path / "m.msk", fd=fd, own_fd=False) as src:
            assert sniff(src) == ("msk", 2)
        os.fstat(fd)  # still open: the source did not own it
    finally:
        os.close(fd)


# -- URLs --------------------------------------------------------------------------------------
@pytest.fixture
def memory_url():
    pytest.importorskip("fsspec")
    return f"memory://medmask-test-{uuid.uuid4().hex}"


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_archive_on_a_url_round_trip(tmp_path, scheme, memory_url):
    base = f"file://{tmp_path}" if scheme == "file" else memory_url
    url = f"{base}/out/case.mska"
    with MaskArchive(url, "w", space=SPACE) as ar:
        for k in range(3):
            ar.add(f"m{k}", mask(k), attrs={"description": f"mask {k}"})
        ar.delete("m1")
    with MaskArchive(url) as ar:
        assert ar.all_names() == ["m0", "m2"]
        assert ar["m2"] == mask(2) and ar.info("m0").attrs == {"description": "mask 0"}
        assert ar.read_all_masks()["m0"] == mask(0)
        ar.refresh()
        assert len(ar) == 2
    if scheme == "file":
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["case.mska"]


def test_nothing_is_uploaded_when_the_with_block_fails(memory_url):
    from medmask.io import remote

    url = f"{memory_url}/failed.mska"
    with pytest.raises(KeyError), MaskArchive(url, "w", space=SPACE) as ar:
        ar.add("m0", mask(0))
        raise KeyError("boom")
    assert not remote.exists(url)


def test_append_mode_on_a_url_is_refused(memory_url):
    url = f"{memory_url}/a.mska"
    with MaskArchive(url, "w", space=SPACE) as ar:
        ar.add("m0", mask(0))
    with pytest.raises(MaskValidationError, match="immutable") as err:
        MaskArchive(url, "a")
    assert url in str(err.value) and "mode 'w'" in str(err.value)


def test_msk_on_a_url(memory_url):
    url = f"{memory_url}/one/liver.msk"
    save_mask(mask(1), url, attrs={"color": [1, 2, 3]})
    assert load_mask(url) == mask(1)
    info = MaskFile(url).info()
    assert info.attrs == {"color": [1, 2, 3]} and info.name == "liver"
    with pytest.raises(FileNotFoundError):
        load_mask(f"{memory_url}/missing.msk")


# -- the name rule ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["x.nii.gz", "x.msk", "x.nii", "x.seg.nrrd", "x.dcm", "x.json"])
@pytest.mark.parametrize("mode", ["w", "a"])
def test_archive_writers_refuse_names_of_other_formats(tmp_path, name, mode):
    with pytest.raises(MaskValidationError, match=r"x\.mska"):
        MaskArchive(tmp_path / name, mode, space=SPACE)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["x.mska", "x.nii.gz", "x.seg.nrrd"])
def test_msk_writers_refuse_names_of_other_formats(tmp_path, name):
    for write in (
        lambda: save_mask(mask(0), tmp_path / name),
        lambda: MaskFile(tmp_path / name, "w"),
        lambda: mask(0).save(tmp_path / name),
    ):
        with pytest.raises(MaskValidationError, match=r"x\.msk'"):
            write()
    assert list(tmp_path.iterdir()) == []


def test_names_without_a_known_suffix_are_written_as_asked(tmp_path):
    """No suffix (or one medmask does not know) says nothing false, so it is accepted."""
    with MaskArchive(tmp_path / "case", "w", space=SPACE) as ar:
        ar.add("m0", mask(0))
    save_mask(mask(0), tmp_path / "liver.bin")
    with MaskArchive(tmp_path / "case") as ar:
        assert ar["m0"] == mask(0)
    assert load_mask(tmp_path / "liver.bin") == mask(0)
    with MaskArchive(tmp_path / "case", "a") as ar:  # reading any name is fine; mode "r" too
        assert len(ar) == 1


def test_read_only_operations_on_a_read_handle(tmp_path):
    build(tmp_path / "a.mska", range(2))
    with MaskArchive(tmp_path / "a.mska") as ar, pytest.raises(io.UnsupportedOperation):
        ar.set_attrs("m0", {})
