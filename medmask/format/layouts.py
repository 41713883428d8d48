"""The compatibility table: every file layout medmask knows, and what each can hold.

One row per layout (format ``major.minor``), in the spirit of nibabel's ``Recoder`` tables:
the row is found by any of its keys (the ``compat`` release string a writer is asked for,
``(major, minor)`` read from a file, or the layout's name such as ``"2.1"``), and callers
ask it for a *capability* (``layout.checksums``, ``layout.index_stats``...) instead of
comparing version numbers. Version numbers are compared here and in the version modules
of :mod:`medmask.format` only.

==========  =======  =========  ====================================================
layout      release  codec      what it holds
==========  =======  =========  ====================================================
``1``       0.1      zstd       full-volume blobs; no checksums, statistics or attributes
``2.0``     0.2      bitzstd    bounding-box blobs, checksums, voxels and box in the index
``2.1``     0.3      bitzstd    2.0 plus attributes and centroids (``extra`` column)
``2.2``     0.4      bitzstd    2.1 in a compact index (centroid column)
``2.3``     0.5      bitzstd    2.2 plus archive-level attributes (the current one)
==========  =======  =========  ====================================================

``compat=RELEASE`` (``MaskArchive(..., compat="0.2")``, ``medmask convert --compat``) asks
for the newest layout that medmask RELEASE reads, which is the layout that release
introduced. A new layout is one :func:`register_layout` call (see
``tests/format/test_extension_points.py``).

Example:
    >>> LAYOUTS.for_compat("0.2").name, LAYOUTS.for_compat(None).name
    ('2.0', '2.3')
    >>> LAYOUTS.of(2, 1).supports_attrs, LAYOUTS.of(1, 0).checksums
    (True, False)
    >>> [lay.name for lay in LAYOUTS.where(supports_attrs=True)]
    ['2.1', '2.2', '2.3']
    >>> [lay.name for lay in LAYOUTS.where(archive_attrs=True)]
    ['2.3']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import MaskValidationError, UnsupportedFormatError

__all__ = ["Layout", "LayoutTable", "LAYOUTS", "register_layout", "compat_choices"]


@dataclass(frozen=True)
class Layout:
    """One file layout (format ``major.minor``) and what it can hold.

    Attributes:
        major: The format major version (the byte after the magic).
        minor: The format minor version.
        release: The medmask release that introduced the layout; ``compat=release``
            writes it (the newest layout that release reads).
        codec: Name of the codec new files of this layout are written with.
        supports_attrs: Masks carry attributes (colour, description, coded concepts).
        centroids: Each mask's centroid is stored (statistics without decoding).
        index_stats: Each mask's voxel count and bounding box are stored (listings,
            statistics and thumbnails without decoding).
        cropped_blobs: Blobs hold the mask's bounding box only (a read costs in
            proportion to the box; otherwise every read decodes the whole volume).
        checksums: Every section and blob carries a CRC-32 (``verify`` checks them).
        in_place_edits: An archive is appended to, edited and deleted from by crash-safe
            commits (otherwise each change rewrites the whole file).
        writable: This release writes the layout (``False``: read-only support).
        archive_attrs: The archive as a whole carries attributes (``source``, ``grid``,
            ``annotated``...; :attr:`medmask.MaskArchive.archive_attrs`).
    """

    major: int
    minor: int
    release: str
    codec: str
    supports_attrs: bool
    centroids: bool
    index_stats: bool
    cropped_blobs: bool
    checksums: bool
    in_place_edits: bool
    writable: bool = True
    archive_attrs: bool = False

    @property
    def name(self) -> str:
        """``"1"`` for version 1 (it has a single layout), else ``"major.minor"``."""
        return str(self.major) if self.major == 1 else f"{self.major}.{self.minor}"

    @property
    def version(self) -> tuple[int, int]:
        """``(major, minor)``."""
        return self.major, self.minor


def _release_key(release: str) -> tuple[int, ...]:
    return tuple(int(p) for p in release.split("."))


class LayoutTable:
    """The layouts medmask knows, found by any key (see the module docstring)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[int, int], Layout] = {}

    def add(self, layout: Layout, *, replace: bool = False) -> None:
        """Add a row.

        Raises:
            ValueError: ``(major, minor)`` or the release is already in the table.
        """
        if not replace:
            if layout.version in self._rows:
                raise ValueError(f"layout {layout.name} is already registered")
            if any(r.release == layout.release for r in self._rows.values()):
                raise ValueError(f"release {layout.release} already has a layout")
        self._rows[layout.version] = layout

    def __iter__(self) -> Iterator[Layout]:
        return iter(sorted(self._rows.values(), key=lambda r: r.version))

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def majors(self) -> tuple[int, ...]:
        """The major versions of the table, ascending."""
        return tuple(sorted({r.major for r in self._rows.values()}))

    @property
    def current(self) -> Layout:
        """The layout new files are written in: the newest writable one."""
        return max((r for r in self._rows.values() if r.writable), key=lambda r: r.version)

    def of(self, major: int, minor: int = 0) -> Layout:
        """The layout a file declares.

        A minor version newer than any known for ``major`` maps to the newest known one
        (minor versions only add what older readers may ignore).

        Raises:
            UnsupportedFormatError: ``major`` is not in the table.
        """
        row = self._rows.get((major, minor))
        if row is not None:
            return row
        known = [r for r in self._rows.values() if r.major == major and r.minor <= minor]
        if not known:
            raise UnsupportedFormatError(
                f"format version {major}.{minor} is not supported; this release reads "
                f"versions {', '.join(map(str, self.majors))} (upgrade medmask to open it)",
                field="version",
            )
        return max(known, key=lambda r: r.minor)

    def named(self, name: str) -> Layout:
        """The layout called ``name`` (``"1"``, ``"2.0"``, ``"2.1"``...).

        Raises:
            KeyError: No such layout.
        """
        for r in self._rows.values():
            if r.name == name:
                return r
        raise KeyError(name)

    def for_compat(self, compat: str | None) -> Layout:
        """The layout to write for ``compat``: ``None`` is :attr:`current`, a release of
        :meth:`compat_choices` the layout it introduced (a release's reader reads it).

        Raises:
            MaskValidationError: ``compat`` is not a release of the table.
        """
        if compat is None:
            return self.current
        if compat in self.compat_choices():
            return next(r for r in self._rows.values() if r.release == compat)
        choices = ", ".join(repr(c) for c in self.compat_choices())
        raise MaskValidationError(
            f"compat must be None (current layout) or one of {choices}, got {compat!r}"
        )

    def compat_choices(self) -> list[str]:
        """The ``compat`` strings that select an older layout than :attr:`current`,
        newest first."""
        current = self.current
        older = [r for r in self._rows.values() if r.writable and r is not current]
        return [r.release for r in sorted(older, key=lambda r: _release_key(r.release))][::-1]

    def where(self, **capabilities: bool) -> list[Layout]:
        """The layouts with every capability given (``where(checksums=True)``), oldest first.

        Raises:
            TypeError: An unknown capability name.
        """
        fields = {f.name for f in dataclasses.fields(Layout)}
        unknown = sorted(set(capabilities) - fields)
        if unknown:
            raise TypeError(f"unknown capabilities {unknown}")
        return [r for r in self if all(getattr(r, k) == v for k, v in capabilities.items())]


#: The one table of layouts (see the module docstring).
LAYOUTS = LayoutTable()


def register_layout(layout: Layout, *, replace: bool = False) -> None:
    """Add a layout to :data:`LAYOUTS` (a new format version also registers its backend
    with :func:`medmask.format.register_version`).

    Raises:
        ValueError: The version or release is already registered (and not ``replace``).
    """
    LAYOUTS.add(layout, replace=replace)


def compat_choices() -> list[str]:
    """The values ``compat=`` accepts besides ``None``, newest first (``["0.4", "0.3",
    "0.2", "0.1"]``): what ``medmask convert --compat`` offers."""
    return LAYOUTS.compat_choices()


_V2 = dict(cropped_blobs=True, checksums=True, index_stats=True, in_place_edits=True)
for _layout in (
    Layout(1, 0, "0.1", "zstd", False, False, False, False, False, False),
    Layout(2, 0, "0.2", "bitzstd", supports_attrs=False, centroids=False, **_V2),
    Layout(2, 1, "0.3", "bitzstd", supports_attrs=True, centroids=True, **_V2),
    Layout(2, 2, "0.4", "bitzstd", supports_attrs=True, centroids=True, **_V2),
    Layout(2, 3, "0.5", "bitzstd", supports_attrs=True, centroids=True, archive_attrs=True, **_V2),
):
    register_layout(_layout)
