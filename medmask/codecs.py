"""Blob codecs: how one mask array becomes bytes and back.

A codec is a small object with a numeric id (stored in files), a name (what
callers pass as ``codec=``), and ``encode``/``decode``, in the spirit of
numcodecs. Adding a codec means writing one class here and registering it.

Two codecs ship:

* ``"zstd"`` (id 0): the version-1 blob of medmask 0.1.x. Self-describing
  (dtype and shape precede the payload), full volume, bool arrays bit-packed in
  C order, one zstd frame at the default level. The format layer
  (:func:`medmask.format.codec_version`) writes version-1 files with it, which
  medmask 0.1.x opens.
* ``"bitzstd"`` (id 1): the version-2 blob (the default). The array handed to it
  is already cropped to its bounding box by the format layer; dtype and shape
  live in the file's index, so the blob is only a zstd frame of the box with
  every ``x`` row bit-packed on its own when boolean (see :class:`BitZstdCodec`).

A codec knows nothing of files: errors it raises name the field but not the file or
the mask, which the format layer adds once (:meth:`medmask.errors.MedMaskError.add_context`).

Decoding is defensive: the declared output size is checked against the blob
size (:func:`expansion_plausible`: zstd cannot expand more than
:data:`MAX_EXPANSION` times) and a hard limit before anything is allocated, and the
zstd frame must declare exactly the expected size (:func:`decompress_bounded`, the
one bounded decompressor, also used for version-2 index segments).
"""

from __future__ import annotations

import math
import struct
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import zstandard

from .compression import BOOL_SEARCH_LOG, BOOL_TARGET_LENGTH, LABEL_LEVEL, bool_mask_params
from .errors import CorruptFileError, MaskValidationError, UnsupportedFormatError

__all__ = [
    "BlobSpec",
    "Codec",
    "ZstdCodec",
    "BitZstdCodec",
    "register_codec",
    "get_codec",
    "codec_by_id",
    "available_codecs",
    "MASK_DTYPES",
    "DTYPE_NAMES",
    "BIT_DEPTHS",
    "decompress_bounded",
    "expansion_plausible",
    "check_shape",
    "check_dtype",
    "MAX_VOXELS",
    "MAX_EXPANSION",
    "DEFAULT_CODEC",
]

#: The dtypes a stored mask may have, with their bit depth: the one table shared by the
#: codecs, the format readers (:data:`MASK_DTYPES`) and :class:`~medmask.SegmentationMask`
#: (:data:`BIT_DEPTHS`).
_MASK_DTYPE_BITS: tuple[tuple[np.dtype, int], ...] = (
    (np.dtype(bool), 1),
    (np.dtype(np.uint8), 8),
    (np.dtype(np.uint16), 16),
    (np.dtype(np.uint32), 32),
)
#: dtype name -> dtype of the stored mask dtypes.
MASK_DTYPES: dict[str, np.dtype] = {dt.name: dt for dt, _bits in _MASK_DTYPE_BITS}
#: dtype -> its name, for the stored mask dtypes (``np.dtype.name`` is computed in Python,
#: ~2 us a call, and index rows are written and read by the ten thousand).
DTYPE_NAMES: dict[np.dtype, str] = {dt: name for name, dt in MASK_DTYPES.items()}
#: bit depth -> dtype of the stored mask dtypes.
BIT_DEPTHS: dict[int, np.dtype] = {bits: dt for dt, bits in _MASK_DTYPE_BITS}

#: Hard ceiling on the number of voxels a stored array may declare (2**36, 64 GiB
#: of uint8). Anything above is treated as corruption, never allocated.
MAX_VOXELS = 2**36

#: A zstd frame cannot decompress to more than ~32,768 times its own size (one
#: 3-byte RLE block header per 128 KiB block); we allow some headroom. A blob
#: that claims more is a decompression bomb or corrupt.
MAX_EXPANSION = 40_000

#: Name of the codec used when the caller does not choose one.
DEFAULT_CODEC = "bitzstd"


@dataclass(frozen=True)
class BlobSpec:
    """What the file records about a blob outside of it: the array's dtype and shape.

    Attributes:
        dtype: The array's dtype (``None`` when the file does not record it: the
            version-1 blob describes itself, and the dtype it holds is then accepted).
        shape: The shape of the stored array (the bounding box for version 2, the
            whole volume for version 1); ``None`` when not recorded.
    """

    dtype: np.dtype | None = None
    shape: tuple[int, ...] | None = None


def expansion_plausible(compressed: int, decoded: int) -> bool:
    """Whether ``compressed`` bytes of zstd can decode to ``decoded`` bytes.

    Args:
        compressed: Size of the stored frame.
        decoded: Size it claims once decoded.

    Returns:
        ``False`` for a claim no zstd frame can honour (:data:`MAX_EXPANSION`): the
        data is corrupt or a decompression bomb, and nothing may be allocated for it.
    """
    return decoded <= max(compressed, 64) * MAX_EXPANSION


_LOCAL = threading.local()


def _decompressor() -> zstandard.ZstdDecompressor:
    """This thread's zstd decompressor (making one costs ~16 us, a small blob's whole
    decompression ~1-50 us; a decompressor is not shared between threads)."""
    d = getattr(_LOCAL, "dctx", None)
    if d is None:
        d = _LOCAL.dctx = zstandard.ZstdDecompressor()
    return d


def decompress_bounded(
    payload: bytes | memoryview,
    *,
    expected: int | None = None,
    limit: int | None = None,
    field: str = "data",
) -> bytes:
    """Decompress one zstd frame whose content size is declared and bounded.

    Exactly one of ``expected`` (the frame must hold exactly this many bytes) and
    ``limit`` (it may hold at most this many) is given. In both cases the frame may not
    expand beyond :func:`expansion_plausible`, and nothing larger than the declared size
    is ever allocated.

    Args:
        payload: The frame.
        expected: The exact decoded size.
        limit: The largest decoded size accepted.
        field: The field named in errors.

    Returns:
        The decoded bytes.

    Raises:
        CorruptFileError: Not a zstd frame, a size that disagrees with ``expected`` or
            exceeds ``limit``, or damaged data. The caller adds the file and mask.
    """
    if type(payload) is not bytes:
        payload = bytes(payload)
    if expected is not None and not expansion_plausible(len(payload), expected):
        raise CorruptFileError(
            f"blob of {len(payload)} bytes claims {expected} decoded bytes (beyond what zstd "
            "can produce: corrupt or a decompression bomb)",
            field=field,
        )
    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise CorruptFileError(f"not a zstd frame ({exc})", field=field) from exc
    if expected is not None:
        if declared != expected:
            raise CorruptFileError(
                f"zstd frame declares {declared} bytes, expected {expected}", field=field
            )
    elif declared < 0 or declared > min(limit or 0, max(len(payload), 64) * MAX_EXPANSION):
        raise CorruptFileError(f"zstd frame declares {declared} bytes (limit {limit})", field=field)
    try:
        out = _decompressor().decompress(payload, max_output_size=max(declared, 1))
    except zstandard.ZstdError as exc:
        raise CorruptFileError(f"zstd decoding failed ({exc})", field=field) from exc
    if len(out) != declared:
        raise CorruptFileError(f"decoded {len(out)} bytes, expected {declared}", field=field)
    return out


def check_shape(shape: tuple[int, ...], *, field: str) -> None:
    """Reject shapes with non-positive dimensions or absurd voxel counts.

    Raises:
        CorruptFileError: Not 3 positive integers, or more than :data:`MAX_VOXELS`
            voxels (the caller adds the file and mask).
    """
    if len(shape) != 3:
        raise CorruptFileError(f"expected 3 dimensions, found {len(shape)}", field=field)
    if any((not isinstance(s, int)) or s <= 0 for s in shape):
        raise CorruptFileError(f"dimensions must be positive integers, found {shape}", field=field)
    if math.prod(shape) > MAX_VOXELS:
        raise CorruptFileError(f"shape {shape} declares more than {MAX_VOXELS} voxels", field=field)


def check_dtype(name: object, *, field: str = "dtype") -> np.dtype:
    """Map a stored dtype string to a numpy dtype.

    Raises:
        CorruptFileError: Not one of :data:`MASK_DTYPES` (the caller adds the file and mask).
    """
    if not isinstance(name, str) or name not in MASK_DTYPES:
        raise CorruptFileError(
            f"dtype {name!r} is not a mask dtype (one of {', '.join(MASK_DTYPES)})", field=field
        )
    return MASK_DTYPES[name]


class Codec(ABC):
    """A way to turn one mask array into bytes and back.

    A codec knows nothing of files: it never sees a path, a mask name or a format
    version. The format layer chooses which codec ids a version accepts, hands over the
    :class:`BlobSpec` its index records, and adds the file and mask to any error a codec
    raises.

    Subclasses set ``codec_id`` (stored in files, 0-255), ``name`` (what callers pass as
    ``codec=``) and, when :meth:`decode` can write into a caller's array,
    ``supports_out = True``; they implement :meth:`encode` and :meth:`decode`.
    """

    codec_id: ClassVar[int]
    name: ClassVar[str]
    #: Whether :meth:`decode` writes into ``out=`` itself (bounded temporary memory);
    #: otherwise the caller copies the decoded array into its target.
    supports_out: ClassVar[bool] = False

    @staticmethod
    def payload_nbytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
        """Size of the decompressed payload for an array of ``dtype`` and ``shape``.

        Default: the flattened array, bit-packed when boolean (``ceil(n / 8)`` bytes),
        raw bytes otherwise. Readers check a blob's declared size against it before
        allocating anything.
        """
        n = math.prod(shape)
        if np.dtype(dtype) == np.bool_:
            return (n + 7) // 8
        return n * np.dtype(dtype).itemsize

    @abstractmethod
    def encode(self, array: np.ndarray) -> bytes:
        """Encode a 3-D mask array (dtype bool/uint8/uint16/uint32).

        Args:
            array: The array to store.

        Returns:
            The blob.
        """

    @abstractmethod
    def decode(
        self, blob: bytes | memoryview, spec: BlobSpec, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Decode a blob written by :meth:`encode`.

        Args:
            blob: The stored bytes.
            spec: The dtype and shape recorded outside the blob (required when the blob
                does not describe itself; checked when it does).
            out: A writable array of ``spec``'s shape and dtype to decode into; only
                when :attr:`supports_out` is true.

        Returns:
            A new, writable array, or ``out``.

        Raises:
            CorruptFileError: The blob is damaged or disagrees with ``spec`` (without
                file or mask: the format layer adds them).
        """

    def decode_region(
        self,
        blob: bytes | memoryview,
        spec: BlobSpec,
        region: tuple[int, ...],
        *,
        fill: int | None = None,
    ) -> np.ndarray:
        """Decode the part ``region`` of a blob's array (what a window read needs).

        Default: :meth:`decode` the whole array and slice it; codecs whose payload can be
        unpacked in part override it.

        Args:
            blob: The stored bytes.
            spec: The dtype and shape recorded outside the blob.
            region: ``(z0, z1, y0, y1, x0, x1)``, half-open, inside the stored array.
            fill: For a boolean array only: return ``uint8`` bytes holding ``fill`` (0-255)
                where the mask is set and 0 elsewhere, instead of booleans (a painter's
                label, or 255 for a blend mask, made while unpacking).

        Returns:
            An array of the region's shape (possibly a read-only view: do not write to it
            unless ``fill`` was given, which makes a new array).

        Raises:
            CorruptFileError: The blob is damaged or disagrees with ``spec``.
        """
        z0, z1, y0, y1, x0, x1 = region
        part = self.decode(blob, spec)[z0:z1, y0:y1, x0:x1]
        return part if fill is None else np.multiply(part.view(np.uint8), np.uint8(fill))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.codec_id}, name={self.name!r})"


class ZstdCodec(Codec):
    """The version-1 blob of medmask 0.1.x (codec id 0, name ``"zstd"``).

    Layout: ``flag u8 | dtype_len u8 | dtype ascii | ndim u8 | shape int64 x ndim |
    zstd frame``, where ``flag == 1`` means the payload is ``numpy.packbits`` of the
    flattened boolean array. The frame records its content size.
    """

    codec_id = 0
    name = "zstd"

    def __init__(self, level: int = 3) -> None:
        self.level = level

    def encode(self, array: np.ndarray) -> bytes:
        arr = np.ascontiguousarray(array)
        if arr.dtype == np.bool_:
            flag, payload = 1, np.packbits(arr.reshape(-1)).tobytes()
        else:
            flag, payload = 0, arr.tobytes()
        dtype = str(arr.dtype).encode("ascii")
        head = struct.pack(
            f"<BB{len(dtype)}sB{arr.ndim}q", flag, len(dtype), dtype, arr.ndim, *arr.shape
        )
        return head + zstandard.ZstdCompressor(level=self.level).compress(payload)

    @staticmethod
    def _header(buf: memoryview) -> tuple[int, str, tuple[int, ...], int]:
        """``(flag, dtype name, shape, payload start)`` of a version-1 blob."""
        try:
            flag, dlen = struct.unpack_from("<BB", buf, 0)
            dname = bytes(buf[2 : 2 + dlen]).decode("ascii")
            if len(dname) != dlen:
                raise struct.error("truncated dtype")
            (ndim,) = struct.unpack_from("<B", buf, 2 + dlen)
            shape = struct.unpack_from(f"<{ndim}q", buf, 3 + dlen)
        except (struct.error, UnicodeDecodeError) as exc:
            raise CorruptFileError(
                f"truncated or invalid blob header ({exc})", field="data"
            ) from exc
        return flag, dname, tuple(int(s) for s in shape), 3 + dlen + 8 * ndim

    def decode(
        self, blob: bytes | memoryview, spec: BlobSpec, out: np.ndarray | None = None
    ) -> np.ndarray:
        buf = memoryview(blob)
        flag, dname, stored_shape, start = self._header(buf)
        if flag not in (0, 1):
            raise CorruptFileError(f"blob flag {flag} is neither 0 nor 1", field="data")
        stored_dtype = check_dtype(dname, field="data.dtype")
        if (flag == 1) != (stored_dtype == np.bool_):
            raise CorruptFileError(f"blob flag {flag} does not match dtype {dname}", field="data")
        check_shape(stored_shape, field="data.shape")
        if spec.dtype is not None and np.dtype(spec.dtype) != stored_dtype:
            raise CorruptFileError(
                f"blob dtype {dname} differs from the recorded {np.dtype(spec.dtype)}",
                field="data.dtype",
            )
        if spec.shape is not None and tuple(spec.shape) != stored_shape:
            raise CorruptFileError(
                f"blob shape {stored_shape} differs from the expected {tuple(spec.shape)}",
                field="data.shape",
            )
        raw = decompress_bounded(
            buf[start:], expected=self.payload_nbytes(stored_dtype, stored_shape)
        )
        if flag == 1:
            bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=math.prod(stored_shape))
            return bits.view(bool).reshape(stored_shape)
        return np.frombuffer(raw, dtype=stored_dtype).reshape(stored_shape).copy()


class BitZstdCodec(Codec):
    """The version-2 blob (codec id 1, name ``"bitzstd"``, the default).

    The array handed over is the mask's bounding box, ``(z, y, x)`` C order. The
    payload is one zstd frame (with content size) of:

    * bool: every ``x`` row packed on its own (``numpy.packbits(box, axis=2)``,
      big-endian bit order, each row zero-padded to whole bytes), i.e.
      ``Z * Y * ceil(X / 8)`` bytes;
    * integers: the raw little-endian bytes of the box.

    Dtype and box shape are not in the blob; the file's index records them.

    Why rows: with each row starting on a byte boundary, identical rows are
    identical bytes, which zstd matches; packing the flattened box instead shifts
    every row by ``X mod 8`` bits. On the 117 TotalSegmentator masks the row layout
    is 24% smaller than flat packing (35.3 kB against 46.5 kB at level 19) and it
    decodes straight into ``(z, y, x)`` memory (no transpose).

    Args:
        level: zstd level whose parameters boolean masks are compressed with (19: 7%
            smaller than level 15), its search capped by ``search_log`` and
            ``target_length`` (:func:`bool_mask_params`).
        label_level: zstd level for multi-label arrays (:data:`~medmask.compression.LABEL_LEVEL`).
        search_log: The cap on ``search_log`` for large boolean masks (``None``: none).
        target_length: The cap on ``target_length`` for large boolean masks (``None``: none).
    """

    codec_id = 1
    name = "bitzstd"
    supports_out = True

    def __init__(
        self,
        level: int = 19,
        label_level: int = LABEL_LEVEL,
        *,
        search_log: int | None = BOOL_SEARCH_LOG,
        target_length: int | None = BOOL_TARGET_LENGTH,
    ) -> None:
        self.level = level
        self.label_level = label_level
        self.search_log = search_log
        self.target_length = target_length

    @staticmethod
    def payload_nbytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
        """Size of the decompressed payload of a box of ``shape`` and ``dtype``."""
        z, y, x = shape
        if np.dtype(dtype) == np.bool_:
            return z * y * ((x + 7) // 8)
        return z * y * x * np.dtype(dtype).itemsize

    def encode(self, array: np.ndarray) -> bytes:
        if array.dtype not in MASK_DTYPES.values():
            raise MaskValidationError(f"cannot encode dtype {array.dtype}")
        if array.ndim != 3:
            raise MaskValidationError(f"cannot encode a {array.ndim}-D array")
        if array.dtype == np.bool_:
            payload = np.packbits(array, axis=2).tobytes()
            cap = {"search_log": self.search_log, "target_length": self.target_length}
            params = bool_mask_params(len(payload), self.level, **cap)
            return zstandard.ZstdCompressor(compression_params=params).compress(payload)
        payload = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        return zstandard.ZstdCompressor(level=self.label_level, write_content_size=True).compress(
            payload
        )

    def decode(
        self, blob: bytes | memoryview, spec: BlobSpec, out: np.ndarray | None = None
    ) -> np.ndarray:
        if spec.dtype is None or spec.shape is None:
            raise MaskValidationError("the bitzstd codec needs the dtype and shape from the index")
        dtype = np.dtype(spec.dtype)
        shape = tuple(int(s) for s in spec.shape)
        check_shape(shape, field="bbox")
        raw = decompress_bounded(blob, expected=self.payload_nbytes(dtype, shape))
        if dtype != np.bool_:
            arr = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)
            if out is None:
                return arr.astype(dtype)  # native byte order, writable
            out[...] = arr
            return out
        z, y, x = shape
        packed = np.frombuffer(raw, dtype=np.uint8).reshape(z, y, (x + 7) // 8)
        if out is None:
            return np.unpackbits(packed, axis=2, count=x).view(bool)
        # unpack a few z slices at a time: the temporary stays ~256 Ki voxels
        step = max(1, (1 << 18) // max(1, y * x))
        for z0 in range(0, z, step):
            out[z0 : z0 + step] = np.unpackbits(packed[z0 : z0 + step], axis=2, count=x).view(bool)
        return out

    def decode_region(
        self,
        blob: bytes | memoryview,
        spec: BlobSpec,
        region: tuple[int, ...],
        *,
        fill: int | None = None,
    ) -> np.ndarray:
        """The part ``region`` of the box: the frame is decompressed whole (zstd has no
        random access), then only the region's rows and, of a boolean box, only the bytes
        that hold its columns are expanded, each packed byte into 8 voxel bytes by one
        table lookup (:func:`_bit_table`: booleans, or ``fill`` where set). A window read
        calls this once per mask it meets: the checks are written out for speed."""
        dtype, shape = spec.dtype, spec.shape
        if dtype is None or shape is None:
            raise MaskValidationError("the bitzstd codec needs the dtype and shape from the index")
        z, y, x = shape
        z0, z1, y0, y1, x0, x1 = region
        if not (0 <= z0 < z1 <= z and 0 <= y0 < y1 <= y and 0 <= x0 < x1 <= x):
            raise MaskValidationError(f"region {tuple(region)} is not inside the box {shape}")
        if dtype.kind != "b":
            raw = decompress_bounded(blob, expected=z * y * x * dtype.itemsize)
            arr = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(z, y, x)
            return arr[z0:z1, y0:y1, x0:x1]
        nb = (x + 7) >> 3
        raw = decompress_bounded(blob, expected=z * y * nb)
        packed = np.frombuffer(raw, dtype=np.uint8).reshape(z, y, nb)
        b0 = x0 >> 3
        words = np.take(
            _bit_table(1 if fill is None else fill), packed[z0:z1, y0:y1, b0 : (x1 + 7) >> 3]
        )
        voxels = words.view(np.uint8)[:, :, x0 - 8 * b0 : x1 - 8 * b0]
        return voxels.view(bool) if fill is None else voxels


#: ``_BITS[v]`` is the 8 voxels of packed byte ``v`` as 0/1 bytes (the first voxel is the
#: most significant bit, codec 1's bit order).
_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)
_BIT_TABLES: dict[int, np.ndarray] = {}


def _bit_table(fill: int) -> np.ndarray:
    """The 256 packed bytes as 8 voxel bytes each (``fill`` where a bit is set), one
    ``uint64`` per byte so that expanding a row is one ``numpy.take`` (2 KiB per value)."""
    table = _BIT_TABLES.get(fill)
    if table is None:
        if not 0 < fill < 256:
            raise MaskValidationError(f"fill must be 1-255, got {fill!r}")
        table = _BIT_TABLES[fill] = (_BITS * np.uint8(fill)).view(np.uint64).ravel()
    return table


_BY_NAME: dict[str, Codec] = {}
_BY_ID: dict[int, Codec] = {}


def register_codec(codec: Codec) -> None:
    """Make a codec available by name and id.

    Raises:
        MaskValidationError: The id does not fit in a byte, or another codec already uses
            the name or id (a ``ValueError``).
    """
    if not 0 <= codec.codec_id <= 255:
        raise MaskValidationError(f"codec id must fit in one byte, got {codec.codec_id}")
    for key, table in ((codec.name, _BY_NAME), (codec.codec_id, _BY_ID)):
        if key in table and table[key] is not codec:
            raise MaskValidationError(f"codec {key!r} is already registered as {table[key]!r}")
    _BY_NAME[codec.name] = codec
    _BY_ID[codec.codec_id] = codec


def available_codecs() -> list[str]:
    """Names of the registered codecs."""
    return sorted(_BY_NAME)


def get_codec(codec: str | Codec | None) -> Codec:
    """Resolve a ``codec=`` argument (``None`` means :data:`DEFAULT_CODEC`).

    Raises:
        MaskValidationError: The name is unknown.
    """
    if codec is None:
        codec = DEFAULT_CODEC
    if isinstance(codec, Codec):
        return codec
    try:
        return _BY_NAME[codec]
    except (KeyError, TypeError):
        raise MaskValidationError(
            f"unknown codec {codec!r}; available: {', '.join(available_codecs())}"
        ) from None


def codec_by_id(codec_id: int) -> Codec:
    """Resolve a codec id read from a file.

    Raises:
        UnsupportedFormatError: No codec with that id is registered (the caller adds
            the file and mask).
    """
    try:
        return _BY_ID[codec_id]
    except KeyError:
        known = ", ".join(f"{c.codec_id} ({c.name})" for c in _BY_ID.values())
        raise UnsupportedFormatError(
            f"unknown codec id {codec_id}; this release reads codec ids {known}",
            field="codec_id",
        ) from None


register_codec(ZstdCodec())
register_codec(BitZstdCodec())
