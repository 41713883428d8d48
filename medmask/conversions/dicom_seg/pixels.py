"""The pixels of a DICOM SEG, read from the file as a stream: a frame range at a time.

A SEG's frames can outweigh the masks they make (a 12,000-frame SEG holds hundreds of MB
of bits). The header is read without the pixel data, the offset of the Pixel Data element
is noted, and :class:`FrameSource` reads the bytes of the frames asked for with
``os.pread`` (safe from several threads at once) and unpacks them: the frames of one
segment at a time are in memory, never all of them. Encapsulated (compressed) pixel data
is the exception: pydicom decodes it whole (:func:`decoded_frames`).
"""

from __future__ import annotations

import os
import struct
import threading
import weakref
from pathlib import Path

import numpy as np

from .base import _UNCOMPRESSED, _err

__all__ = ["FrameSource", "pixel_data_at", "decoded_frames"]

_PIXEL_TAGS = {b"\xe0\x7f\x10\x00"}  # (7FE0,0010) Pixel Data, little endian


def pixel_data_at(fh, path: object, transfer_syntax: str) -> tuple[int, int] | None:
    """Where the pixel data starts and how long it says it is, from a file positioned at
    the Pixel Data element (as pydicom leaves it after ``stop_before_pixels``).

    Args:
        fh: The open file, at the element's tag.
        path: The file, for messages.
        transfer_syntax: The file's transfer syntax UID.

    Returns:
        ``(offset of the first pixel byte, declared length)``, or ``None`` for pixel data
        that must be decoded (encapsulated, big endian, deflated).

    Raises:
        MaskValidationError: No Pixel Data element where it should be.
    """
    if transfer_syntax not in _UNCOMPRESSED or transfer_syntax == "1.2.840.10008.1.2.2":
        return None
    start = fh.tell()
    head = fh.read(12)
    if len(head) < 8 or head[:4] not in _PIXEL_TAGS:
        raise _err(
            path,
            "truncated or damaged: no Pixel Data element after the header",
            "the file holds no frames (or is cut short)",
        )
    if transfer_syntax == "1.2.840.10008.1.2":  # implicit VR: tag, 4-byte length
        (length,) = struct.unpack_from("<I", head, 4)
        offset = start + 8
    else:  # explicit VR: tag, VR, 2 reserved bytes, 4-byte length
        if len(head) < 12 or head[4:6] not in (b"OB", b"OW", b"UN"):
            raise _err(path, f"damaged Pixel Data element (VR {head[4:6]!r})")
        (length,) = struct.unpack_from("<I", head, 8)
        offset = start + 12
    if length == 0xFFFFFFFF:  # encapsulated: compressed frames
        return None
    return offset, length


class FrameSource:
    """The frames of a SEG with uncompressed pixel data, read from its file on demand.

    Args:
        path: The SEG file.
        offset: Where the first pixel byte is.
        length: Bytes of pixel data the element declares.
        rows: Rows per frame.
        cols: Columns per frame.
        nframes: Frames.
        bits: BitsAllocated (1, 8 or 16).

    Raises:
        MaskValidationError: BitsAllocated not 1, 8 or 16, or pixel data shorter than the
            frames need (the declared length, or the file cut short: *truncated*).
    """

    def __init__(
        self, path: Path, offset: int, length: int, rows: int, cols: int, nframes: int, bits: int
    ) -> None:
        if bits not in (1, 8, 16):
            raise _err(path, f"BitsAllocated {bits} is not 1, 8 or 16")
        self.path, self.offset = path, offset
        self.rows, self.cols, self.nframes, self.bits = rows, cols, nframes, bits
        self.frame_px = rows * cols
        self.dtype = np.dtype(np.uint8 if bits <= 8 else "<u2")
        need = self._byte_range(0, nframes)[1]
        size = os.path.getsize(path)
        if length < need:
            raise _err(
                path,
                f"PixelData holds {length:,} bytes, {need:,} needed for {nframes} frames",
            )
        if size < offset + need:
            raise _err(
                path,
                f"truncated or damaged: the file ends {offset + need - size:,} bytes before "
                f"the last of its {nframes} frames",
                "download or copy it again",
            )
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize | None = None

    def _byte_range(self, i0: int, i1: int) -> tuple[int, int]:
        """``(first byte, end byte)`` of frames ``i0 .. i1 - 1``, relative to the pixels."""
        if self.bits == 1:
            return (i0 * self.frame_px) // 8, (i1 * self.frame_px + 7) // 8
        n = self.frame_px * self.dtype.itemsize
        return i0 * n, i1 * n

    def _descriptor(self) -> int:
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
                self._finalizer = weakref.finalize(self, os.close, self._fd)
            return self._fd

    def _pread(self, start: int, end: int) -> bytes:
        fd = self._descriptor()
        parts = []
        pos, left = self.offset + start, end - start
        while left > 0:
            chunk = os.pread(fd, left, pos)
            if not chunk:
                raise _err(self.path, "truncated or damaged: the file ended while reading frames")
            parts.append(chunk)
            pos += len(chunk)
            left -= len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def __call__(self, i0: int, i1: int) -> np.ndarray:
        """Frames ``i0 .. i1 - 1`` as ``(frames, rows, columns)``: 0/1 ``uint8`` for a
        bit-packed SEG, the stored values (``uint8``/``uint16``) otherwise."""
        start, end = self._byte_range(i0, i1)
        raw = np.frombuffer(self._pread(start, end), np.uint8)
        if self.bits != 1:
            return raw.view(self.dtype).reshape(i1 - i0, self.rows, self.cols)
        b0 = i0 * self.frame_px
        n = (i1 - i0) * self.frame_px
        bits = np.unpackbits(raw, bitorder="little", count=b0 % 8 + n)
        return bits[b0 % 8 :].reshape(i1 - i0, self.rows, self.cols)

    def close(self) -> None:
        """Close the file (frames read later open it again)."""
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            self._fd, self._finalizer = None, None


class _Decoded:
    """Frames decoded whole by pydicom (compressed pixel data), with the same interface."""

    def __init__(self, frames: np.ndarray) -> None:
        self._frames = frames

    def __call__(self, i0: int, i1: int) -> np.ndarray:
        return self._frames[i0:i1]

    def close(self) -> None:
        self._frames = self._frames[:0]


def decoded_frames(path: Path, rows: int, cols: int, nframes: int) -> _Decoded:
    """The frames of a SEG whose pixel data must be decoded (compressed or big endian),
    decoded whole by pydicom (its pixel-data plugins).

    Raises:
        MaskValidationError: pydicom cannot read or decode the pixel data.
    """
    from .base import _pydicom

    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(path)
        frames = ds.pixel_array.reshape(nframes, rows, cols)
    except Exception as exc:  # noqa: BLE001 - pydicom and its plugins raise many types
        transfer = ""
        raise _err(
            path, f"cannot decode the pixel data ({transfer}{type(exc).__name__}: {exc})"
        ) from None
    return _Decoded(frames)
