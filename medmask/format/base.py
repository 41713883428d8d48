"""Records shared by the version-1 and version-2 layouts."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..bbox import BBox, bbox_shape
from ..codecs import BlobSpec, Codec, check_shape
from ..errors import CorruptFileError, MaskValidationError, MedMaskError
from ..mapping import LabelMapping
from ..spaces import Space, space_from_disk_json
from .checks import check_labels_fit
from .layouts import LAYOUTS, Layout

__all__ = [
    "Entry",
    "MskRecord",
    "parse_mapping",
    "read_space",
    "error_context",
    "decode_blob",
    "decode_blob_region",
    "loads_json",
]


def loads_json(raw: bytes, *, path: object, field: str, mask: str | None = None) -> object:
    """Parse a stored UTF-8 JSON section.

    Raises:
        CorruptFileError: Not UTF-8, not JSON, or nested too deeply.
    """
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CorruptFileError(f"invalid JSON ({exc})", path=path, mask=mask, field=field) from exc


@contextlib.contextmanager
def error_context(path: object, mask: str | None = None) -> Iterator[None]:
    """Add the file and mask to any medmask error raised inside (codecs know neither).

    Args:
        path: The file or URL.
        mask: The mask concerned, when there is one.
    """
    try:
        yield
    except MedMaskError as err:
        err.add_context(path=path, mask=mask)
        raise


def decode_blob(
    codec: Codec,
    blob: bytes | memoryview,
    spec: BlobSpec,
    *,
    path: object,
    mask: str | None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Decode one blob, into ``out`` when given, with the file and mask on any error.

    Args:
        codec: The blob's codec.
        blob: The stored bytes.
        spec: The dtype and shape the file records for it.
        path: The file, for errors.
        mask: The mask, for errors.
        out: A writable array of ``spec``'s shape to fill (the codec writes into it when
            it declares :attr:`~medmask.codecs.Codec.supports_out`, else the decoded
            array is copied in).

    Returns:
        The decoded array, or ``out``.

    Raises:
        CorruptFileError: The blob is damaged or disagrees with ``spec``.
    """
    try:  # error_context inlined: this runs once per mask read
        if out is None:
            return codec.decode(blob, spec)
        if codec.supports_out:
            return codec.decode(blob, spec, out)
        out[...] = codec.decode(blob, spec)
        return out
    except MedMaskError as err:
        err.add_context(path=path, mask=mask)
        raise


def decode_blob_region(
    codec: Codec,
    blob: bytes | memoryview,
    spec: BlobSpec,
    region: tuple[int, ...],
    *,
    path: object,
    mask: str | None,
    fill: int | None = None,
) -> np.ndarray:
    """:meth:`Codec.decode_region` of one blob, with the file and mask on any error.

    Raises:
        CorruptFileError: The blob is damaged or disagrees with ``spec``.
    """
    try:
        return codec.decode_region(blob, spec, region, fill=fill)
    except MedMaskError as err:
        err.add_context(path=path, mask=mask)
        raise


def read_space(raw: bytes, *, path: object) -> Space:
    """Parse a stored space JSON and check its volume against the voxel limit.

    Each dimension of a stored space is at most 2**31, and the volume as a whole is held
    to :data:`medmask.codecs.MAX_VOXELS` like every other declared shape, so that a
    full-volume read never reaches ``numpy.zeros`` with an absurd shape.

    Raises:
        CorruptFileError: Invalid JSON, an invalid space or too many voxels.
    """
    space = space_from_disk_json(raw, path=path)
    try:
        check_shape(tuple(int(s) for s in space.shape), field="space.shape")
    except CorruptFileError as err:
        err.add_context(path=path)
        raise
    return space


def parse_mapping(obj: object, *, path: object, mask: str | None) -> LabelMapping:
    """Validate a stored ``{name: label}`` object, raising :class:`CorruptFileError`."""
    if not isinstance(obj, dict):
        raise CorruptFileError(
            f"mapping must be a JSON object, found {type(obj).__name__}",
            path=path,
            mask=mask,
            field="mapping",
        )
    try:
        return LabelMapping(obj)
    except MaskValidationError as exc:
        raise CorruptFileError(
            f"invalid mapping ({exc})", path=path, mask=mask, field="mapping"
        ) from exc


@dataclass(slots=True)  # one per index row: no __dict__
class Entry:
    """One stored mask as the index describes it.

    Attributes:
        name: The mask's name (unique in its archive).
        raw_mapping: The stored ``{name: label}`` object (validated on first use).
        offset: Absolute byte offset of the blob (0 and ``length == 0`` for an empty v2 mask).
        length: Blob size in bytes.
        codec: The codec that decodes the blob.
        dtype: The array dtype (``None`` for version 1, where the blob records it).
        bbox: Half-open ``(z0, z1, y0, y1, x0, x1)`` box of the stored region;
            ``None`` for an empty mask (version 2). Version 1 stores full volumes.
        crc: CRC-32 of the blob (``None`` for version 1).
        voxels: Number of non-zero voxels when recorded (version 2).
        centroid: Mean ``(z, y, x)`` index of the non-zero voxels when recorded
            (formats 2.1 and 2.2); ``None`` when empty or unknown.
        attrs: The mask's stored attributes (formats 2.1 and 2.2; see :mod:`medmask.attrs`).
    """

    name: str
    raw_mapping: object
    offset: int
    length: int
    codec: Codec
    dtype: np.dtype | None = None
    bbox: BBox | None = None
    crc: int | None = None
    voxels: int | None = None
    centroid: tuple[float, float, float] | None = None
    attrs: dict = field(default_factory=dict)
    _mapping: LabelMapping | None = field(default=None, repr=False)

    def mapping(self, path: object = None) -> LabelMapping:
        """The entry's label mapping (parsed and validated once)."""
        if self._mapping is None:
            mapping = parse_mapping(self.raw_mapping, path=path, mask=self.name)
            if self.dtype is not None:  # the index knows the dtype (version 2)
                check_labels_fit(mapping.items(), self.dtype, path=path, mask=self.name)
            self._mapping = mapping
        return self._mapping

    @property
    def box_shape(self) -> tuple[int, int, int] | None:
        """Shape of the stored region, or ``None`` when empty."""
        if self.bbox is None:
            return None
        return bbox_shape(self.bbox)

    @property
    def spec(self) -> BlobSpec:
        """What the index records about the blob (dtype and stored shape) for its codec."""
        return BlobSpec(self.dtype, self.box_shape)


@dataclass
class MskRecord:
    """What a ``.msk`` file holds.

    Attributes:
        array: The full volume, or the bounding-box region when read ``cropped``.
        mapping: The ``{name: label}`` mapping.
        space: The ``(z, y, x)`` space.
        bbox: See :func:`read_msk`.
        version: The format major version.
        minor: The format minor version.
        voxels: Number of non-zero voxels (from the header for version 2).
        centroid: Stored centroid (``.msk`` files of minor version 1, which have
            attributes), else ``None``.
        attrs: Stored attributes (``{}`` when none).
        codec: Name of the codec of the stored blob.
    """

    array: np.ndarray
    mapping: LabelMapping
    space: Space
    bbox: BBox | None
    version: int
    minor: int
    voxels: int
    centroid: tuple[float, float, float] | None
    attrs: dict
    codec: str

    @property
    def layout(self) -> Layout:
        """The file's row of the compatibility table (what it can hold)."""
        return LAYOUTS.of(self.version, self.minor)
