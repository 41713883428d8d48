"""The frames of a SEG as bytes: the Per-Frame Functional Groups and the Pixel Data.

A SEG of a real case has a thousand frames or more, each with the same few nested sequences;
building them as pydicom datasets and letting pydicom encode them costs seconds (about ten
thousand small datasets). The parts that repeat are encoded once here (per slice: its
derivation from the source image and its plane position; per segment: its identification)
and joined per frame, in DICOM's explicit VR little endian encoding (PS3.5 7.1.2: tag,
VR, length, value; sequences and items of defined length, PS3.5 7.5). The result is one
``RawDataElement`` that pydicom writes as it is and reads back like any other.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["element", "sequence", "code", "FrameItems", "pack_binary_frames"]

#: Value representations whose length field has 4 bytes (after 2 reserved ones), PS3.5 7.1.2.
_LONG = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)


def element(tag: int, vr: str, value: bytes | str) -> bytes:
    """One data element, explicit VR little endian (padded to even length: UI with NUL,
    text with a space, bytes with NUL)."""
    raw = value.encode("ascii") if isinstance(value, str) else value
    if len(raw) % 2:
        raw += b" " if isinstance(value, str) and vr != "UI" else b"\x00"
    v = vr.encode("ascii")
    if v in _LONG:
        return struct.pack("<HH2sHI", tag >> 16, tag & 0xFFFF, v, 0, len(raw)) + raw
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, v, len(raw)) + raw


def sequence(tag: int, items: Iterable[bytes]) -> bytes:
    """A sequence of defined length whose items (each the bytes of its elements, in tag
    order) have defined lengths."""
    body = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, len(it)) + it for it in items)
    return element(tag, "SQ", body)


def code(value: str, scheme: str, meaning: str) -> bytes:
    """A code sequence item: CodeValue, CodingSchemeDesignator, CodeMeaning."""
    return (
        element(0x00080100, "SH", value)
        + element(0x00080102, "SH", scheme)
        + element(0x00080104, "LO", meaning)
    )


class FrameItems:
    """The Per-Frame Functional Groups Sequence of a SEG, built frame by frame.

    Args:
        sources: ``(SOPClassUID, SOPInstanceUID, ImagePositionPatient text)`` of the
            source image of each slice, by slice index (``None`` for a slice without one).
        labelmap: A LABELMAP SEG (no Segment Identification; one dimension: the position).
    """

    def __init__(
        self, sources: Sequence[tuple[str, str, str] | None], labelmap: bool = False
    ) -> None:
        self.labelmap = labelmap
        self._slice: list[tuple[bytes, bytes] | None] = []
        for src in sources:
            if src is None:
                self._slice.append(None)
                continue
            sop_class, sop_uid, position = src
            source = (
                element(0x00081150, "UI", sop_class)
                + element(0x00081155, "UI", sop_uid)
                + element(0x0028135A, "CS", "YES")
                + sequence(
                    0x0040A170,
                    [code("121322", "DCM", "Source image for image processing operation")],
                )
            )
            derivation = sequence(
                0x00089124,
                [
                    sequence(0x00082112, [source])
                    + sequence(0x00089215, [code("113076", "DCM", "Segmentation")])
                ],
            )
            plane = sequence(0x00209113, [element(0x00200032, "DS", position)])
            self._slice.append((derivation, plane))
        self._items: list[bytes] = []

    def add(self, z: int, segment: int | None = None) -> None:
        """The next frame: slice ``z`` (index on the grid), and its segment (BINARY)."""
        parts = self._slice[z]
        if parts is None:
            raise IndexError(f"slice {z} has no source image")
        derivation, plane = parts
        index = (z + 1,) if self.labelmap else (int(segment), z + 1)
        content = sequence(
            0x00209111,
            [element(0x00209157, "UL", struct.pack(f"<{len(index)}I", *index))],
        )
        item = derivation + content + plane
        if not self.labelmap:
            item += sequence(0x0062000A, [element(0x0062000B, "US", struct.pack("<H", segment))])
        self._items.append(item)

    def __len__(self) -> int:
        return len(self._items)

    def value(self) -> bytes:
        """The sequence's value: the frames' items, in the order added."""
        return b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, len(it)) + it for it in self._items)


def pack_binary_frames(frames: Sequence[np.ndarray]) -> bytes:
    """BINARY frames as Pixel Data: one bit per pixel, least significant bit first, the
    frames one after another with no padding between them (PS3.5 8.1.1), padded to an even
    length.

    Args:
        frames: ``(rows, columns)`` boolean arrays.

    Returns:
        The bytes of the Pixel Data element's value.
    """
    if not frames:
        return b""
    bits = np.packbits(np.stack(frames).reshape(-1), bitorder="little").tobytes()
    return bits + (b"\x00" if len(bits) % 2 else b"")
