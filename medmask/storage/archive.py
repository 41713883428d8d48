"""MaskArchive: many masks of one case in a ``.mska``.

Format versions live behind :class:`medmask.format.backend.ArchiveBackend`; this package
keeps what does not depend on them: locking, the handle's lifecycle, names and positions,
URLs (read through the byte-source table, written through a local temporary file and
uploaded whole) and conversion to :class:`~medmask.SegmentationMask`. This module holds the
handle (opening, reading, closing); the changes are :mod:`._editing`, the deprecated
synonyms :mod:`._deprecated`, arrays in and masks out :mod:`._masks`.
"""

from __future__ import annotations

import contextlib
import copy
import html
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from .._upcalls import upcall
from ..bbox import BBox
from ..codecs import DTYPE_NAMES, Codec, get_codec
from ..errors import MaskNotFoundError, MaskValidationError, close_matches
from ..format import open_archive, sniff
from ..format._io import open_locked
from ..format.backend import ArchiveBackend
from ..format.base import Entry
from ..format.layouts import Layout
from ..format.versions import backend_for, check_codec_for, write_choice
from ..io.source import ByteSource, LocalFileSource
from ..io.target import Target, open_source
from ..segmask import SegmentationMask
from ..spaces import Space, check_same_grid
from ._common import MaskInfo, PathLike, StorageOptions, _refuse_foreign_name
from ._deprecated import DeprecatedArchiveNames
from ._editing import ArchiveEditing
from ._masks import stored_segmask
from ._window import ArchiveWindows

__all__ = ["MaskArchive"]


class MaskArchive(ArchiveEditing, ArchiveWindows, DeprecatedArchiveNames):
    """Many masks of one case in a ``.mska`` file, with random access by name or position.

    All masks share the archive's space. The index is read once when the archive
    is opened; lookups by name or position are O(1) and decode only that mask.

    One method per job:

    ===============================  ======================================================
    job                              method
    ===============================  ======================================================
    store a mask (array or mask)     ``ar.add(name, mask, attrs=...)``
    change one                       ``ar.replace(name, mask)``, ``ar.set_attrs(name, a)``
    remove one                       ``del ar[name]`` / ``ar.delete(name)``
    read one mask                    ``ar[name]`` or ``ar[position]`` (a SegmentationMask)
    read one mask's array            ``ar.read_array(name)`` (a new, writable array)
    read one mask's box only         ``ar.read_cropped(name)``
    read a box of the grid           ``ar.read_window(window, names, as_=...)``: a label
                                     map, a stack or a dict, decoding only what meets it
    read every mask                  ``ar.read_all_masks()`` (blobs read together)
    index facts, no decoding         ``ar.info(name)``, ``ar.infos()``, ``ar.all_names()``,
                                     ``len(ar)``, ``name in ar``
    the archive's own attributes     ``ar.archive_attrs``, ``ar.set_archive_attrs(a)``
    what the file can hold           ``ar.layout`` (capabilities; ``ar.version``...)
    ===============================  ======================================================

    Older names still work and warn (:class:`DeprecationWarning`): ``add_segmask``
    (use :meth:`add`), ``load_segmask`` (``ar[name]``), ``read_all_mapping``
    (:meth:`infos`).

    Args:
        path: The archive: a local path, a URL (``s3://``, ``gs://``, ``az://``,
            ``http(s)://``, ``file://``, ``memory://`` or a scheme registered with
            :func:`medmask.io.register_source`) read with byte-range requests, or a
            :class:`~medmask.io.Target`.
        mode: ``"r"`` read; ``"w"`` create or replace (the new archive appears
            atomically at :meth:`close`, a URL as one whole object; on an exception
            inside a ``with`` block nothing is written); ``"a"`` append, delete or
            replace masks, creating the file if missing (every change is committed
            durably before the call returns; local files only: objects in a store are
            immutable).
        space: The ``(z, y, x)`` space for a new archive (default: that of the
            first mask added).
        codec: ``None``/``"bitzstd"`` for version 2 (default for new archives),
            ``"zstd"`` for version 1 (readable by medmask 0.1.x). When appending, the
            existing file's version is kept; a contradicting codec raises.
        compat: ``None`` (default: the current layout, format 2.3, which stores each
            mask's centroid and attributes and the archive's attributes), or the medmask
            release that must read the file (:func:`medmask.format.compat_choices`):
            ``"0.4"``: format 2.2 (no archive attributes), ``"0.3"``: format 2.1 (the same
            information in a slower index), ``"0.2"``: format 2.0, without centroids or
            attributes (attributes are then refused), ``"0.1"``: version 1 (the same as
            ``codec="zstd"``). Applies to new files; appending keeps the file's layout.
        storage_options: For a URL: options of its fsspec filesystem (credentials,
            endpoint...); fsspec's configuration and environment variables apply too.

    Raises:
        FileNotFoundError: Mode ``"r"`` and the file does not exist.
        CorruptFileError: The file is damaged (the message names file, mask, field).
        ForeignFileError: A file of another format (NIfTI, NRRD, DICOM...): the
            message says which, and how to convert it.
        UnsupportedFormatError: A format version or codec this release does not read.
        ArchiveLockedError: Another writer holds the archive (modes ``"w"``/``"a"``).
        MaskValidationError: An unknown mode; mode ``"w"``/``"a"`` and a name whose suffix
            names another format (``.msk``, ``.nii.gz``...), a bad ``compat``, or mode
            ``"a"`` on a URL.

    Example:
        >>> with MaskArchive("case.mska", "w", space=space) as ar:   # doctest: +SKIP
        ...     ar.add("liver", liver_array)
        >>> with MaskArchive("case.mska") as ar:              # doctest: +SKIP
        ...     liver = ar["liver"]; first = ar[0]; names = ar.all_names()
        >>> with MaskArchive("case.mska", "a") as ar:         # doctest: +SKIP
        ...     del ar["liver"]; ar.replace("spleen", new_spleen)
    """

    def __init__(
        self,
        path: PathLike | Target,
        mode: str = "r",
        *,
        space: Space | None = None,
        codec: str | Codec | None = None,
        compat: str | None = None,
        storage_options: StorageOptions = None,
    ) -> None:
        self._closed = True  # until opened (``__del__`` and ``close`` then do nothing)
        if mode not in ("r", "w", "a"):
            raise MaskValidationError(f"MaskArchive mode must be 'r', 'w' or 'a', got {mode!r}")
        codec, self._minor = write_choice(codec, compat)
        self._compat = compat
        if space is not None and not isinstance(space, Space):
            raise MaskValidationError(
                f"space must be a spacetransformer.Space, got {type(space).__name__}"
            )
        self.target = Target.of(path, storage_options)
        #: The file as given: a :class:`~pathlib.Path`, or a URL string.
        self.path: Path | str = self.target.local or self.target.path
        self.mode = mode
        self.storage_options = dict(self.target.storage_options)
        self._url = self.target.is_url
        if mode != "r":
            _refuse_foreign_name(self.path, "mska", "archive")
        if mode == "a" and self._url:
            raise MaskValidationError(
                "mode 'a' cannot change an archive in an object store (objects "
                "are immutable, a partial update would not be atomic): write a new archive "
                "with mode 'w' (it is uploaded whole at close), or edit a local copy "
                "(medmask.io.remote.download) and upload it",
                path=self.path,
            )
        self._codec = get_codec(codec) if (codec is not None or mode == "w") else None
        self._source: ByteSource | None = None  # mode "r": the source this handle owns
        self._lock_fd: int | None = None
        self._upload_dir: Path | None = None  # mode "w" on a URL: where the file is built
        self._lock = threading.Lock()
        self._backend: ArchiveBackend
        self._closed = False
        try:
            if mode == "r":
                self._open_read()
            elif mode == "w":
                self._open_write(space)
            else:
                self._open_append(space)
        except BaseException:
            self._release(discard=True)
            raise
        self._reindex()

    # -- opening -----------------------------------------------------------------------
    def _open_read(self) -> None:
        self._source = open_source(self.target)
        self._backend = open_archive(self._source)

    def _open_write(self, space: Space | None) -> None:
        local = self.path
        if self._url:
            self._upload_dir = Path(tempfile.mkdtemp(prefix="medmask-upload-"))
            local = self._upload_dir / "archive.mska"
        elif local.exists():  # refuse to replace an archive another process is appending to
            self._lock_fd = open_locked(local, os.O_RDONLY)
        self._backend = backend_for(self._codec).create(local, space=space, minor=self._minor)

    def _open_append(self, space: Space | None) -> None:
        if not self.path.exists():
            cls = backend_for(self._codec or get_codec(None))
            pending = cls.create_missing(self.path, space=space, minor=self._minor)
            if pending is not None:  # created by its first commit
                self._backend = pending
                return
        fd = self._lock_fd = open_locked(self.path, os.O_RDWR | getattr(os, "O_BINARY", 0))
        source = LocalFileSource(self.path, fd=fd, own_fd=False)
        check_codec_for(self._codec, sniff(source)[1], path=self.path)
        self._backend = open_archive(source, fd=fd)
        if space is not None and self._backend.space is not None:
            check_same_grid(self._backend.space, space, what=f"space= given for {self.path}")

    def _reindex(self) -> None:
        self._by_name = {n: i for i, n in enumerate(self._backend.names)}
        self._prepared_tables: dict = {}  # label tables resolved for windows (_window.py)

    # -- properties --------------------------------------------------------------------
    @property
    def space(self) -> Space | None:
        """The archive's ``(z, y, x)`` space (``None`` for a new archive with no mask yet)."""
        return self._backend.space

    @property
    def layout(self) -> Layout:
        """The file's row of the compatibility table: what it can hold
        (``supports_attrs``, ``centroids``, ``index_stats``, ``checksums``...)."""
        return self._backend.layout

    @property
    def version(self) -> int:
        """Format major version of the file."""
        return self._backend.version

    @property
    def minor_version(self) -> int:
        """Format minor version of the file."""
        return self._backend.minor

    @property
    def supports_attrs(self) -> bool:
        """Whether masks stored in this archive can carry attributes."""
        return self._backend.supports_attrs

    @property
    def generation(self) -> int | None:
        """Commit generation of the state this handle sees (``None`` where the layout has
        no commits)."""
        self._check_open()
        return self._backend.generation

    @property
    def index_segments(self) -> int | None:
        """Number of index segments of the commit this handle sees (``None`` where the
        layout has no segments)."""
        self._check_open()
        return self._backend.index_segments

    @property
    def end_offset(self) -> int | None:
        """Logical end of the committed archive in bytes (bytes beyond it are garbage of an
        interrupted append; ``None`` where the layout has no commits)."""
        self._check_open()
        return self._backend.end_offset

    @property
    def archive_attrs(self) -> Mapping[str, Any]:
        """The attributes of the archive as a whole (format 2.3), read-only: a copy; ``{}``
        for older layouts or when none were set. Reserved keys (``docs/format.md``,
        "Archive attributes"): ``source``, ``grid``, ``annotated``. Change them with
        :meth:`set_archive_attrs`."""
        self._check_open()
        return MappingProxyType(copy.deepcopy(self._backend.archive_attrs))

    @property
    def annotated(self) -> tuple[str, ...] | None:
        """The structures that were annotated (``archive_attrs["annotated"]``), or ``None``
        when the archive does not say. A listed name without a mask, or with an empty one,
        was annotated and is absent; see ``docs/format.md``."""
        names = self.archive_attrs.get("annotated")
        return None if names is None else tuple(names)

    @property
    def grid_kind(self) -> str | None:
        """``archive_attrs["grid"]``: ``"image"`` (the archive's grid is the source image's)
        or ``"segmentation"`` (the segmentation's own extent, which may be offset from the
        image); ``None`` when the archive does not say."""
        return self.archive_attrs.get("grid")

    @property
    def codec_names(self) -> list[str]:
        """Names of the codecs the stored masks use (sorted; the version's default when empty)."""
        self._check_open()
        names = sorted({e.codec.name for e in self._backend.entries})
        return names or [self._backend.default_codec]

    @property
    def mask_bytes(self) -> int:
        """Bytes taken by the masks' blobs (what the index references)."""
        self._check_open()
        return sum(int(e.length) for e in self._backend.entries)

    # -- reading -----------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: archive is closed")

    def _entry(self, key: str | int) -> tuple[int, Entry]:
        self._check_open()
        entries = self._backend.entries
        if isinstance(key, str):
            try:
                i = self._by_name[key]
            except KeyError:
                raise MaskNotFoundError(
                    f"no mask named {key!r} ({len(self)} masks)"
                    + close_matches(key, self._by_name),
                    path=self.path,
                ) from None
            return i, entries[i]
        if isinstance(key, int | np.integer) and not isinstance(key, bool):
            n = len(entries)
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise MaskNotFoundError(
                    f"position {key} is out of range ({n} masks)", path=self.path
                )
            return i, entries[i]
        raise TypeError(
            f"archive keys are names (str) or positions (int), got {type(key).__name__}"
        )

    def __getitem__(self, key: str | int) -> SegmentationMask:
        """Read one mask by name or position.

        Raises:
            MaskNotFoundError: No such name (close matches are suggested) or position.
            CorruptFileError: Its blob is damaged.
        """
        return self._read_segmask(key)

    def _read_segmask(self, key: str | int) -> SegmentationMask:
        _, entry = self._entry(key)
        return stored_segmask(entry, self._backend.read_full(entry), self.space, self.path)

    def read_array(self, key: str | int) -> np.ndarray:
        """The full-volume ``(z, y, x)`` array of one mask (a new, writable array; the
        mapping is ``ar.info(key).mapping``).

        Raises:
            MaskNotFoundError: No such mask.
            CorruptFileError: Its blob is damaged.
        """
        _, entry = self._entry(key)
        return self._backend.read_full(entry)

    def read_cropped(self, key: str | int) -> tuple[np.ndarray, BBox | None]:
        """One mask's bounding-box region without expanding it to the full volume.

        Work is proportional to the box where the layout stores cropped blobs
        (:attr:`layout` ``.cropped_blobs``); otherwise the full volume is decoded and then
        cropped.

        Returns:
            ``(array, bbox)`` with ``bbox = (z0, z1, y0, y1, x0, x1)`` half-open;
            ``(empty (0,0,0) array, None)`` for an empty mask.
        """
        _, entry = self._entry(key)
        return self._backend.read_cropped(entry)

    def info(self, key: str | int) -> MaskInfo:
        """Index facts about one mask (no decoding).

        Args:
            key: The mask's name or position.

        Returns:
            A :class:`MaskInfo`; ``centroid`` is ``None`` where the file does not store
            it (:attr:`layout` without ``centroids``), ``attrs`` ``{}`` when none.

        Raises:
            MaskNotFoundError: No such name or position.
            CorruptFileError: The mask's index row is damaged.
        """
        i, e = self._entry(key)
        return self._info(i, e)

    def _info(self, i: int, e: Entry) -> MaskInfo:
        return MaskInfo._of_row(
            e.name,
            i,
            e.mapping(self.path).to_dict(),
            None if e.dtype is None else DTYPE_NAMES[e.dtype],
            e.bbox,
            e.voxels,
            e.length,
            e.centroid,
            copy.deepcopy(e.attrs) if e.attrs else {},
        )

    def infos(self) -> list[MaskInfo]:
        """:meth:`info` of every mask, in archive order, from the index alone.

        Raises:
            CorruptFileError: An index row is damaged.
        """
        self._check_open()
        return [self._info(i, e) for i, e in enumerate(self._backend.entries)]

    def all_names(self) -> list[str]:
        """Names in archive order."""
        self._check_open()
        return list(self._by_name)

    def read_all_masks(self) -> dict[str, SegmentationMask]:
        """Every mask, ``{name: SegmentationMask}`` in archive order.

        The blobs are read together (one coalesced series of range reads for a URL).

        Raises:
            CorruptFileError: A blob is damaged.
        """
        self._check_open()
        entries = list(self._backend.entries)
        arrays = self._backend.read_many_full(entries)
        space, path = self.space, self.path
        return {
            e.name: stored_segmask(e, a, space, path) for e, a in zip(entries, arrays, strict=True)
        }

    def refresh(self) -> None:
        """Re-open the archive at its path (mode ``"r"``): see what was committed since
        opening, also when the file was replaced (mode ``"w"``, version-1 edits) or, for a
        URL, when the object was replaced.
        """
        self._check_open()
        if self.mode != "r":
            return
        source = open_source(self.target)
        try:
            backend = open_archive(source)
        except BaseException:
            source.close()
            raise
        old, self._source, self._backend = self._source, source, backend
        old.close()
        self._reindex()

    # -- container protocol ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self.all_names())

    # -- closing -----------------------------------------------------------------------
    def close(self) -> None:
        """Finish writing (mode ``"w"``: commit and atomically replace, or upload a URL
        whole) and release the file."""
        if self._closed:
            return
        try:
            if self.mode == "w":
                if not self._url and self._lock_fd is None and self.path.exists():
                    # the file appeared after we opened (another writer created it): never
                    # replace an archive someone is appending to
                    with contextlib.suppress(FileNotFoundError):
                        self._lock_fd = open_locked(self.path, os.O_RDONLY)
                self._backend.publish()
                if self._url:
                    self.target.upload_from(self._upload_dir / "archive.mska")
        finally:
            self._release(discard=True)

    def _release(self, *, discard: bool) -> None:
        self._closed = True
        backend = getattr(self, "_backend", None)
        if backend is not None:
            with contextlib.suppress(OSError):
                if discard:
                    backend.discard()
                backend.close()
        source = getattr(self, "_source", None)
        if source is not None:
            with contextlib.suppress(OSError):
                source.close()
            self._source = None
        fd = getattr(self, "_lock_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
            self._lock_fd = None
        updir = getattr(self, "_upload_dir", None)
        if updir is not None:
            shutil.rmtree(updir, ignore_errors=True)
            self._upload_dir = None

    def discard(self) -> None:
        """Abandon a mode-``"w"`` archive: nothing is written, an existing file stays."""
        self._release(discard=True)

    def __enter__(self) -> MaskArchive:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None and self.mode == "w":
            self.discard()
        else:
            self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            if self.mode == "w":
                warnings.warn(
                    f"MaskArchive({str(self.path)!r}, 'w') was never closed; nothing was written. "
                    "Use a with-block or call close().",
                    ResourceWarning,
                    stacklevel=2,
                )
            self._release(discard=True)

    def __getstate__(self) -> dict:
        raise TypeError(
            "MaskArchive holds an open file and cannot be pickled; pass the path instead "
            "(medmask_monai.MaskArchiveDataset opens archives lazily in each worker)"
        )

    def _repr_html_(self) -> str:
        """A table of the masks (voxels, mL, bounding boxes) and a thumbnail, for notebooks
        (:func:`medmask.viz.archive_html` draws it: an upward call, see
        :mod:`medmask._upcalls`). Reads the index; the thumbnail decodes a bounded number of
        box voxels."""
        if self._closed:
            return f"<div>{html.escape(repr(self))}</div>"
        return upcall(MaskArchive, "_repr_html_")(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self)} masks"
        if not self._closed and self._backend.archive_attrs:
            state += f", archive attrs {sorted(self._backend.archive_attrs)}"
        return f"MaskArchive({str(self.path)!r}, mode={self.mode!r}, v{self.version}, {state})"
