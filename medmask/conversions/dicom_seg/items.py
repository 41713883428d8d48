"""The items of a DICOM sequence read straight from its bytes (the SegmentSequence of a SEG).

A TotalSegmentator SEG describes ~100 segments, each with nested code sequences; pydicom
builds a dataset per item and converts every element on first access, ~0.4 ms a segment,
all of it holding the GIL while the case's other threads wait to compress. The sequence is
still raw bytes in the dataset pydicom returns, and its grammar is small (little-endian
elements, items of defined or undefined length), so it is walked here once and values are
decoded on request.

:func:`sequence_items` returns ``None`` whenever the shortcut does not apply (big-endian or
deflated transfer syntax, a character set other than the default, Latin-1 or UTF-8, an
element pydicom has already converted, bytes that do not parse): callers then use pydicom,
which stays the reference (the tests compare both on every SEG they read).
"""

from __future__ import annotations

import functools
import struct
from typing import Any

from .base import _pydicom

__all__ = ["RawItem", "sequence_items", "segment_items", "SEGMENT_SEQUENCE"]

#: (0062,0002) SegmentSequence.
SEGMENT_SEQUENCE = 0x00620002

_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
#: Explicit VRs whose length is 4 bytes (after 2 reserved ones).
_LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
#: Text VRs that hold several values separated by backslashes (LT, ST, UT, UR hold one).
_TEXT_VRS = frozenset(("AE", "AS", "CS", "DA", "DT", "LO", "PN", "SH", "TM", "UC", "UI"))
_ONE_TEXT_VRS = frozenset(("LT", "ST", "UT", "UR"))
#: Binary number VRs -> their little-endian struct code.
_STRUCT = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
#: SpecificCharacterSet -> Python codec (others: pydicom decodes).
_CHARSETS = {"": "latin_1", "ISO_IR 6": "latin_1", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}
#: The transfer syntaxes told apart: implicit VR little endian (any other little-endian,
#: non-deflated syntax is read as explicit VR), big endian and the deflated ones (pydicom's).
_IMPLICIT = "1.2.840.10008.1.2"
_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")
#: Nesting deeper than this is not a SEG's segment description (a hostile file).
MAX_DEPTH = 16


class _Unparsable(Exception):
    """The bytes are not what the shortcut reads (pydicom will say what is wrong)."""


@functools.lru_cache(maxsize=512)
def _tag(keyword: str) -> int | None:
    return _pydicom().datadict.tag_for_keyword(keyword)


@functools.lru_cache(maxsize=512)
def _dictionary_vr(tag: int) -> str:
    try:
        return str(_pydicom().datadict.dictionary_VR(tag))
    except KeyError:  # private or unknown: bytes, as pydicom gives them
        return "UN"


class RawItem:
    """One item of a sequence: its elements by tag, each value decoded when asked for.

    The part of pydicom's ``Dataset`` reading code uses: :meth:`get` by keyword and ``in``.
    Values come back as pydicom gives them for the VRs a SEG's segment description uses:
    text stripped of its padding (a list when it holds several values), numbers as ``int``
    or ``float`` (a list for several), sequences as lists of :class:`RawItem`, other VRs as
    bytes.
    """

    __slots__ = ("_elements", "_encoding")

    def __init__(self, elements: dict[int, tuple[str | None, Any]], encoding: str) -> None:
        self._elements = elements
        self._encoding = encoding

    def __contains__(self, keyword: object) -> bool:
        return isinstance(keyword, str) and _tag(keyword) in self._elements

    def __repr__(self) -> str:
        return f"RawItem({len(self._elements)} elements)"

    def get(self, keyword: str, default: Any = None) -> Any:
        """The value of the element ``keyword`` (a DICOM keyword), or ``default``."""
        element = self._elements.get(_tag(keyword))  # type: ignore[arg-type]
        if element is None:
            return default
        vr, value = element
        if isinstance(value, list):
            return value
        return _decode(vr or _dictionary_vr(_tag(keyword)), value, self._encoding)  # type: ignore[arg-type]


def _decode(vr: str, raw: bytes, encoding: str) -> Any:
    if vr in _TEXT_VRS or vr in _ONE_TEXT_VRS:
        text = raw.decode(encoding, errors="replace").rstrip(" \x00")
        if vr in _TEXT_VRS and "\\" in text:
            return [part.strip(" \x00") for part in text.split("\\")]
        return text.lstrip(" ") if vr in ("CS", "AE") else text
    if vr in ("DS", "IS"):
        parts = [p.strip(" \x00") for p in raw.decode("latin_1").split("\\")]
        conv = float if vr == "DS" else int
        values = [conv(p) for p in parts if p]
        return values[0] if len(values) == 1 else values if values else ""
    code = _STRUCT.get(vr)
    if code is not None:
        size = struct.calcsize(code)
        n = len(raw) // size
        if n == 0:
            return None
        values = list(struct.unpack(f"<{n}{code}", raw[: n * size]))
        return values[0] if n == 1 else values
    return bytes(raw)


def _items(
    buf: bytes, pos: int, end: int | None, implicit: bool, enc: str, depth: int
) -> tuple[list[RawItem], int]:
    """The items of a sequence value from ``pos`` (to ``end``, or to its delimiter)."""
    if depth > MAX_DEPTH:
        raise _Unparsable("nested too deep")
    items: list[RawItem] = []
    while end is None or pos < end:
        if pos + 8 > len(buf):
            raise _Unparsable("the sequence ends early")
        group, elem, length = struct.unpack_from("<HHI", buf, pos)
        tag = group << 16 | elem
        pos += 8
        if tag == _SEQUENCE_END:
            if end is not None:
                raise _Unparsable("a delimiter in a sequence of defined length")
            return items, pos
        if tag != _ITEM:
            raise _Unparsable(f"({group:04X},{elem:04X}) where an item should be")
        if length == _UNDEFINED:
            item, pos = _dataset(buf, pos, None, implicit, enc, depth + 1)
        else:
            if pos + length > len(buf):
                raise _Unparsable("an item beyond the end")
            item, _ = _dataset(buf, pos, pos + length, implicit, enc, depth + 1)
            pos += length
        items.append(item)
    if pos != end:
        raise _Unparsable("an item beyond its sequence")
    return items, pos


def _dataset(
    buf: bytes, pos: int, end: int | None, implicit: bool, enc: str, depth: int
) -> tuple[RawItem, int]:
    """The elements of one item from ``pos`` (to ``end``, or to its delimiter)."""
    elements: dict[int, tuple[str | None, Any]] = {}
    while end is None or pos < end:
        if pos + 8 > len(buf):
            raise _Unparsable("the item ends early")
        group, elem = struct.unpack_from("<HH", buf, pos)
        tag = group << 16 | elem
        if tag == _ITEM_END:
            if end is not None:
                raise _Unparsable("a delimiter in an item of defined length")
            return RawItem(elements, enc), pos + 8
        if tag == 0x00080005:  # an item's own character set: pydicom handles that
            raise _Unparsable("SpecificCharacterSet inside an item")
        vr: str | None
        if implicit:
            (length,) = struct.unpack_from("<I", buf, pos + 4)
            vr, pos = None, pos + 8
        else:
            code = buf[pos + 4 : pos + 6]
            if code in _LONG_VRS:
                if pos + 12 > len(buf):
                    raise _Unparsable("the item ends early")
                (length,) = struct.unpack_from("<I", buf, pos + 8)
                pos += 12
            else:
                (length,) = struct.unpack_from("<H", buf, pos + 6)
                pos += 8
            try:
                vr = code.decode("ascii")
            except UnicodeDecodeError:
                raise _Unparsable("not a VR") from None
        if vr == "UN" and length != _UNDEFINED and _dictionary_vr(tag) != "UN":
            # a known element written as UN: pydicom re-reads it with its dictionary's VR
            raise _Unparsable(f"({group:04X},{elem:04X}) stored as UN")
        is_sequence = vr == "SQ" or (vr is None and _dictionary_vr(tag) == "SQ")
        if length == _UNDEFINED:
            if not (is_sequence or vr in (None, "UN")):
                raise _Unparsable(f"({group:04X},{elem:04X}) {vr} of undefined length")
            # an undefined-length UN is a sequence in implicit VR (PS3.5 6.2.2)
            value, pos = _items(buf, pos, None, implicit or vr == "UN", enc, depth)
            elements[tag] = ("SQ", value)
            continue
        if pos + length > len(buf):
            raise _Unparsable("a value beyond the end")
        if is_sequence:
            value, _ = _items(buf, pos, pos + length, implicit, enc, depth)
            elements[tag] = ("SQ", value)
        else:
            elements[tag] = (vr, buf[pos : pos + length])
        pos += length
    if end is not None and pos != end:
        raise _Unparsable("an element beyond its item")
    if end is None:
        raise _Unparsable("an item without its delimiter")
    return RawItem(elements, enc), pos


def sequence_items(ds: Any, tag: int) -> list[RawItem] | None:
    """The items of the sequence ``tag`` of a pydicom dataset, read from its raw bytes.

    Args:
        ds: A dataset read by pydicom (``dcmread``/``read_partial``), the sequence not
            accessed yet.
        tag: The sequence's tag (e.g. :data:`SEGMENT_SEQUENCE`).

    Returns:
        The items (``[]`` when the dataset does not hold the sequence), or ``None`` when
        the shortcut does not apply and pydicom should read it.
    """
    try:
        element = ds.get_item(tag)
    except (KeyError, AttributeError):
        return None
    if element is None:
        return []
    raw = getattr(element, "value", None)
    if not isinstance(raw, bytes) or getattr(element, "VR", "SQ") not in ("SQ", None, "UN"):
        return None  # converted already, or not a sequence
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not syntax or syntax == _BIG_ENDIAN or syntax in _DEFLATED:
        return None  # no file meta to tell the encoding, or not little-endian as stored
    implicit = syntax == _IMPLICIT
    charset = ds.get_item(0x00080005)
    name = ""
    if charset is not None:
        value = charset.value
        if isinstance(value, bytes):
            value = value.decode("latin_1")
        if not isinstance(value, str):
            return None  # several character sets (code extensions): pydicom's
        name = value.strip(" \x00")
    encoding = _CHARSETS.get(name)
    if encoding is None:
        return None
    try:
        items, _ = _items(raw, 0, len(raw), implicit, encoding, 0)
    except (_Unparsable, struct.error):
        return None
    return items


def segment_items(ds: Any) -> list:
    """The SegmentSequence items of a SEG dataset: :class:`RawItem` when the shortcut
    applies (:func:`sequence_items`), else pydicom's datasets (``[]`` without one)."""
    items = sequence_items(ds, SEGMENT_SEQUENCE)
    if items is not None:
        return items
    return list(ds.get("SegmentSequence", []) or [])
