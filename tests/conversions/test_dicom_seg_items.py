"""The SegmentSequence read straight from its bytes (``dicom_seg.items``) against pydicom.

pydicom stays the reference: on every SEG here (highdicom's, medmask's, the interchange
sample, implicit VR, UTF-8 text, a LABELMAP SEG) the shortcut must give what pydicom gives
for every attribute medmask keeps; where it does not apply (another character set, a
converted element, damaged or hostile bytes) it must step aside (``None``), never guess.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("highdicom")

from interop_support import highdicom_seg, oblique_space, write_ct_series  # noqa: E402

from medmask import MaskArchive  # noqa: E402
from medmask.conversions import from_archive, to_archive  # noqa: E402
from medmask.conversions.dicom_seg import read_dicom_seg  # noqa: E402
from medmask.conversions.dicom_seg.header import seg_identifiers  # noqa: E402
from medmask.conversions.dicom_seg.items import (  # noqa: E402
    SEGMENT_SEQUENCE,
    RawItem,
    segment_items,
    sequence_items,
)
from medmask.conversions.dicom_seg.read import _segment_attrs  # noqa: E402

SEG_FILE = "seg_image_ct_binary.dcm"


def _read(path: Path):
    return pydicom.dcmread(path, stop_before_pixels=True)


def _same_as_pydicom(path: Path) -> list[RawItem]:
    """The shortcut applies to ``path`` and agrees with pydicom on everything medmask
    reads from the segments; the items."""
    items = sequence_items(_read(path), SEGMENT_SEQUENCE)
    assert items is not None, f"{path}: the shortcut did not apply"
    reference = list(_read(path).SegmentSequence)
    assert len(items) == len(reference)
    for raw, ref in zip(items, reference, strict=True):
        assert _segment_attrs(raw) == _segment_attrs(ref)
        assert raw.get("SegmentLabel") == ref.get("SegmentLabel")
        assert raw.get("SegmentNumber") == ref.get("SegmentNumber")
        assert ("SegmentDescription" in raw) == ("SegmentDescription" in ref)
    assert seg_identifiers(_read(path)) == _identifiers_by_pydicom(path)
    return items


def _identifiers_by_pydicom(path: Path) -> dict:
    ds = _read(path)
    assert len(ds.SegmentSequence)  # converted now: the shortcut steps aside, pydicom reads
    assert sequence_items(ds, SEGMENT_SEQUENCE) is None
    return seg_identifiers(ds)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct")
    space = oblique_space(shape_zyx=(6, 10, 12))
    write_ct_series(folder, space)
    return folder, space


def _masks(shape, n=4, seed=3):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = np.zeros(shape, bool)
        z, y, x = (int(rng.integers(0, s // 2)) for s in shape)
        m[z : z + 3, y : y + 4, x : x + 5] = True
        out.append(m)
    return out


def test_highdicom_binary_and_labelmap(tmp_path, series):
    folder, space = series
    masks = _masks(space.shape)
    names = ["liver", "spleen", "kidney_left", "aorta"]
    binary = highdicom_seg(folder, masks, names, tmp_path / "binary.dcm")
    items = _same_as_pydicom(binary)
    assert [i.get("SegmentLabel") for i in items] == names
    exclusive = [m & ~np.any(masks[:k], axis=0) if k else m for k, m in enumerate(masks)]
    labelmap = highdicom_seg(folder, exclusive, names, tmp_path / "lm.dcm", seg_type="LABELMAP")
    _same_as_pydicom(labelmap)


def test_medmask_written_seg_with_algorithm_and_colours(tmp_path, series):
    folder, space = series
    arch = tmp_path / "case.mska"
    with MaskArchive(arch, "w", space=space) as ar:
        for k, m in enumerate(_masks(space.shape)):
            ar.add(f"organ_{k}", m, attrs={"color": [10 * k, 200, 30]})
    out = from_archive(arch, tmp_path / "case.dcm", source=folder).output
    items = _same_as_pydicom(Path(out))
    assert all(isinstance(i.get("RecommendedDisplayCIELabValue"), list) for i in items)


def test_implicit_vr_and_utf8_text(tmp_path, series):
    folder, space = series
    seg = highdicom_seg(folder, _masks(space.shape, 2), ["a", "b"], tmp_path / "s.dcm")
    ds = pydicom.dcmread(seg)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SegmentSequence[0].SegmentLabel = "Leber (ÄÖÜ) 肝臓"
    ds.SegmentSequence[1].SegmentDescription = "Milz – rechts"
    utf8 = tmp_path / "utf8.dcm"
    ds.save_as(utf8)
    items = _same_as_pydicom(utf8)
    assert items[0].get("SegmentLabel") == "Leber (ÄÖÜ) 肝臓"
    implicit = tmp_path / "implicit.dcm"
    ds = pydicom.dcmread(utf8)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.save_as(implicit, implicit_vr=True, little_endian=True)
    items = _same_as_pydicom(implicit)
    assert items[1].get("SegmentDescription") == "Milz – rechts"
    # and the whole read agrees: the archive's names and attributes
    a = to_archive(utf8, tmp_path / "u.mska").output
    b = to_archive(implicit, tmp_path / "i.mska").output
    with MaskArchive(a) as x, MaskArchive(b) as y:
        assert x.all_names() == y.all_names()
        assert [x.info(n).attrs for n in x.all_names()] == [y.info(n).attrs for n in y.all_names()]


def test_other_character_sets_are_left_to_pydicom(tmp_path, series):
    folder, space = series
    seg = highdicom_seg(folder, _masks(space.shape, 2), ["a", "b"], tmp_path / "s.dcm")
    ds = pydicom.dcmread(seg)
    ds.SpecificCharacterSet = "ISO_IR 144"  # Cyrillic
    ds.SegmentSequence[0].SegmentLabel = "Печень"
    cyr = tmp_path / "cyrillic.dcm"
    ds.save_as(cyr)
    assert sequence_items(_read(cyr), SEGMENT_SEQUENCE) is None
    items = segment_items(_read(cyr))
    assert items[0].get("SegmentLabel") == "Печень"  # pydicom's datasets
    with read_dicom_seg(cyr) as s:
        assert s.names == ["Печень", "b"]


@pytest.mark.realdata
def test_interchange_sample(interchange):
    _same_as_pydicom(interchange / SEG_FILE)


# -- damaged and hostile bytes: the shortcut steps aside ------------------------------------
class _Raw:
    """A stand-in element holding raw bytes, as pydicom's RawDataElement does."""

    def __init__(self, value: bytes, vr: str = "SQ") -> None:
        self.value, self.VR = value, vr


class _Dataset:
    """The two things :func:`sequence_items` asks of a dataset."""

    def __init__(self, raw: bytes, syntax: str = "1.2.840.10008.1.2.1") -> None:
        self._raw = raw
        self.file_meta = {"TransferSyntaxUID": syntax}

    def get_item(self, tag: int):
        return _Raw(self._raw) if tag == SEGMENT_SEQUENCE else None


def _item(body: bytes, defined: bool = True) -> bytes:
    if defined:
        return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body
    return (
        struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
        + body
        + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    )


def _us(group: int, elem: int, value: int) -> bytes:
    return struct.pack("<HH2sH", group, elem, b"US", 2) + struct.pack("<H", value)


def _text(group: int, elem: int, vr: bytes, text: bytes) -> bytes:
    if len(text) % 2:
        text += b" "
    return struct.pack("<HH2sH", group, elem, vr, len(text)) + text


def test_explicit_items_of_both_lengths_decode():
    one = _us(0x0062, 0x0004, 1) + _text(0x0062, 0x0005, b"LO", b"liver")
    two = (
        _us(0x0062, 0x0004, 2)
        + _text(0x0008, 0x0104, b"LO", b"x")
        + _text(0x0062, 0x0008, b"CS", b"AUTOMATIC\\MANUAL")
    )
    items = sequence_items(_Dataset(_item(one) + _item(two, defined=False)), SEGMENT_SEQUENCE)
    assert items is not None and len(items) == 2
    assert items[0].get("SegmentNumber") == 1 and items[0].get("SegmentLabel") == "liver"
    assert items[1].get("SegmentAlgorithmType") == ["AUTOMATIC", "MANUAL"]
    assert "SegmentLabel" not in items[1] and items[1].get("SegmentLabel", "-") == "-"


@pytest.mark.parametrize(
    "raw",
    [
        _item(_us(0x0062, 0x0004, 1))[:-1],  # truncated value
        struct.pack("<HHI", 0xFFFE, 0xE000, 400) + _us(0x0062, 0x0004, 1),  # item past the end
        _item(_us(0x0062, 0x0004, 1), defined=False)[:-8],  # no item delimiter
        struct.pack("<HHI", 0x0062, 0x0004, 2) + b"\x01\x00",  # an element where an item is
        _item(struct.pack("<HH2sH", 0x0062, 0x0005, b"LO", 60000) + b"abc"),  # length lies
        _item(b"\x62\x00\x05\x00\xff\xfe\x02\x00ab"),  # not a VR
        _item(struct.pack("<HH2sHI", 0x0062, 0x0005, b"UN", 0, 6) + b"liver "),  # known, as UN
    ],
    ids=[
        "truncated",
        "item-past-end",
        "no-delimiter",
        "not-an-item",
        "length-lies",
        "bad-vr",
        "known-as-un",
    ],
)
def test_damaged_bytes_step_aside(raw):
    assert sequence_items(_Dataset(raw), SEGMENT_SEQUENCE) is None


def test_hostile_nesting_steps_aside():
    body = b""
    for _ in range(200):  # sequences in items in sequences...
        body = _item(
            struct.pack("<HH2sHI", 0x0008, 0x2218, b"SQ", 0, 0xFFFFFFFF)
            + body
            + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0),
            defined=False,
        )
    assert sequence_items(_Dataset(body), SEGMENT_SEQUENCE) is None


def test_big_endian_and_unknown_syntax_step_aside():
    raw = _item(_us(0x0062, 0x0004, 1))
    assert sequence_items(_Dataset(raw, "1.2.840.10008.1.2.2"), SEGMENT_SEQUENCE) is None
    assert sequence_items(_Dataset(raw, ""), SEGMENT_SEQUENCE) is None
    assert sequence_items(_Dataset(raw), SEGMENT_SEQUENCE)[0].get("SegmentNumber") == 1
