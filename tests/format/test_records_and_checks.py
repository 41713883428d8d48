"""medmask.format.records (named fixed-size records with a CRC trailer), medmask.format.checks
(the named checks of a file's contents) and medmask.format.layouts (the compatibility
table), tested directly."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from medmask.codecs import get_codec
from medmask.errors import (
    CorruptFileError,
    ForeignFileError,
    MaskValidationError,
    UnsupportedFormatError,
)
from medmask.format import LAYOUTS, compat_choices, read_signature
from medmask.format import checks as C
from medmask.format.records import Record

SLOTLIKE = Record("test slot", [("generation", "Q"), ("", "3x"), ("flag", "B"), ("crc", "I")])
PLAIN = Record("plain header", [("magic", "4s"), ("major", "B"), ("", "7x")])


# -- records ---------------------------------------------------------------------------------
def test_a_record_packs_and_unpacks_by_name():
    raw = SLOTLIKE.pack_named(generation=7, flag=1)
    assert SLOTLIKE.size == len(raw) == struct.calcsize("<Q3xBI") == 16
    assert SLOTLIKE.names == ("generation", "flag", "crc")  # padding has no name
    v = SLOTLIKE.unpack_named(raw)
    assert (v.generation, v.flag) == (7, 1)
    assert v.crc == zlib.crc32(raw[:-4]) & 0xFFFFFFFF  # the trailer covers every byte before it
    assert raw[8:11] == b"\0\0\0"
    assert SLOTLIKE.unpack_checked(b"xx" + raw, 2, path="f", field="slot").generation == 7
    assert PLAIN.unpack_named(PLAIN.pack_named(magic=b"MSKA", major=2)).major == 2
    assert not PLAIN.has_crc and PLAIN.crc_ok(b"\xff" * PLAIN.size)


def test_a_damaged_record_is_refused_with_its_name_and_field():
    raw = bytearray(SLOTLIKE.pack_named(generation=7, flag=1))
    for k in range(SLOTLIKE.size):  # any byte, trailer included
        bad = bytearray(raw)
        bad[k] ^= 0x01
        assert not SLOTLIKE.crc_ok(bad)
        with pytest.raises(CorruptFileError, match="test slot checksum mismatch") as err:
            SLOTLIKE.unpack_checked(bytes(bad), path="a.mska", field="commit slot")
        assert (err.value.path, err.value.field) == ("a.mska", "commit slot")


def test_a_record_is_written_by_name_only():
    with pytest.raises(TypeError, match=r"missing fields \['flag'\]"):
        SLOTLIKE.pack_named(generation=1)
    with pytest.raises(TypeError, match=r"unknown fields \['crc'\]"):
        SLOTLIKE.pack_named(generation=1, flag=0, crc=5)  # the CRC is computed, never given
    assert not hasattr(SLOTLIKE, "pack") and not hasattr(SLOTLIKE, "unpack_from")
    assert "test slot" in repr(SLOTLIKE)


# -- checks ----------------------------------------------------------------------------------
def raises(match: str, field: str | None = None, mask: str | None = None):
    """A context expecting a CorruptFileError with this message, field and mask."""

    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(CorruptFileError, match=match)
            self.info = self.ctx.__enter__()
            return self

        def __exit__(self, *exc):
            done = self.ctx.__exit__(*exc)
            err = self.info.value
            assert err.path == "f.mska"
            if field is not None:
                assert err.field == field
            if mask is not None:
                assert err.mask == mask
            return done

    return _Check()


def test_is_uint():
    assert C.is_uint(0) and C.is_uint(2**64 - 1) and C.is_uint(255, 8)
    assert not C.is_uint(-1) and not C.is_uint(2**64) and not C.is_uint(256, 8)
    assert not C.is_uint(True) and not C.is_uint(1.0) and not C.is_uint("1")
    assert not C.is_uint(np.uint32(5))  # stored values come from JSON: Python ints only


def test_names():
    assert C.check_name("liver", 0, path="f.mska") == "liver"
    for bad in ("", None, 3, ["a"]):
        with raises("index entry 4 has an invalid name", field="index"):
            C.check_name(bad, 4, path="f.mska")
    with raises("index row 2 has an invalid name", field="meta"):
        C.check_name("", 2, path="f.mska", field="meta", row="index row")
    C.check_unique_names(["a", "b"], path="f.mska")
    with raises("duplicate name 'b'", field="index", mask="b"):
        C.check_unique_names(["a", "b", "c", "b"], path="f.mska")


def test_unsigned_fields_and_blob_ranges():
    assert C.check_uint(5, "offset", path="f.mska", mask="m", field="index") == 5
    with raises("invalid offset -1", field="index", mask="m"):
        C.check_uint(-1, "offset", path="f.mska", mask="m", field="index")
    with raises("invalid crc 4294967296", field="index.crc"):
        C.check_uint(2**32, "crc", bits=32, path="f.mska", mask="m", field="index.crc")
    C.check_blob_range(10, 5, 0, 15, path="f.mska", mask="m", field="index")
    with raises(r"blob \[10, 16\) lies past the end of the file \(15 bytes\)", field="index"):
        C.check_blob_range(10, 6, 0, 15, path="f.mska", mask="m", field="index")
    with raises(r"outside the data region \[144, 200\)", field="index.offset", mask="m"):
        C.check_blob_range(100, 6, 144, 200, path="f.mska", mask="m", field="index.offset")


def test_bounding_boxes_and_voxels():
    shape = (4, 5, 6)
    assert C.check_bbox([0, 4, 1, 2, 5, 6], shape, path="f.mska", mask="m") == (0, 4, 1, 2, 5, 6)
    for bad in ([0, 4, 1, 2, 5], (0, 4, 1, 2, 5, 6), [0, 4, 1, 2, 5, -6], [0, 4, 1, 2.0, 5, 6]):
        with raises("is not six non-negative integers", field="index.bbox", mask="m"):
            C.check_bbox(bad, shape, path="f.mska", mask="m")
    for bad in ([0, 5, 0, 1, 0, 1], [2, 2, 0, 1, 0, 1], [0, 1, 0, 1, 3, 7]):
        with raises("lies outside the volume", field="index.bbox", mask="m"):
            C.check_bbox(bad, shape, path="f.mska", mask="m")
    C.check_voxels(8, (0, 2, 0, 2, 0, 2), path="f.mska", mask="m")
    with raises("9 voxels do not fit the bbox", field="index.voxels", mask="m"):
        C.check_voxels(9, (0, 2, 0, 2, 0, 2), path="f.mska", mask="m")


def test_a_blob_must_be_able_to_hold_its_box():
    codec = get_codec("bitzstd")
    box = (0, 2048, 0, 2048, 0, 2048)
    C.check_blob_holds(codec, np.dtype(bool), (0, 8, 0, 8, 0, 8), 21, path="f.mska", mask="m")
    with raises("cannot hold the", field="index.length", mask="m"):
        C.check_blob_holds(codec, np.dtype(np.uint8), box, 21, path="f.mska", mask="m")


def test_counts():
    C.check_count(3, 3, path="f.mska", what="header", field="mask_count")
    with raises("header says 3 masks but the index lists 2", field="mask_count"):
        C.check_count(3, 2, path="f.mska", what="header", field="mask_count")


# -- the compatibility table and the sniff -----------------------------------------------------
def test_the_table_answers_by_any_key_and_by_capability():
    assert [lay.name for lay in LAYOUTS] == ["1", "2.0", "2.1", "2.2", "2.3"]
    assert compat_choices() == ["0.4", "0.3", "0.2", "0.1"]
    assert LAYOUTS.for_compat(None) is LAYOUTS.current is LAYOUTS.of(2, 3)
    assert LAYOUTS.for_compat("0.1").codec == "zstd" and LAYOUTS.for_compat("0.2").minor == 0
    assert LAYOUTS.named("2.1") is LAYOUTS.of(2, 1) is LAYOUTS.for_compat("0.3")
    assert LAYOUTS.of(2, 9) is LAYOUTS.of(2, 3)  # a newer minor reads as the newest known
    assert [lay.name for lay in LAYOUTS.where(supports_attrs=True)] == ["2.1", "2.2", "2.3"]
    assert [lay.name for lay in LAYOUTS.where(archive_attrs=True)] == ["2.3"]
    assert [lay.name for lay in LAYOUTS.where(checksums=False)] == ["1"]
    assert LAYOUTS.where(cropped_blobs=True, centroids=False) == [LAYOUTS.of(2, 0)]
    with pytest.raises(TypeError, match="unknown capabilities"):
        LAYOUTS.where(fast=True)
    with pytest.raises(MaskValidationError, match=r"'0\.4', '0\.3', '0\.2', '0\.1'"):
        LAYOUTS.for_compat("0.5")  # the current layout's release: compat=None
    with pytest.raises(UnsupportedFormatError, match="version 7.0"):
        LAYOUTS.of(7, 0)
    with pytest.raises(ValueError, match="already registered"):
        LAYOUTS.add(LAYOUTS.of(2, 0))


def test_the_sniff_reads_kind_and_version_from_the_first_bytes():
    assert read_signature(b"MSKA\x02\x01rest") == ("mska", 2, 1)
    assert read_signature(b"MSK1\x01\x00").layout.name == "1"
    with pytest.raises(CorruptFileError, match="too short") as err:
        read_signature(b"MSK", path="f.msk")
    assert (err.value.path, err.value.field) == ("f.msk", "header")
    with pytest.raises(CorruptFileError, match="not a medmask file") as err:
        read_signature(b"\x00\x07junk", path="f.msk")  # bytes no format knows
    assert err.value.field == "magic"
    with pytest.raises(ForeignFileError, match="this is a PNG picture, not a medmask") as err:
        read_signature(b"\x89PNG\r\n\x1a\n", path="f.msk")  # a format the table knows
    assert not isinstance(err.value, CorruptFileError) and err.value.kind == "png"
    with pytest.raises(UnsupportedFormatError, match=r"format version 9\.4 is not supported"):
        read_signature(b"MSKA\x09\x04", path="f.mska")
