"""Extension points of the format layer, each exercised from outside the package (nothing
under medmask/ is edited): a codec of our own, and a toy format version 3 registered in the
tables of medmask.format, which sniffing and opening then dispatch to."""

from __future__ import annotations

import io
import json
import zlib

import numpy as np
import pytest
from reliability import samples as S

import medmask
from medmask import MaskArchive, SegmentationMask, load_mask, save_mask
from medmask import codecs as codecs_module
from medmask.bbox import full_bbox
from medmask.codecs import BlobSpec, Codec, get_codec, register_codec
from medmask.errors import CorruptFileError, UnsupportedFormatError
from medmask.format import (
    LAYOUTS,
    ArchiveBackend,
    Entry,
    FormatVersion,
    Layout,
    open_archive,
    register_layout,
    register_version,
    sniff,
    supported_versions,
)
from medmask.format import layouts as layouts_module
from medmask.format import versions as versions_module
from medmask.format.base import decode_blob
from medmask.inspect import file_info, verify_file
from medmask.io import open_source
from medmask.spaces import default_space, space_from_disk_json, space_to_disk_json

SHAPE = (6, 7, 8)
SPACE = default_space(SHAPE)


def masks() -> dict[str, SegmentationMask]:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 700, SHAPE).astype(np.uint16)
    labels[:2] = 0
    blob = np.zeros(SHAPE, bool)
    blob[1:4, 2:5, 3:7] = True
    return {
        "organ": SegmentationMask(blob, {"organ": 1}, SPACE),
        "labels": SegmentationMask(labels, {"many": 699}, SPACE),
        "empty": SegmentationMask(np.zeros(SHAPE, bool), {"empty": 1}, SPACE),
    }


# -- a codec ---------------------------------------------------------------------------------
class ZlibCodec(Codec):
    """A codec of the test's own: zlib over the raw (bit-packed when boolean) array."""

    codec_id = 222
    name = "test-zlib"

    def __init__(self) -> None:
        self.encoded = 0

    def encode(self, array: np.ndarray) -> bytes:
        self.encoded += 1
        raw = np.packbits(array.reshape(-1)) if array.dtype == np.bool_ else array
        return zlib.compress(np.ascontiguousarray(raw).tobytes())

    def decode(self, blob, spec: BlobSpec, out=None) -> np.ndarray:
        raw = zlib.decompress(bytes(blob))
        n = int(np.prod(spec.shape))
        if np.dtype(spec.dtype) == np.bool_:
            flat = np.unpackbits(np.frombuffer(raw, np.uint8))[:n].astype(bool)
        else:
            flat = np.frombuffer(raw, spec.dtype).copy()
        if flat.size != n:
            raise CorruptFileError(f"{flat.size} values for a box of {n}", field="data")
        return flat.reshape(spec.shape)


@pytest.fixture
def zlib_codec(monkeypatch):
    """The codec registered for one test (the registry is restored afterwards)."""
    monkeypatch.setattr(codecs_module, "_BY_NAME", dict(codecs_module._BY_NAME))
    monkeypatch.setattr(codecs_module, "_BY_ID", dict(codecs_module._BY_ID))
    codec = ZlibCodec()
    register_codec(codec)
    return codec


def test_a_registered_codec_writes_and_reads_archives_exactly(tmp_path, zlib_codec):
    path = tmp_path / "c.mska"
    with MaskArchive(path, "w", codec="test-zlib") as ar:
        for name, m in masks().items():
            ar.add(name, m)
    assert zlib_codec.encoded == 2  # the empty mask has no blob
    with MaskArchive(path) as ar:
        assert ar.version == 2 and ar.codec_names == ["test-zlib"]
        for name, m in masks().items():
            assert ar[name] == m
        assert ar.read_all_masks() == masks()
    rows = S.parse_mska2(path.read_bytes())["rows"]
    assert [r[1] for r in rows] == [ZlibCodec.codec_id] * 3  # the index names the codec id
    assert verify_file(path)["ok"]


def test_a_registered_codec_in_a_msk_is_reported_by_name(tmp_path, zlib_codec):
    m = masks()["labels"]
    save_mask(m, tmp_path / "m.msk", codec="test-zlib")
    assert load_mask(tmp_path / "m.msk") == m
    assert file_info(tmp_path / "m.msk")["codec"] == "test-zlib"


def test_a_file_of_an_unregistered_codec_says_which_id(tmp_path, zlib_codec, monkeypatch):
    save_mask(masks()["organ"], tmp_path / "m.msk", codec="test-zlib")
    monkeypatch.delitem(codecs_module._BY_ID, ZlibCodec.codec_id)
    with pytest.raises(UnsupportedFormatError, match="codec id 222"):
        load_mask(tmp_path / "m.msk")


# -- a format version --------------------------------------------------------------------------
TOY_LAYOUT = Layout(
    3,
    0,
    "9.9",
    "zstd",
    supports_attrs=False,
    centroids=False,
    index_stats=False,
    cropped_blobs=False,
    checksums=False,
    in_place_edits=False,
    writable=False,
)


def toy_bytes(items: dict[str, SegmentationMask]) -> bytes:
    """A toy version-3 archive: ``MSKA 3 0``, a JSON header line, then version-1 blobs."""
    zstd = get_codec("zstd")
    blobs = [zstd.encode(m.data) for m in items.values()]
    head = {
        "space": json.loads(space_to_disk_json(SPACE)),
        "masks": [[n, m.mapping.to_dict(), len(b)] for (n, m), b in zip(items.items(), blobs)],
    }
    return b"MSKA\x03\x00" + json.dumps(head).encode() + b"\n" + b"".join(blobs)


class ToyArchive(ArchiveBackend):
    """A read-only backend of the toy layout, written in the test."""

    version = 3
    default_codec = "zstd"
    minor = 0

    def __init__(self, source, space, entries) -> None:
        self.source, self.path, self._space, self._entries = source, source.name, space, entries

    @classmethod
    def open(cls, source, *, fd=None):
        raw = source.read(0, source.size())
        head, _, _ = raw[6:].partition(b"\n")
        meta = json.loads(head)
        space = space_from_disk_json(json.dumps(meta["space"]).encode(), path=source.name)
        offset, entries = 6 + len(head) + 1, []
        zstd, box = get_codec("zstd"), full_bbox(SHAPE)
        for name, mapping, length in meta["masks"]:
            entries.append(Entry(name, mapping, offset, length, zstd, bbox=box))
            offset += length
        return cls(source, space, entries)

    @property
    def space(self):
        return self._space

    @property
    def entries(self):
        return self._entries

    @property
    def names(self):
        return [e.name for e in self._entries]

    def read_box(self, entry, out=None):
        blob = self.source.read(entry.offset, entry.length, mask=entry.name)
        array = decode_blob(entry.codec, blob, BlobSpec(shape=SHAPE), path=self.path, mask=None)
        if out is not None:
            out[...] = array
            return out
        return array

    def read_full(self, entry):
        return self.read_box(entry)

    @classmethod
    def create(cls, path, *, space, minor):
        raise io.UnsupportedOperation("the toy layout is read-only")

    create_missing = create

    def _read_only(self, *args, **kwargs):
        raise io.UnsupportedOperation("the toy layout is read-only")

    set_space = stage = stage_delete = stage_replace = stage_attrs = _read_only
    commit = rollback = publish = _read_only


@pytest.fixture
def toy_version(monkeypatch):
    """Version 3 registered for one test: the two tables of medmask.format are restored
    afterwards."""
    monkeypatch.setattr(versions_module, "_VERSIONS", dict(versions_module._VERSIONS))
    monkeypatch.setattr(LAYOUTS, "_rows", dict(LAYOUTS._rows))
    register_version(FormatVersion(major=3, archive=ToyArchive))
    register_layout(TOY_LAYOUT)
    yield
    assert layouts_module.LAYOUTS is LAYOUTS


def test_a_new_version_is_refused_until_registered(tmp_path):
    (tmp_path / "t.mska").write_bytes(toy_bytes(masks()))
    with pytest.raises(UnsupportedFormatError, match=r"version 3\.0 is not supported"):
        MaskArchive(tmp_path / "t.mska")
    assert 3 not in supported_versions()


def test_a_registered_version_is_sniffed_and_opened_through_the_tables(tmp_path, toy_version):
    path = tmp_path / "t.mska"
    path.write_bytes(toy_bytes(masks()))
    assert supported_versions() == (1, 2, 3)
    with open_source(path) as src:
        assert sniff(src) == ("mska", 3)
        assert isinstance(open_archive(src), ToyArchive)
    with MaskArchive(path) as ar:
        assert ar.version == 3 and ar.layout is TOY_LAYOUT and ar.layout.name == "3.0"
        assert ar.all_names() == list(masks())
        assert all(ar[n] == m for n, m in masks().items())
        with pytest.raises(io.UnsupportedOperation):
            ar.add("more", masks()["organ"])
    info = file_info(path)
    assert (info["version"], info["masks"], info["codec"]) == (3, 3, "zstd")
    assert info["empty_masks"] is None  # the layout has no index_stats: not claimed
    assert verify_file(path)["checksums"] is False  # the layout carries none
    df = medmask.stats(path)
    assert set(df["format"]) == {"3.0"} and set(df["source"]) == {"decoded"}
    assert dict(zip(df["name"], df["voxels"])) == {
        n: int(np.count_nonzero(m.data)) for n, m in masks().items()
    }


def test_a_read_only_layout_is_no_compat_choice(toy_version):
    assert LAYOUTS.of(3, 0) is TOY_LAYOUT
    assert TOY_LAYOUT.release not in medmask.format.compat_choices()
    assert LAYOUTS.current.version == (2, 3)
    assert [lay.name for lay in LAYOUTS.where(checksums=False)] == ["1", "3.0"]
