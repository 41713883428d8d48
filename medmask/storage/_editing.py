"""The writing half of :class:`~medmask.MaskArchive`: adding, deleting and replacing masks
and their attributes, each one staged change committed at once in mode ``"a"``."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..attrs import validate_archive_attrs, validate_attrs
from ..codecs import Codec, get_codec
from ..errors import MaskValidationError
from ..format.layouts import LAYOUTS
from ..mapping import LabelMapping
from ..segmask import SegmentationMask
from ..spaces import Space, check_same_grid
from ._masks import as_segmask, check_mask_name

if TYPE_CHECKING:  # pragma: no cover
    from ..format.backend import ArchiveBackend, Prepared

__all__ = ["ArchiveEditing", "PreparedMask"]


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


class ArchiveEditing:
    """Mixin of :class:`~medmask.MaskArchive` with the methods that change an archive.

    It uses the handle's ``_backend``, ``_lock``, ``_lock_fd``, ``_codec``, ``_by_name``,
    ``mode``, ``path``, ``space``, ``layout`` and its ``_entry``, ``_reindex`` and
    ``_check_open`` methods.
    """

    _backend: ArchiveBackend
    _lock: threading.Lock
    _lock_fd: int | None
    _codec: Codec | None
    _by_name: dict[str, int]
    _compat: str | None
    _prepared_tables: dict
    mode: str
    path: object

    # -- the steps every change takes ----------------------------------------------------
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
        self._prepared_tables.clear()  # tables resolved for windows name the old entries
        try:
            stage()
            if self.mode == "a":
                self._commit()
        except BaseException:
            if self.mode == "a":
                self._backend.rollback()
            self._reindex()
            raise

    def _check_grid(self, segmask: SegmentationMask, name: str) -> None:
        if self.space is not None:
            check_same_grid(self.space, segmask.space, what=f"{self.path}: mask {name!r}")

    def _check_attrs(self, attrs: Mapping[str, Any] | None, name: str) -> dict:
        attrs = validate_attrs(attrs, mask=name)
        if attrs and not self.layout.supports_attrs:
            raise MaskValidationError(
                f"this archive is format {self.layout.name}, which cannot hold attributes "
                "(version-1 and medmask 0.2.0 layouts); write a new archive without compat= / "
                "codec= ('medmask convert' upgrades an existing one)",
                path=self.path,
                mask=name,
            )
        return attrs

    def _write_codec(self) -> Codec:
        return self._codec or get_codec(self._backend.default_codec)

    # -- encoding ahead, on any thread -----------------------------------------------------
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
            attrs: The mask's attributes (see :meth:`add`).
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
        check_mask_name(name)
        attrs = self._check_attrs(attrs, name)
        if origin is None:
            seg = as_segmask(name, mask, self.space, path=self.path)
            self._check_grid(seg, name)
            data, mapping, space = seg.data, seg.mapping, seg.space
        else:
            data, space = self._box(name, mask, origin), self.space
            mapping = LabelMapping({name: 1})
        codec = self._write_codec()
        prepared = self._backend.prepare(name, data, mapping, codec, attrs, origin)
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

    # -- the changes ---------------------------------------------------------------------
    def add(
        self,
        name: str,
        mask: SegmentationMask | np.ndarray | PreparedMask,
        *,
        label: int = 1,
        mapping: Mapping[str, int] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Store a mask under ``name``.

        In mode ``"a"`` the mask is durable when this returns; in mode ``"w"`` it
        becomes visible when the archive is closed.

        Args:
            name: A unique, non-empty name.
            mask: A :class:`~medmask.SegmentationMask` (its space must match the
                archive's, tolerance :data:`medmask.spaces.GRID_ATOL`; the first one
                gives a new archive its space), or a plain ``(z, y, x)`` array on the
                archive's grid: a boolean array, or one holding only 0 and 1, is stored as
                the binary mask ``{name: label}``; a label map needs ``mapping``; or a
                :class:`PreparedMask` from this archive's :meth:`prepare` under ``name``
                (the other arguments were given to ``prepare``).
            label: The label of a binary array.
            mapping: ``{name: label}`` of a label-map array (then ``label`` is ignored).
            attrs: The mask's attributes (colour, description, coded terminology, ...;
                see :mod:`medmask.attrs`). Needs a layout that holds them (the default for
                new archives); version-1 and format-2.0 archives refuse them.

        Raises:
            MaskValidationError: Bad or duplicate name, not a mask, an array without a
                space yet (pass ``space=`` when creating the archive) or of another shape,
                a label map without ``mapping``, bad attributes or attributes the
                archive's format cannot hold.
            SpaceMismatchError: The mask's grid differs from the archive's (the message
                says what differs, with both values).
            io.UnsupportedOperation: The archive was opened read-only.
            OSError: The write failed; the archive is left as it was.
        """
        self._check_writable()
        if isinstance(mask, PreparedMask):
            self._add_prepared(name, mask)
            return
        seg = as_segmask(name, mask, self.space, label=label, mapping=mapping, path=self.path)
        check_mask_name(name)
        attrs = self._check_attrs(attrs, name)
        with self._lock:
            if name in self._by_name:
                raise MaskValidationError(
                    f"a mask named {name!r} is already stored", path=self.path
                )
            self._check_grid(seg, name)
            b = self._backend

            def stage() -> None:
                if b.space is None:
                    b.set_space(seg.space)
                b.stage(name, seg.data, seg.mapping, self._write_codec(), attrs)

            self._change(stage)
            self._by_name[name] = len(b.names) - 1

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
            seg = as_segmask(entry.name, mask, self.space, path=self.path)
            self._check_grid(seg, entry.name)
            keep = attrs is None
            new_attrs = dict(entry.attrs) if keep else self._check_attrs(attrs, entry.name)
            codec = self._write_codec()
            self._change(
                lambda: self._backend.stage_replace(i, seg.data, seg.mapping, codec, new_attrs)
            )
            self._reindex()

    def set_attrs(self, name: str | int, attrs: Mapping[str, Any]) -> None:
        """Replace one mask's attributes (the data is not rewritten).

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

    def set_archive_attrs(self, attrs: Mapping[str, Any]) -> None:
        """Replace the attributes of the archive as a whole (format 2.3).

        JSON values, validated like a mask's attributes (at most 64 KiB as JSON, 8 levels
        deep), with reserved keys (``docs/format.md``, "Archive attributes"): ``source``
        (the packed source's DICOM identifiers and path), ``grid`` (``"image"`` or
        ``"segmentation"``: whose grid the archive's is), ``annotated`` (the structures that
        were annotated). In mode ``"a"`` the change is one crash-safe commit, durable when
        this returns; in mode ``"w"`` it is written at close. Setting them on a format-2.2
        archive makes it 2.3 (medmask 0.4 then refuses it: "upgrade medmask").

        Args:
            attrs: The new attributes (``{}`` clears them).

        Raises:
            MaskValidationError: Bad attributes, or a layout that cannot hold them (version
                1, formats 2.0 and 2.1, or ``compat=`` naming a release before 0.5).
            io.UnsupportedOperation: The archive was opened read-only.
            OSError: The commit failed; the archive is left as it was.
        """
        self._check_writable()
        new = validate_archive_attrs(attrs)
        if self._compat is not None and not LAYOUTS.for_compat(self._compat).archive_attrs:
            layout = LAYOUTS.for_compat(self._compat)
            raise MaskValidationError(
                f"compat={self._compat!r} writes format {layout.name}, which cannot hold "
                "archive attributes (format 2.3 can: leave compat= out)",
                path=self.path,
            )
        with self._lock:
            self._change(lambda: self._backend.stage_archive_attrs(new))
