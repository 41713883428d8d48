"""MaskArchive: many masks of one case in a ``.mska``.

Format versions live behind :class:`medmask.format.backend.ArchiveBackend`; this module
keeps what does not depend on them: locking, the handle's lifecycle, names and positions,
URLs (read through :func:`medmask.io.source.open_source`, written through a local
temporary file and :func:`medmask.io.remote.upload`) and conversion to
:class:`~medmask.SegmentationMask`.

The module is longer than most (about 800 lines) because ``MaskArchive`` is the public face
of the archive: most of it is the docstrings of its methods and the checks of what callers
pass; its methods share one lock and one name index. Everything about bytes lives in
:mod:`medmask.format`.
"""

from __future__ import annotations

import contextlib
import copy
import html
import io
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..attrs import validate_attrs
from ..codecs import DTYPE_NAMES, Codec, get_codec
from ..errors import (
    CorruptFileError,
    MaskNotFoundError,
    MaskValidationError,
    close_matches,
)
from ..format import (
    archive_backend,
    codec_version,
    open_archive,
    sniff,
)
from ..format._io import BBox, open_locked
from ..format.backend import ArchiveBackend, Prepared
from ..format.base import Entry
from ..format.v2 import COMPAT_MINOR
from ..io.names import is_url
from ..io.source import ByteSource, LocalFileSource
from ..io.target import open_source
from ..mapping import LabelMapping
from ..segmask import SegmentationMask
from ..spaces import Space, check_same_grid
from ._common import (
    MaskInfo,
    PathLike,
    StorageOptions,
    _refuse_foreign_name,
    _target,
)

__all__ = ["MaskArchive", "PreparedMask"]


class PreparedMask:
    """A mask made ready by :meth:`MaskArchive.prepare` (checked and encoded), waiting to
    be stored with :meth:`MaskArchive.add`.

    Attributes:
        name: The name it was prepared under.
        space: Its grid.
    """

    __slots__ = ("name", "space", "_owner", "_prepared")

    def __init__(self, name: str, space: Space, owner: object, prepared: Prepared) -> None:
        self.name, self.space, self._owner, self._prepared = name, space, owner, prepared

    def __repr__(self) -> str:
        return f"PreparedMask({self.name!r})"


class MaskArchive:
    """Many masks of one case in a ``.mska`` file, with random access by name or position.

    All masks share the archive's space. The index is read once when the archive
    is opened; lookups by name or position are O(1) and decode only that mask.

    Args:
        path: The archive: a local path, or a URL (``s3://``, ``gs://``, ``az://``,
            ``http(s)://``, ``file://``, ``memory://``) read with byte-range requests.
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
        compat: ``None`` (default: the current layout, format 2.2, which stores each
            mask's centroid and attributes), ``"0.3"``: format 2.1, readable by medmask
            0.3.0 (the same information in a slower index), or ``"0.2"``: format 2.0,
            readable by medmask 0.2.0, without centroids or attributes (attributes are
            then refused). ``"0.1"`` is the same as ``codec="zstd"`` (version 1).
            Applies to new files; appending keeps the existing file's layout.
        storage_options: For a URL: options of its fsspec filesystem (credentials,
            endpoint...); fsspec's configuration and environment variables apply too.

    Raises:
        FileNotFoundError: Mode ``"r"`` and the file does not exist.
        CorruptFileError: The file is damaged (the message names file, mask, field).
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
        path: PathLike,
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
        if compat not in (None, *COMPAT_MINOR, "0.1"):
            raise MaskValidationError(
                f"compat must be None (current layout), '0.3', '0.2' or '0.1', got {compat!r}"
            )
        if compat == "0.1":
            if codec is not None and codec_version(get_codec(codec)) != 1:
                raise MaskValidationError("compat='0.1' writes version 1: leave codec= out")
            codec = "zstd"
        if space is not None and not isinstance(space, Space):
            raise MaskValidationError(
                f"space must be a spacetransformer.Space, got {type(space).__name__}"
            )
        self.path = _target(path)
        self.mode = mode
        self.storage_options = dict(storage_options or {})
        self._url = is_url(self.path)
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
        self._minor = COMPAT_MINOR.get(compat)  # None: the newest layout
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
        self._source = open_source(self.path, storage_options=self.storage_options)
        self._backend = open_archive(self._source)

    def _open_write(self, space: Space | None) -> None:
        local = self.path
        if self._url:
            self._upload_dir = Path(tempfile.mkdtemp(prefix="medmask-upload-"))
            local = self._upload_dir / "archive.mska"
        elif local.exists():  # refuse to replace an archive another process is appending to
            self._lock_fd = open_locked(local, os.O_RDONLY)
        cls = archive_backend(codec_version(self._codec))
        self._backend = cls.create(local, space=space, minor=self._minor)

    def _open_append(self, space: Space | None) -> None:
        if not self.path.exists():
            codec = self._codec or get_codec(None)
            cls = archive_backend(codec_version(codec))
            pending = cls.create_missing(self.path, space=space, minor=self._minor)
            if pending is not None:  # created by its first commit
                self._backend = pending
                return
        fd = self._lock_fd = open_locked(self.path, os.O_RDWR | getattr(os, "O_BINARY", 0))
        source = LocalFileSource(self.path, fd=fd, own_fd=False)
        _kind, major = sniff(source)
        if self._codec is not None and codec_version(self._codec) != major:
            raise MaskValidationError(
                f"{self.path} is a version-{major} archive; codec {self._codec.name!r} writes "
                f"version {codec_version(self._codec)} (use 'medmask convert' to change versions)"
            )
        self._backend = open_archive(source, fd=fd)
        if space is not None and self._backend.space is not None:
            check_same_grid(self._backend.space, space, what=f"space= given for {self.path}")

    def _reindex(self) -> None:
        self._by_name = {n: i for i, n in enumerate(self._backend.names)}

    # -- properties --------------------------------------------------------------------
    @property
    def _entries(self):
        """The backend's entries (kept for code written against medmask 0.2; use :meth:`infos`)."""
        return self._backend.entries

    @property
    def space(self) -> Space | None:
        """The archive's ``(z, y, x)`` space (``None`` for a new archive with no mask yet)."""
        return self._backend.space

    @property
    def version(self) -> int:
        """Format major version of the file (1 or 2)."""
        return self._backend.version

    @property
    def minor_version(self) -> int:
        """Format minor version of the file (2.1 stores per-mask extras; 0 otherwise)."""
        return self._backend.minor

    @property
    def supports_attrs(self) -> bool:
        """Whether masks stored in this archive can carry attributes (format 2.1)."""
        return self._backend.supports_attrs

    @property
    def generation(self) -> int | None:
        """Commit generation of the state this handle sees (version 2; ``None`` for version 1)."""
        self._check_open()
        return self._backend.generation

    @property
    def index_segments(self) -> int | None:
        """Number of index segments of the commit this handle sees (version 2; ``None`` for 1)."""
        self._check_open()
        return self._backend.index_segments

    @property
    def end_offset(self) -> int | None:
        """Logical end of the committed archive in bytes (version 2: bytes beyond it are
        garbage of an interrupted append; ``None`` for version 1)."""
        self._check_open()
        return self._backend.end_offset

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

    # -- writing -----------------------------------------------------------------------
    def _check_writable(self) -> None:
        self._check_open()
        if self.mode == "r":
            raise io.UnsupportedOperation(f"{self.path}: opened read-only (mode 'r'); use mode 'a'")

    def _commit(self) -> None:
        """Make staged changes durable (mode ``"a"``); keep the lock on the file that is now
        at the path when the backend replaced the file."""
        new_fd = self._backend.commit()
        if new_fd is not None:
            old, self._lock_fd = self._lock_fd, new_fd
            if old is not None:
                os.close(old)

    def _change(self, stage: Callable[[], object]) -> None:
        """Run one staged change and, in mode ``"a"``, commit it; on failure the handle
        goes back to the committed state (except a commit whose slot was written: it
        stands, and the names follow the backend)."""
        try:
            stage()
            if self.mode == "a":
                self._commit()
        except BaseException:
            if self.mode == "a":
                self._backend.rollback()
            self._reindex()
            raise

    def _coerce(self, segmask: object, what: str) -> SegmentationMask:
        if not isinstance(segmask, SegmentationMask):
            raise MaskValidationError(
                f"{what} expects a SegmentationMask, got {type(segmask).__name__}"
            )
        return segmask

    def _check_grid(self, segmask: SegmentationMask, name: str) -> None:
        if self.space is not None:
            check_same_grid(self.space, segmask.space, what=f"{self.path}: mask {name!r}")

    def _check_attrs(self, attrs: Mapping[str, Any] | None, name: str) -> dict:
        attrs = validate_attrs(attrs, mask=name)
        if attrs and not self.supports_attrs:
            raise MaskValidationError(
                f"this archive is format "
                f"{self.version}.{self.minor_version}, which cannot hold attributes (version-1 "
                "and medmask 0.2.0 layouts); write a new archive without compat= / codec= "
                "('medmask convert' upgrades an existing one)",
                path=self.path,
                mask=name,
            )
        return attrs

    def add_segmask(
        self,
        segmask: SegmentationMask,
        name: str,
        *,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Store ``segmask`` under ``name``.

        In mode ``"a"`` the mask is durable when this returns; in mode ``"w"`` it
        becomes visible when the archive is closed.

        Args:
            segmask: The mask; its space must match the archive's (tolerance
                :data:`medmask.spaces.GRID_ATOL`).
            name: A unique, non-empty name.
            attrs: The mask's attributes (colour, description, coded terminology, ...;
                see :mod:`medmask.attrs`). Needs format 2.1 (the default for new
                archives); version-1 and format-2.0 archives refuse them.

        Raises:
            MaskValidationError: Bad name, duplicate name, not a SegmentationMask, bad
                attributes or attributes the archive's format cannot hold.
            SpaceMismatchError: The mask's grid differs from the archive's (the message
                says what differs, with both values).
            io.UnsupportedOperation: The archive was opened read-only.
            OSError: The write failed; the archive is left as it was.
        """
        self._check_writable()
        segmask = self._coerce(segmask, "add_segmask")
        if not isinstance(name, str) or not name or "\0" in name:
            raise MaskValidationError(
                f"mask name must be a non-empty string without NUL, got {name!r}"
            )
        attrs = self._check_attrs(attrs, name)
        with self._lock:
            if name in self._by_name:
                raise MaskValidationError(
                    f"a mask named {name!r} is already stored", path=self.path
                )
            self._check_grid(segmask, name)
            b = self._backend

            def stage() -> None:
                if b.space is None:
                    b.set_space(segmask.space)
                b.stage(name, segmask.data, segmask.mapping, self._write_codec(), attrs)

            self._change(stage)
            self._by_name[name] = len(b.names) - 1

    def prepare(
        self,
        name: str,
        mask: SegmentationMask | np.ndarray,
        *,
        attrs: Mapping[str, Any] | None = None,
        origin: tuple[int, int, int] | None = None,
    ) -> PreparedMask:
        """Check and encode a mask for :meth:`add` without storing it.

        Encoding (cropping to the bounding box, bit-packing, compressing) is most of the
        work of :meth:`add`; it reads nothing that storing changes, so several threads may
        prepare masks at once while one thread stores the prepared ones, in the order it
        chooses (``add(name, prepared)``).

        Args:
            name: The name it will be stored under.
            mask: A :class:`~medmask.SegmentationMask` or an array, as for :meth:`add`;
                with ``origin``, a boolean array holding the box of the grid that holds
                every voxel of the mask.
            attrs: The mask's attributes (see :meth:`add_segmask`).
            origin: ``(z0, y0, x0)``: where the box ``mask`` lies on the archive's grid
                (the archive needs a space).

        Returns:
            A :class:`PreparedMask` for :meth:`add` on this archive.

        Raises:
            MaskValidationError: As :meth:`add`; a box without a space, not boolean, or
                outside the grid.
            SpaceMismatchError: The mask's grid differs from the archive's.
            io.UnsupportedOperation: The archive was opened read-only.
        """
        self._check_writable()
        if not isinstance(name, str) or not name or "\0" in name:
            raise MaskValidationError(
                f"mask name must be a non-empty string without NUL, got {name!r}"
            )
        attrs = self._check_attrs(attrs, name)
        if origin is None:
            seg = mask if isinstance(mask, SegmentationMask) else self._as_segmask(name, mask)
            self._check_grid(seg, name)
            data, mapping, space = seg.data, seg.mapping, seg.space
        else:
            data, space = self._box(name, mask, origin), self.space
            mapping = LabelMapping({name: 1})
        prepared = self._backend.prepare(name, data, mapping, self._write_codec(), attrs, origin)
        return PreparedMask(name, space, self, prepared)

    def _box(self, name: str, box: object, origin: tuple[int, int, int]) -> np.ndarray:
        """A boolean box that fits the archive's grid at ``origin``.

        Raises:
            MaskValidationError: No space yet, not a 3-D boolean array, or outside the grid.
        """
        if self.space is None:
            raise MaskValidationError(
                "a box needs the archive's grid: pass space= when creating the archive",
                path=self.path,
            )
        shape = tuple(int(v) for v in self.space.shape)
        if not isinstance(box, np.ndarray) or box.dtype != np.bool_ or box.ndim != 3:
            raise MaskValidationError(f"mask {name!r}: a box is a 3-D boolean array")
        if len(origin) != 3 or any(
            int(o) < 0 or int(o) + n > s for o, n, s in zip(origin, box.shape, shape, strict=True)
        ):
            raise MaskValidationError(
                f"mask {name!r}: a box of {box.shape} at {tuple(origin)} does not fit the "
                f"grid {shape}",
                path=self.path,
            )
        return box

    def _add_prepared(self, name: str, ready: PreparedMask) -> None:
        """Store a mask made ready by :meth:`prepare`."""
        if ready._owner is not self or ready.name != name:
            raise MaskValidationError(
                f"mask {name!r}: prepared for {ready.name!r} by another archive or name; "
                "prepare it with this archive's prepare() under this name"
            )
        with self._lock:
            if name in self._by_name:
                raise MaskValidationError(
                    f"a mask named {name!r} is already stored", path=self.path
                )
            if self.space is not None:
                check_same_grid(self.space, ready.space, what=f"{self.path}: mask {name!r}")
            b = self._backend

            def stage() -> None:
                if b.space is None:
                    b.set_space(ready.space)
                b.stage_prepared(ready._prepared)

            self._change(stage)
            self._by_name[name] = len(b.names) - 1

    def _write_codec(self) -> Codec:
        return self._codec or get_codec(self._backend.default_codec)

    def _as_segmask(
        self,
        name: str,
        data: SegmentationMask | np.ndarray,
        *,
        label: int = 1,
        mapping: Mapping[str, int] | None = None,
    ) -> SegmentationMask:
        """A SegmentationMask of ``data`` on the archive's space (arrays: see :meth:`add`)."""
        if isinstance(data, SegmentationMask):
            if mapping is not None:
                raise MaskValidationError("mapping= applies to arrays; a SegmentationMask has one")
            return data
        if not isinstance(data, np.ndarray):
            raise MaskValidationError(
                f"mask {name!r}: expected a numpy array or a SegmentationMask, "
                f"got {type(data).__name__}"
            )
        space = self.space
        if space is None:
            raise MaskValidationError(
                "the archive has no space yet, so an array has no grid; pass "
                "space= when creating the archive, or add a SegmentationMask first",
                path=self.path,
            )
        shape = tuple(int(s) for s in space.shape)
        if data.shape != shape:
            raise MaskValidationError(
                f"mask {name!r} has shape {data.shape}, but the archive's grid is "
                f"{shape} (z, y, x); transpose (x, y, z) arrays with array.transpose(2, 1, 0)",
                path=self.path,
            )
        if mapping is not None:
            return SegmentationMask(data, dict(mapping), space)
        if isinstance(label, bool) or not isinstance(label, int | np.integer) or label <= 0:
            raise MaskValidationError(f"label must be a positive integer, got {label!r}")
        if data.dtype != np.bool_:
            if not np.issubdtype(data.dtype, np.integer):
                raise MaskValidationError(
                    f"mask {name!r}: dtype {data.dtype} is not a mask dtype; give a boolean or "
                    "integer array"
                )
            values = np.unique(data)
            if not set(values.tolist()) <= {0, 1}:
                shown = ", ".join(map(str, values[:8].tolist()))
                raise MaskValidationError(
                    f"mask {name!r} holds the values {shown}{' ...' if values.size > 8 else ''}: "
                    "a label map needs mapping={name: label, ...}; a binary mask holds only 0 "
                    "and 1 (or is boolean)"
                )
            data = data.astype(bool)
        if label == 1:
            return SegmentationMask(data, {name: 1}, space)
        dtype = np.uint8 if label < 256 else (np.uint16 if label < 65536 else np.uint32)
        return SegmentationMask(data.astype(dtype) * dtype(label), {name: int(label)}, space)

    def add(
        self,
        name: str,
        array: np.ndarray | PreparedMask,
        *,
        label: int = 1,
        mapping: Mapping[str, int] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Store a plain ``(z, y, x)`` array on the archive's grid under ``name``.

        A boolean array, or one holding only 0 and 1, is stored as the binary mask
        ``{name: label}`` (label 1 by default); a label map needs ``mapping``.

        Args:
            name: A unique, non-empty name.
            array: The mask, with the archive space's shape, or a :class:`PreparedMask`
                from this archive's :meth:`prepare` under ``name`` (then the other
                arguments are not used: they were given to ``prepare``).
            label: The label of a binary mask.
            mapping: ``{name: label}`` of a label map (then ``label`` is ignored).
            attrs: The mask's attributes (see :meth:`add_segmask`).

        Raises:
            MaskValidationError: No space yet (pass ``space=`` when creating the archive),
                another shape, a label map without ``mapping``, a bad name or attributes.
            io.UnsupportedOperation: The archive was opened read-only.
        """
        self._check_writable()
        if isinstance(array, PreparedMask):
            self._add_prepared(name, array)
            return
        seg = self._as_segmask(name, array, label=label, mapping=mapping)
        self.add_segmask(seg, name, attrs=attrs)

    def delete(self, name: str | int) -> None:
        """Remove one mask (mode ``"a"``: durable when this returns; ``"w"``: from the
        masks still to be written).

        The removal is one crash-safe commit; the mask's bytes stay in the file until
        ``medmask convert`` compacts it.

        Args:
            name: The mask's name or position.

        Raises:
            MaskNotFoundError: No such mask.
            io.UnsupportedOperation: The archive was opened read-only.
            OSError: The commit failed; the archive is left as it was.
        """
        self._check_writable()
        with self._lock:
            i, _entry = self._entry(name)
            self._change(lambda: self._backend.stage_delete(i))
            self._reindex()

    def __delitem__(self, name: str | int) -> None:
        self.delete(name)

    def replace(
        self,
        name: str | int,
        mask: SegmentationMask | np.ndarray,
        *,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Replace one mask's data, keeping its name and position.

        Args:
            name: The mask's name or position.
            mask: A SegmentationMask on the archive's grid, or an array (as for
                :meth:`add`: boolean or 0/1, stored as ``{name: 1}``).
            attrs: New attributes; ``None`` keeps the mask's current ones, ``{}`` clears them.

        Raises:
            MaskNotFoundError: No such mask.
            MaskValidationError: Not a mask, another shape, bad attributes.
            SpaceMismatchError: Another grid.
            io.UnsupportedOperation: The archive was opened read-only.
            OSError: The commit failed; the archive is left as it was.
        """
        self._check_writable()
        with self._lock:
            i, entry = self._entry(name)
            seg = self._as_segmask(entry.name, mask)
            self._check_grid(seg, entry.name)
            keep = attrs is None
            new_attrs = dict(entry.attrs) if keep else self._check_attrs(attrs, entry.name)
            codec = self._write_codec()
            self._change(
                lambda: self._backend.stage_replace(i, seg.data, seg.mapping, codec, new_attrs)
            )
            self._reindex()

    def set_attrs(self, name: str | int, attrs: Mapping[str, Any]) -> None:
        """Replace one mask's attributes (format 2.1; the data is not rewritten).

        Args:
            name: The mask's name or position.
            attrs: The new attributes (``{}`` clears them).

        Raises:
            MaskNotFoundError: No such mask.
            MaskValidationError: Bad attributes, or a format that cannot hold them.
            io.UnsupportedOperation: The archive was opened read-only.
        """
        self._check_writable()
        with self._lock:
            i, entry = self._entry(name)
            new_attrs = self._check_attrs(attrs, entry.name)
            self._change(lambda: self._backend.stage_attrs(i, new_attrs))
            self._reindex()

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

    def read_array(self, key: str | int) -> np.ndarray:
        """The full-volume ``(z, y, x)`` array of one mask (a new, writable array).

        Raises:
            MaskNotFoundError: No such mask.
            CorruptFileError: Its blob is damaged.
        """
        _, entry = self._entry(key)
        return self._backend.read_full(entry)

    def read_cropped(self, key: str | int) -> tuple[np.ndarray, BBox | None]:
        """One mask's bounding-box region without expanding it to the full volume.

        Work is proportional to the box (version 2). For version 1 the full volume
        is decoded and then cropped.

        Returns:
            ``(array, bbox)`` with ``bbox = (z0, z1, y0, y1, x0, x1)`` half-open;
            ``(empty (0,0,0) array, None)`` for an empty mask.
        """
        _, entry = self._entry(key)
        return self._backend.read_cropped(entry)

    def _segmask(self, entry: Entry, array: np.ndarray) -> SegmentationMask:
        try:
            return SegmentationMask(array, entry.mapping(self.path), self.space, copy=False)
        except MaskValidationError as exc:  # stored parts that do not fit together
            raise CorruptFileError(
                str(exc), path=self.path, mask=entry.name, field="mapping"
            ) from exc

    def load_segmask(self, name: str | int) -> SegmentationMask:
        """Read one mask by name (or position).

        Raises:
            MaskNotFoundError: No such name (close matches are suggested) or position.
            CorruptFileError: Its blob is damaged.
        """
        _, entry = self._entry(name)
        return self._segmask(entry, self._backend.read_full(entry))

    def info(self, key: str | int) -> MaskInfo:
        """Index facts about one mask (no decoding).

        Args:
            key: The mask's name or position.

        Returns:
            A :class:`MaskInfo`; ``centroid`` is ``None`` where the file does not store
            it (version 1, format 2.0), ``attrs`` ``{}`` when none.

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

    def read_all_mapping(self) -> dict[str, LabelMapping]:
        """``{mask name: its LabelMapping}`` for every mask, in archive order."""
        self._check_open()
        return {e.name: e.mapping(self.path).copy() for e in self._backend.entries}

    def read_all_masks(self) -> dict[str, SegmentationMask]:
        """Every mask, ``{name: SegmentationMask}`` in archive order.

        The blobs are read together (one coalesced series of range reads for a URL).

        Raises:
            CorruptFileError: A blob is damaged.
        """
        self._check_open()
        entries = list(self._backend.entries)
        arrays = self._backend.read_many_full(entries)
        return {e.name: self._segmask(e, a) for e, a in zip(entries, arrays, strict=True)}

    def refresh(self) -> None:
        """Re-open the archive at its path (mode ``"r"``): see what was committed since
        opening, also when the file was replaced (mode ``"w"``, version-1 edits) or, for a
        URL, when the object was replaced.
        """
        self._check_open()
        if self.mode != "r":
            return
        source = open_source(self.path, storage_options=self.storage_options)
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

    def __getitem__(self, key: str | int) -> SegmentationMask:
        return self.load_segmask(key)

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
                    from ..io.remote import upload

                    upload(
                        self._upload_dir / "archive.mska",
                        self.path,
                        storage_options=self.storage_options,
                    )
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
        """A table of the masks (voxels, mL, bounding boxes) and a thumbnail, for notebooks.

        Reads the index; the thumbnail decodes a bounded number of box voxels.
        """
        if self._closed:
            return f"<div>{html.escape(repr(self))}</div>"
        from ..viz import archive_html

        return archive_html(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self)} masks"
        return f"MaskArchive({str(self.path)!r}, mode={self.mode!r}, v{self.version}, {state})"
