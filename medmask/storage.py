"""MaskFile (``.msk``), MaskArchive (``.mska``), save_mask and load_mask."""

from __future__ import annotations

import contextlib
import copy
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .attrs import validate_attrs
from .codecs import Codec, get_codec
from .errors import (
    ArchiveLockedError,
    CorruptFileError,
    MaskNotFoundError,
    MaskValidationError,
    close_matches,
)
from .format import Entry, bbox_slices, open_archive, read_msk, read_msk_record, sniff, v1, v2
from .format._io import (
    BBox,
    atomic_temp,
    crop_to_bbox,
    fsync_dir,
    lock_exclusive,
    make_temp,
    open_locked,
    pread_exact,
)
from .mapping import LabelMapping
from .segmask import SegmentationMask
from .spaces import Space, check_same_grid

__all__ = ["MaskFile", "MaskArchive", "MaskInfo", "save_mask", "load_mask"]

PathLike = str | os.PathLike


@dataclass(frozen=True)
class MaskInfo:
    """What an archive's index says about one mask, without decoding it.

    Attributes:
        name: The mask's name.
        index: Its position in the archive.
        mapping: Its ``{name: label}`` mapping.
        dtype: Its dtype name (``None`` for version 1 until decoded).
        bbox: Half-open ``(z0, z1, y0, y1, x0, x1)`` box of the non-zero voxels
            (version 2; ``None`` when empty or for version 1).
        voxels: Number of non-zero voxels (version 2; ``None`` for version 1).
        nbytes: Bytes the mask occupies in the file.
        centroid: Mean ``(z, y, x)`` voxel index of the non-zero voxels, as stored at
            write time (format 2.1); ``None`` when the mask is empty or the file does
            not record it (version 1, files of medmask 0.2.0).
        attrs: The mask's stored attributes (colour, coded terminology, description,
            ...; see :mod:`medmask.attrs`); ``{}`` when none.
    """

    name: str
    index: int
    mapping: dict[str, int]
    dtype: str | None
    bbox: BBox | None
    voxels: int | None
    nbytes: int
    centroid: tuple[float, float, float] | None = None
    attrs: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
class MaskFile:
    """One mask in a ``.msk`` file.

    Args:
        path: The file.
        mode: ``"r"`` to read, ``"w"`` to write (the file is replaced atomically).
        codec: For writing: ``None``/``"bitzstd"`` (version 2) or ``"zstd"`` (version 1).

    Example:
        >>> with MaskFile("liver.msk", "w") as f:          # doctest: +SKIP
        ...     f.write(segmask)
        >>> segmask = MaskFile("liver.msk").read()          # doctest: +SKIP
    """

    def __init__(
        self, path: PathLike, mode: str = "r", *, codec: str | Codec | None = None
    ) -> None:
        if mode not in ("r", "w"):
            raise ValueError(f"MaskFile mode must be 'r' or 'w', got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self.codec = get_codec(codec)
        if mode == "r" and not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such mask file")

    def read(self) -> SegmentationMask:
        """Read the mask.

        Raises:
            CorruptFileError: The file is damaged or not a ``.msk``.
        """
        return SegmentationMask.load(self.path)

    def read_cropped(self) -> tuple[np.ndarray, BBox | None, LabelMapping, Space]:
        """The stored bounding-box region without expanding it to the full volume.

        Returns:
            ``(array, bbox, mapping, space)``; for an empty mask ``bbox`` is None
            and ``array`` has shape ``(0, 0, 0)``.
        """
        array, mapping, space, bbox, _ = read_msk(self.path, cropped=True)
        return array, bbox, mapping, space

    def info(self) -> MaskInfo:
        """What the file says about its mask (decodes only the bounding-box region).

        Returns:
            A :class:`MaskInfo` (``index`` 0; ``name`` the file name's stem).

        Raises:
            CorruptFileError: The file is damaged or not a ``.msk``.
        """
        r = read_msk_record(self.path, cropped=True)
        nbytes = self.path.stat().st_size
        return MaskInfo(
            self.path.name.removesuffix(".msk"),
            0,
            r.mapping.to_dict(),
            "bool" if r.array.dtype == np.bool_ else r.array.dtype.name,
            r.bbox,
            r.voxels,
            nbytes,
            r.centroid if r.centroid is not None else _centroid_of_crop(r.array, r.bbox),
            r.attrs,
        )

    def write(self, segmask: SegmentationMask, *, attrs: dict | None = None) -> None:
        """Write ``segmask`` (atomically: readers see the old file or the new one).

        Args:
            segmask: The mask.
            attrs: Attributes to store with it (see :mod:`medmask.attrs`; version 2 only).
                Without attributes the file is readable by medmask 0.2.0; with them it
                is format 2.1.

        Raises:
            MaskValidationError: Not a SegmentationMask, bad attributes, or attributes
                with a version-1 codec.
            io.UnsupportedOperation: The file was opened with mode ``"r"``.
        """
        if self.mode != "w":
            import io

            raise io.UnsupportedOperation(f"{self.path}: opened read-only (mode 'r')")
        if not isinstance(segmask, SegmentationMask):
            raise MaskValidationError(f"expected a SegmentationMask, got {type(segmask).__name__}")
        segmask.save(self.path, codec=self.codec, attrs=attrs)

    def close(self) -> None:
        """Nothing to release (each call opens and closes the file); kept for symmetry."""

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
    attrs: dict | None = None,
) -> None:
    """Write one mask to a ``.msk`` file (atomically).

    Args:
        segmask: The mask.
        path: Destination.
        codec: ``None``/``"bitzstd"`` (version 2, default) or ``"zstd"`` (version 1).
        attrs: Attributes to store with the mask (version 2 only; see :mod:`medmask.attrs`).

    Raises:
        MaskValidationError: Not a SegmentationMask, or bad attributes.
    """
    MaskFile(path, "w", codec=codec).write(segmask, attrs=attrs)


def _centroid_of_crop(crop: np.ndarray, bbox: BBox | None) -> tuple[float, float, float] | None:
    from .attrs import centroid_of

    if bbox is None:
        return None
    return centroid_of(crop, (bbox[0], bbox[2], bbox[4]))[1]


def load_mask(path: PathLike, *, codec: str | Codec | None = None) -> SegmentationMask:
    """Read a ``.msk`` file of any supported version.

    Args:
        path: The file.
        codec: Accepted for compatibility with medmask 0.1.x and ignored: the
            file's header names its codec.
    """
    return MaskFile(path, "r").read()


# --------------------------------------------------------------------------------------------
class _V1Backend:
    """Version-1 archive held as blobs; the whole file is rewritten (atomically) on flush."""

    version = 1

    def __init__(self, path: Path, space: Space | None, items: list | None = None) -> None:
        self.path = path
        self.space = space
        self.items: list[tuple[str, bytes, dict[str, int]]] = items or []
        self.codec = v1.ZstdCodec()
        # for version 1 in memory, Entry.offset is the position in ``items``
        self.entries = [
            Entry(n, m, k, len(b), self.codec) for k, (n, b, m) in enumerate(self.items)
        ]

    @classmethod
    def load(cls, fd: int, path: Path) -> _V1Backend:
        reader = open_archive(fd, path)
        assert reader.version == 1
        items = [
            (
                e.name,
                pread_exact(fd, e.offset, e.length, path=path, field="data", mask=e.name),
                e.raw_mapping,
            )
            for e in reader.entries
        ]
        for e in reader.entries:
            e.mapping(path)  # validate before we rewrite anything
        return cls(path, reader.space, items)

    def stage(self, name: str, array: np.ndarray, mapping: LabelMapping, space: Space) -> None:
        if self.space is None:
            self.space = space
        blob = self.codec.encode(array)
        self.items.append((name, blob, mapping.to_dict()))
        self.entries.append(
            Entry(name, mapping.to_dict(), len(self.items) - 1, len(blob), self.codec)
        )

    def rollback(self, count: int) -> None:
        del self.items[count:]
        del self.entries[count:]

    def flush(self, target: Path, *, keep_lock: bool = False, replace: bool = True) -> int | None:
        """Rewrite the archive (temporary sibling renamed over ``target``).

        With ``keep_lock`` the new file is locked *before* it is renamed into place and the
        locked descriptor is returned (reliability fix: locking it after the rename left a
        moment in which another writer could open and lock the new file, read it, and later
        rename its own copy over ours, losing our masks).
        """
        if self.space is None:
            raise MaskValidationError(
                f"{target}: a version-1 archive needs a space; pass space= or add a mask"
            )
        data = v1.build_mska(self.space, self.items)
        lock_fd = None
        try:
            with atomic_temp(target, replace=replace) as (fh, tmp):
                fh.write(data)
                if keep_lock:
                    lock_fd = os.open(tmp, os.O_RDWR)
                    lock_exclusive(lock_fd, target)  # nobody else can know this file yet
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return lock_fd

    def read_box(self, entry: Entry) -> np.ndarray:
        return self.codec.decode(
            self.items[entry.offset][1],
            shape=tuple(self.space.shape),
            path=self.path,
            mask=entry.name,
        )


class MaskArchive:
    """Many masks of one case in a ``.mska`` file, with random access by name or position.

    All masks share the archive's space. The index is read once when the archive
    is opened; lookups by name or position are O(1) and decode only that mask.

    Args:
        path: The archive.
        mode: ``"r"`` read; ``"w"`` create or replace (the new archive appears
            atomically at :meth:`close`; on an exception inside a ``with`` block
            nothing is written); ``"a"`` append, creating the file if missing
            (every :meth:`add_segmask` is committed durably before it returns).
        space: The ``(z, y, x)`` space for a new archive (default: that of the
            first mask added).
        codec: ``None``/``"bitzstd"`` for version 2 (default for new archives),
            ``"zstd"`` for version 1 (readable by medmask 0.1.x). When appending, the
            existing file's version is kept; a contradicting codec raises.
        compat: ``None`` (default: the current layout, format 2.1, which stores each
            mask's centroid and attributes) or ``"0.2"``: format 2.0, readable by
            medmask 0.2.0, without extras (attributes are then refused). ``"0.1"`` is
            the same as ``codec="zstd"`` (version 1). Applies to new files; appending
            keeps the existing file's layout.

    Raises:
        FileNotFoundError: Mode ``"r"`` and the file does not exist.
        CorruptFileError: The file is damaged (the message names file, mask, field).
        UnsupportedFormatError: A format version or codec this release does not read.
        ArchiveLockedError: Another writer holds the archive (modes ``"w"``/``"a"``).

    Example:
        >>> with MaskArchive("case.mska", "w") as ar:         # doctest: +SKIP
        ...     ar.add_segmask(liver, "liver")
        >>> with MaskArchive("case.mska") as ar:              # doctest: +SKIP
        ...     liver = ar["liver"]; first = ar[0]; names = ar.all_names()
    """

    def __init__(
        self,
        path: PathLike,
        mode: str = "r",
        *,
        space: Space | None = None,
        codec: str | Codec | None = None,
        compat: str | None = None,
    ) -> None:
        if mode not in ("r", "w", "a"):
            raise ValueError(f"MaskArchive mode must be 'r', 'w' or 'a', got {mode!r}")
        if compat not in (None, "0.2", "0.1"):
            raise MaskValidationError(
                f"compat must be None (current layout), '0.2' or '0.1', got {compat!r}"
            )
        if compat == "0.1":
            if codec is not None and get_codec(codec).format_version != 1:
                raise MaskValidationError("compat='0.1' writes version 1: leave codec= out")
            codec = "zstd"
        self._minor = 0 if compat == "0.2" else v2.MINOR
        self.path = Path(path)
        self.mode = mode
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._tmp: Path | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._backend: v1.MskaV1Reader | v2.MskaV2 | _V1Backend
        if space is not None and not isinstance(space, Space):
            raise MaskValidationError(
                f"space must be a spacetransformer.Space, got {type(space).__name__}"
            )
        self._codec = get_codec(codec) if (codec is not None or mode == "w") else None
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
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        self._backend = open_archive(self._fd, self.path)

    def _open_write(self, space: Space | None) -> None:
        if self.path.exists():  # refuse to replace an archive another process is appending to
            self._lock_fd = open_locked(self.path, os.O_RDONLY)
        if self._codec.format_version == 1:
            self._backend = _V1Backend(self.path, space)
            return
        fd, tmp = make_temp(self.path)
        self._fd, self._tmp = fd, Path(tmp)
        self._backend = v2.MskaV2.create(fd, self.path, fsync=False, minor=self._minor)
        if space is not None:
            self._backend._pending_space = space

    def _open_append(self, space: Space | None) -> None:
        if not self.path.exists():
            codec = self._codec or get_codec(None)
            if codec.format_version == 1:
                # created at the first flush (a version-1 file cannot exist without a space)
                self._backend = _V1Backend(self.path, space)
                if space is not None:
                    self._flush_v1()
                return
            # replace=False: if another writer created it meanwhile, open and lock theirs
            with contextlib.suppress(FileExistsError):  # noqa: SIM117 - the link may raise it
                with atomic_temp(self.path, replace=False) as (fh, tmp):
                    new = v2.MskaV2.create(fh.fileno(), tmp, fsync=False, minor=self._minor)
                    new._pending_space = space
                    new.commit()
        self._fd = open_locked(self.path, os.O_RDWR | getattr(os, "O_BINARY", 0))
        _kind, major = sniff(self._fd, self.path)
        if self._codec is not None and self._codec.format_version != major:
            raise MaskValidationError(
                f"{self.path} is a version-{major} archive; codec {self._codec.name!r} writes "
                f"version {self._codec.format_version} (use 'medmask convert' to change versions)"
            )
        if major == 1:
            self._backend = _V1Backend.load(self._fd, self.path)
            self._lock_fd, self._fd = self._fd, None
        else:
            self._backend = v2.MskaV2.open(self._fd, self.path)
            size = os.fstat(self._fd).st_size
            if size > self._backend.end:  # bytes of an interrupted append: unreferenced, drop them
                os.ftruncate(self._fd, self._backend.end)
        if space is not None and self._backend.space is not None:
            check_same_grid(self._backend.space, space, what=f"space= given for {self.path}")

    def _flush_v1(self) -> None:
        """Rewrite a version-1 archive; the path then names a new inode, locked before it
        was renamed into place: keep that lock, drop the old one."""
        # without a lock we hold, the archive did not exist when we opened it: create it only
        # if it still does not (another writer may have created it meanwhile)
        try:
            new_fd = self._backend.flush(
                self.path, keep_lock=True, replace=self._lock_fd is not None
            )
        except FileExistsError:
            raise ArchiveLockedError(
                f"{self.path}: another writer created this archive meanwhile; reopen it to append"
            ) from None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        self._lock_fd = new_fd

    def _reindex(self) -> None:
        self._entries = self._backend.entries
        names = getattr(self._entries, "names", None)
        if names is None:
            names = [e.name for e in self._entries]
        self._by_name = {n: i for i, n in enumerate(names)}

    # -- properties --------------------------------------------------------------------
    @property
    def space(self) -> Space | None:
        """The archive's ``(z, y, x)`` space (``None`` for a new archive with no mask yet)."""
        b = self._backend
        return b.space if b.space is not None else getattr(b, "_pending_space", None)

    @property
    def version(self) -> int:
        """Format major version of the file (1 or 2)."""
        return self._backend.version

    @property
    def minor_version(self) -> int:
        """Format minor version of the file (2.1 stores per-mask extras; 0 otherwise)."""
        return getattr(self._backend, "minor", 0)

    @property
    def supports_attrs(self) -> bool:
        """Whether masks stored in this archive can carry attributes (format 2.1)."""
        return bool(getattr(self._backend, "supports_attrs", False))

    @property
    def generation(self) -> int | None:
        """Commit generation of the state this handle sees (version 2; ``None`` for version 1)."""
        self._check_open()
        return getattr(self._backend, "generation", None)

    @property
    def index_segments(self) -> int | None:
        """Number of index segments of the commit this handle sees (version 2; ``None`` for 1)."""
        self._check_open()
        segs = getattr(self._backend, "_segments", None)
        return None if segs is None else len(segs)

    @property
    def end_offset(self) -> int | None:
        """Logical end of the committed archive in bytes (version 2: bytes beyond it are
        garbage of an interrupted append; ``None`` for version 1)."""
        self._check_open()
        return getattr(self._backend, "end", None)

    @property
    def codec_names(self) -> list[str]:
        """Names of the codecs the stored masks use (sorted; the version's default when empty)."""
        self._check_open()
        names = sorted({e.codec.name for e in self._entries})
        return names or (["zstd"] if self.version == 1 else ["bitzstd"])

    @property
    def mask_bytes(self) -> int:
        """Bytes taken by the masks' blobs (what the index references)."""
        self._check_open()
        return sum(int(e.length) for e in self._entries)

    # -- writing -----------------------------------------------------------------------
    def add_segmask(
        self, segmask: SegmentationMask, name: str, *, attrs: dict | None = None
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
            SpaceMismatchError: The mask's grid differs from the archive's.
            io.UnsupportedOperation: The archive was opened read-only.
            OSError: The write failed; the archive is left as it was.
        """
        self._check_open()
        if self.mode == "r":
            import io

            raise io.UnsupportedOperation(f"{self.path}: opened read-only (mode 'r'); use mode 'a'")
        if not isinstance(segmask, SegmentationMask):
            raise MaskValidationError(
                f"add_segmask expects a SegmentationMask, got {type(segmask).__name__}"
            )
        if not isinstance(name, str) or not name or "\0" in name:
            raise MaskValidationError(
                f"mask name must be a non-empty string without NUL, got {name!r}"
            )
        attrs = validate_attrs(attrs, mask=name)
        if attrs and not self.supports_attrs:
            raise MaskValidationError(
                f"{self.path}: mask {name!r}: this archive is format "
                f"{self.version}.{self.minor_version}, which cannot hold attributes (version-1 "
                "and medmask 0.2.0 layouts); write a new archive without compat= / codec= "
                "('medmask convert' upgrades an existing one)"
            )
        with self._lock:
            if name in self._by_name:
                raise MaskValidationError(f"{self.path}: a mask named {name!r} is already stored")
            space = self.space
            if space is not None:
                check_same_grid(space, segmask.space, what=f"mask {name!r}")
            else:
                space = segmask.space
            array = segmask.data
            b = self._backend
            if isinstance(b, _V1Backend):
                count = len(b.entries)
                try:
                    b.stage(name, array, segmask.mapping, space)
                    if self.mode == "a":
                        self._flush_v1()
                except BaseException:
                    b.rollback(count)
                    raise
            else:
                try:
                    b.stage(
                        name,
                        array,
                        segmask.mapping,
                        self._codec or get_codec(None),
                        space,
                        attrs,
                    )
                    if self.mode == "a":
                        b.commit()
                except BaseException:
                    b.rollback()
                    # reliability fix: a commit whose slot was written (only its final fsync
                    # failed) is kept by rollback(); the name index must then list it too
                    if len(self._entries) and self._entries[-1].name == name:
                        self._by_name[name] = len(self._entries) - 1
                    raise
            self._by_name[name] = len(self._entries) - 1

    # -- reading -----------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: archive is closed")

    def _entry(self, key: str | int) -> tuple[int, Entry]:
        self._check_open()
        if isinstance(key, str):
            try:
                i = self._by_name[key]
            except KeyError:
                raise MaskNotFoundError(
                    f"{self.path}: no mask named {key!r} ({len(self)} masks)"
                    + close_matches(key, self._by_name)
                ) from None
            return i, self._entries[i]
        if isinstance(key, int | np.integer) and not isinstance(key, bool):
            n = len(self._entries)
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise MaskNotFoundError(f"{self.path}: position {key} is out of range ({n} masks)")
            return i, self._entries[i]
        raise TypeError(
            f"archive keys are names (str) or positions (int), got {type(key).__name__}"
        )

    def _read_full(self, entry: Entry) -> np.ndarray:
        b = self._backend
        if b.version == 1:
            return b.read_box(entry)
        shape = tuple(int(s) for s in self.space.shape)
        out = np.zeros(shape, entry.dtype)
        if entry.bbox is not None:
            b.read_box(entry, out=out[bbox_slices(entry.bbox)])
        return out

    def read_array(self, key: str | int) -> np.ndarray:
        """The full-volume ``(z, y, x)`` array of one mask (a new, writable array)."""
        _, entry = self._entry(key)
        return self._read_full(entry)

    def read_cropped(self, key: str | int) -> tuple[np.ndarray, BBox | None]:
        """One mask's bounding-box region without expanding it to the full volume.

        Work is proportional to the box (version 2). For version 1 the full volume
        is decoded and then cropped.

        Returns:
            ``(array, bbox)`` with ``bbox = (z0, z1, y0, y1, x0, x1)`` half-open;
            ``(empty (0,0,0) array, None)`` for an empty mask.
        """
        _, entry = self._entry(key)
        if self._backend.version == 1:
            return crop_to_bbox(self._backend.read_box(entry))
        if entry.bbox is None:
            return np.zeros((0, 0, 0), entry.dtype), None
        return np.ascontiguousarray(self._backend.read_box(entry)), entry.bbox

    def load_segmask(self, name: str | int) -> SegmentationMask:
        """Read one mask by name (or position).

        Raises:
            MaskNotFoundError: No such name (close matches are suggested) or position.
            CorruptFileError: Its blob is damaged.
        """
        _, entry = self._entry(name)
        array = self._read_full(entry)
        try:
            return SegmentationMask(array, entry.mapping(self.path), self.space, copy=False)
        except MaskValidationError as exc:  # stored parts that do not fit together
            raise CorruptFileError(
                str(exc), path=self.path, mask=entry.name, field="mapping"
            ) from None

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
        dtype = None if e.dtype is None else ("bool" if e.dtype == np.bool_ else e.dtype.name)
        return MaskInfo(
            e.name,
            i,
            e.mapping(self.path).to_dict(),
            dtype,
            e.bbox,
            e.voxels,
            e.length,
            e.centroid,
            copy.deepcopy(e.attrs),
        )

    def infos(self) -> list[MaskInfo]:
        """:meth:`info` of every mask, in archive order, from the index alone.

        Raises:
            CorruptFileError: An index row is damaged.
        """
        self._check_open()
        return [self._info(i, e) for i, e in enumerate(self._entries)]

    def all_names(self) -> list[str]:
        """Names in insertion order."""
        self._check_open()
        return list(self._by_name)

    def read_all_mapping(self) -> dict[str, LabelMapping]:
        """``{mask name: its LabelMapping}`` for every mask, in insertion order."""
        self._check_open()
        return {e.name: e.mapping(self.path).copy() for e in self._entries}

    def read_all_masks(self) -> dict[str, SegmentationMask]:
        """Every mask, ``{name: SegmentationMask}`` in insertion order."""
        return {e.name: self.load_segmask(e.name) for e in list(self._entries)}

    def refresh(self) -> None:
        """Re-read the newest commit (mode ``"r"``): see masks appended since opening."""
        self._check_open()
        if self.mode != "r":
            return
        self._backend = open_archive(self._fd, self.path)
        self._reindex()

    # -- container protocol ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self.all_names())

    def __getitem__(self, key: str | int) -> SegmentationMask:
        return self.load_segmask(key)

    # -- closing -----------------------------------------------------------------------
    def close(self) -> None:
        """Finish writing (mode ``"w"``: commit and atomically replace) and release the file."""
        if self._closed:
            return
        try:
            if self.mode == "w":
                if self._lock_fd is None and self.path.exists():
                    # Reliability fix: the file appeared after we opened (another writer
                    # created it): never replace an archive someone is appending to.
                    with contextlib.suppress(FileNotFoundError):
                        self._lock_fd = open_locked(self.path, os.O_RDONLY)
                b = self._backend
                if isinstance(b, _V1Backend):
                    b.flush(self.path)
                else:
                    b.commit()
                    os.fsync(self._fd)
                    os.replace(self._tmp, self.path)
                    self._tmp = None
                    fsync_dir(self.path.parent)
        finally:
            self._release(discard=True)

    def _release(self, *, discard: bool) -> None:
        self._closed = True
        for attr in ("_fd", "_lock_fd"):
            fd = getattr(self, attr, None)
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, attr, None)
        if discard and getattr(self, "_tmp", None) is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None

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

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self)} masks"
        return f"MaskArchive({str(self.path)!r}, mode={self.mode!r}, v{self.version}, {state})"
