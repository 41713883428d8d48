"""MaskFile (one mask in a ``.msk``), save_mask and load_mask."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..attrs import centroid_of, validate_attrs
from ..bbox import BBox
from ..codecs import Codec, get_codec
from ..errors import (
    CorruptFileError,
    MaskValidationError,
)
from ..format import (
    read_msk_record,
    write_msk,
)
from ..io.target import Target, open_source
from ..mapping import LabelMapping
from ..segmask import SegmentationMask
from ..spaces import Space
from ._common import MaskInfo, PathLike, StorageOptions, _refuse_foreign_name

__all__ = ["MaskFile", "save_mask", "load_mask"]


class MaskFile:
    """One mask in a ``.msk`` file (a local path or a URL).

    Args:
        path: The file, a URL (``s3://...``, ``gs://...``, ``https://...``, ...) or a
            :class:`~medmask.io.Target`.
        mode: ``"r"`` to read, ``"w"`` to write (the file is replaced atomically; a URL
            is written locally and uploaded whole).
        codec: For writing: ``None``/``"bitzstd"`` (version 2) or ``"zstd"`` (version 1).
        storage_options: For a URL: options of its fsspec filesystem (credentials,
            endpoint...); fsspec's configuration and environment variables apply too.

    Raises:
        FileNotFoundError: Mode ``"r"`` and a local file that does not exist.
        MaskValidationError: An unknown mode, or mode ``"w"`` and a name whose suffix
            names another format (``.mska``, ``.nii.gz``...).

    Example:
        >>> with MaskFile("liver.msk", "w") as f:          # doctest: +SKIP
        ...     f.write(segmask)
        >>> segmask = MaskFile("liver.msk").read()          # doctest: +SKIP
    """

    def __init__(
        self,
        path: PathLike | Target,
        mode: str = "r",
        *,
        codec: str | Codec | None = None,
        storage_options: StorageOptions = None,
    ) -> None:
        if mode not in ("r", "w"):
            raise MaskValidationError(f"MaskFile mode must be 'r' or 'w', got {mode!r}")
        self.target = Target.of(path, storage_options)
        #: The file as given: a :class:`~pathlib.Path`, or a URL string.
        self.path: Path | str = self.target.local or self.target.path
        self.mode = mode
        self.codec = get_codec(codec)
        self.storage_options = dict(self.target.storage_options)
        self._url = self.target.is_url
        if mode == "w":
            _refuse_foreign_name(self.path, "msk", "mask file")
        elif not self._url and not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such mask file")

    def _record(self, *, cropped: bool):
        return read_msk_record(self.target, cropped=cropped)

    def read(self) -> SegmentationMask:
        """Read the mask.

        Raises:
            CorruptFileError: The file is damaged or not a ``.msk``.
            ForeignFileError: A file of another format (NIfTI, NRRD, DICOM...): the
                message says which, and how to convert it.
            UnsupportedFormatError: A version this release does not read.
            OSError: It cannot be read (``RemoteReadError`` for a URL, after retries).
        """
        r = self._record(cropped=False)
        try:
            return SegmentationMask(r.array, r.mapping, r.space, copy=False)
        except MaskValidationError as exc:  # stored parts that do not fit together
            raise CorruptFileError(str(exc), path=self.path, field="mapping") from exc

    def read_cropped(self) -> tuple[np.ndarray, BBox | None, LabelMapping, Space]:
        """The stored bounding-box region without expanding it to the full volume.

        Returns:
            ``(array, bbox, mapping, space)``; for an empty mask ``bbox`` is None
            and ``array`` has shape ``(0, 0, 0)``.

        Raises:
            CorruptFileError: The file is damaged or not a ``.msk``.
            ForeignFileError: A file of another format (NIfTI, NRRD, DICOM...): the
                message says which, and how to convert it.
        """
        r = self._record(cropped=True)
        return r.array, r.bbox, r.mapping, r.space

    def info(self) -> MaskInfo:
        """What the file says about its mask (decodes only the bounding-box region).

        Returns:
            A :class:`MaskInfo` (``index`` 0; ``name`` the file name's stem). Files
            without a stored centroid get one computed from the decoded region.

        Raises:
            CorruptFileError: The file is damaged or not a ``.msk``.
            ForeignFileError: A file of another format (NIfTI, NRRD, DICOM...): the
                message says which, and how to convert it.
        """
        with open_source(self.target) as source:
            r = read_msk_record(source, cropped=True)
            nbytes = source.size()
        centroid = r.centroid
        if centroid is None and r.bbox is not None:
            centroid = centroid_of(r.array, (r.bbox[0], r.bbox[2], r.bbox[4]))[1]
        return MaskInfo(
            self.target.stem,
            0,
            r.mapping.to_dict(),
            "bool" if r.array.dtype == np.bool_ else r.array.dtype.name,
            r.bbox,
            r.voxels,
            nbytes,
            centroid,
            r.attrs,
        )

    def write(self, segmask: SegmentationMask, *, attrs: Mapping[str, Any] | None = None) -> None:
        """Write ``segmask`` (atomically: readers see the old file or the new one; a URL
        gets the whole object or nothing).

        Args:
            segmask: The mask.
            attrs: Attributes to store with it (see :mod:`medmask.attrs`; version 2 only).
                Without attributes the file is readable by medmask 0.2.0; with them it
                is format 2.1.

        Raises:
            MaskValidationError: Not a SegmentationMask, bad attributes, or attributes
                with a version-1 codec.
            io.UnsupportedOperation: The file was opened with mode ``"r"``.
            OSError: The write (or upload) failed; nothing was replaced.
        """
        if self.mode != "w":
            raise io.UnsupportedOperation(f"{self.path}: opened read-only (mode 'r')")
        if not isinstance(segmask, SegmentationMask):
            raise MaskValidationError(f"expected a SegmentationMask, got {type(segmask).__name__}")
        attrs = validate_attrs(attrs, mask=os.fspath(self.path))
        with self.target.writing() as local:
            write_msk(local, segmask.data, segmask.mapping, segmask.space, self.codec, attrs)

    def close(self) -> None:
        """Does nothing, on purpose: a :class:`MaskFile` holds no open file or lock between
        calls (:meth:`read`, :meth:`read_cropped`, :meth:`info` and :meth:`write` each open
        and close the file, and a write is complete when it returns). It exists so that a
        ``MaskFile`` is a context manager like :class:`MaskArchive`; the object stays
        usable after it."""

    def __enter__(self) -> MaskFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MaskFile({str(self.path)!r}, mode={self.mode!r})"


def save_mask(
    segmask: SegmentationMask,
    path: PathLike,
    *,
    codec: str | Codec | None = None,
    attrs: Mapping[str, Any] | None = None,
    storage_options: StorageOptions = None,
) -> None:
    """Write one mask to a ``.msk`` file (atomically) or object (whole or not at all).

    Args:
        segmask: The mask.
        path: Destination: a local path or a URL.
        codec: ``None``/``"bitzstd"`` (version 2, default) or ``"zstd"`` (version 1).
        attrs: Attributes to store with the mask (version 2 only; see :mod:`medmask.attrs`).
        storage_options: For a URL: options of its fsspec filesystem.

    Raises:
        MaskValidationError: Not a SegmentationMask, bad attributes, or a name whose
            suffix names another format (``.mska``, ``.nii.gz``...).
        OSError: The write or upload failed.
    """
    MaskFile(path, "w", codec=codec, storage_options=storage_options).write(segmask, attrs=attrs)


def load_mask(
    path: PathLike,
    *,
    codec: str | Codec | None = None,
    storage_options: StorageOptions = None,
) -> SegmentationMask:
    """Read a ``.msk`` file (local path or URL) of any supported version.

    Args:
        path: The file or URL.
        codec: Ignored. Kept only so that calls written for medmask 0.1.x, which took
            it, keep working: the file's header names its codec.
        storage_options: For a URL: options of its fsspec filesystem.

    Raises:
        FileNotFoundError: No such file.
        CorruptFileError: The file is damaged or not a ``.msk``.
        ForeignFileError: A file of another format (NIfTI, NRRD, DICOM...): the
            message says which, and how to convert it.
    """
    return MaskFile(path, "r", storage_options=storage_options).read()
