"""Archives named by a catalogue, and opening them with the staleness check.

An :class:`ArchiveRef` is what a loader holds instead of a path: the archive's path or URL,
the fingerprint the catalogue recorded for it and the catalogue it came from. It is a path
(``os.fspath(ref)`` is the archive), pickles small (DataLoader and Dask workers), and
:func:`open_checked` opens the archive and compares its fingerprint with the recorded one
before anything is read through it: an archive changed since the catalogue was written
raises :class:`~medmask.errors.StaleCatalogError` naming both, or (``on_stale="reread"``)
is read through its current index with a warning. Never through the catalogue's byte
ranges: those are information for other tools; medmask reads masks through the index it
has just verified.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import MaskValidationError, MissingArchiveError, StaleCatalogError
from ..format import ArchiveFingerprint
from ..io.names import format_from_name
from ..io.target import Target
from ..storage import MaskArchive

__all__ = ["ArchiveRef", "StaleArchiveWarning", "ON_STALE", "open_checked", "check_fingerprint"]

#: What a loader does with an archive changed since its catalogue was written.
ON_STALE = ("raise", "reread")


class StaleArchiveWarning(UserWarning):
    """An archive changed since its catalogue was written and was read as it is now
    (``on_stale="reread"``)."""


@dataclass(frozen=True)
class ArchiveRef(os.PathLike):
    """A catalogued archive: its path or URL and what the catalogue recorded about it.

    Attributes:
        path: The archive's path or URL (``os.fspath(ref)``).
        size: Its size in bytes when catalogued.
        generation: Its commit generation (``None`` for version 1 and ``.msk`` files).
        index_crc: Its index checksum (``None`` for ``.msk`` files).
        catalog: The catalogue it came from (for messages; ``""`` if never written).
    """

    path: str
    size: int
    generation: int | None
    index_crc: int | None
    catalog: str = ""

    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    @property
    def fingerprint(self) -> ArchiveFingerprint:
        """The recorded :class:`~medmask.format.ArchiveFingerprint`."""
        return ArchiveFingerprint(self.size, self.generation, self.index_crc)

    @property
    def is_archive(self) -> bool:
        """Whether this names a ``.mska`` (not a single-mask ``.msk``)."""
        return format_from_name(self.path) != "msk"


def _catalog_name(ref: ArchiveRef) -> str:
    return f"the catalogue {ref.catalog}" if ref.catalog else "its catalogue"


def _changes(expected: ArchiveFingerprint, found: ArchiveFingerprint) -> list[str]:
    what = ("size", "commit generation", "index checksum")
    return [
        f"{w} {a} -> {b}"
        for w, a, b in zip(what, expected, found, strict=True)
        if a is not None and a != b
    ]


def check_fingerprint(ref: ArchiveRef, found: ArchiveFingerprint, on_stale: str = "raise") -> bool:
    """Compare an archive's fingerprint with the one its catalogue recorded.

    Args:
        ref: The catalogued archive.
        found: Its fingerprint now.
        on_stale: ``"raise"`` or ``"reread"`` (warn with :class:`StaleArchiveWarning`).

    Returns:
        Whether the archive is as catalogued.

    Raises:
        StaleCatalogError: It changed, and ``on_stale="raise"``.
        MaskValidationError: A bad ``on_stale``.
    """
    if on_stale not in ON_STALE:
        raise MaskValidationError(f"on_stale must be 'raise' or 'reread', got {on_stale!r}")
    changes = _changes(ref.fingerprint, found)
    if not changes:
        return True
    where = _catalog_name(ref)
    if on_stale == "raise":
        raise StaleCatalogError(
            f"changed since {where} was written ({'; '.join(changes)}): rebuild the catalogue "
            "('medmask catalog ... --update'), or pass on_stale='reread' to read this "
            "archive through its current index",
            path=ref.path,
        )
    warnings.warn(
        f"{ref.path}: changed since {where} was written ({'; '.join(changes)}); read as it is now",
        StaleArchiveWarning,
        stacklevel=3,
    )
    return False


def _missing(ref: ArchiveRef) -> MissingArchiveError:
    return MissingArchiveError(
        f"listed in {_catalog_name(ref)} but not found (moved or deleted?): rebuild the "
        "catalogue ('medmask catalog ... --update') or restore the archive",
        path=ref.path,
    )


def open_checked(
    ref: ArchiveRef,
    *,
    storage_options: Mapping[str, Any] | None = None,
    on_stale: str = "raise",
) -> MaskArchive:
    """Open a catalogued archive, checking it is as its catalogue recorded.

    Args:
        ref: The catalogued archive (a ``.mska``).
        storage_options: fsspec options for a URL.
        on_stale: ``"raise"`` (default) or ``"reread"``: read the archive through its
            current index, with a :class:`StaleArchiveWarning`.

    Returns:
        The open archive (mode ``"r"``); close it after use.

    Raises:
        MissingArchiveError: The archive does not exist (the message names the catalogue).
        StaleCatalogError: It changed since the catalogue was written (``"raise"``).
        CorruptFileError: It is damaged.
    """
    try:
        ar = MaskArchive(Target.of(ref.path, storage_options))
    except FileNotFoundError:
        raise _missing(ref) from None
    try:
        check_fingerprint(ref, ar.fingerprint, on_stale)
    except BaseException:
        ar.close()
        raise
    return ar


def check_file(
    ref: ArchiveRef,
    *,
    storage_options: Mapping[str, Any] | None = None,
    on_stale: str = "raise",
) -> None:
    """Check a catalogued ``.msk`` file (by size: the fingerprint a ``.msk`` has).

    Raises:
        MissingArchiveError: It does not exist.
        StaleCatalogError: Its size changed (``on_stale="raise"``).
    """
    info = Target.of(ref.path, storage_options).info()
    if info is None:
        raise _missing(ref)
    check_fingerprint(ref, ArchiveFingerprint(int(info["size"]), None, None), on_stale)
