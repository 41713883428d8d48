"""The exceptions medmask raises.

One small hierarchy, rooted at :class:`MedMaskError`, so that callers can catch
everything medmask raises with one ``except`` clause, or a precise subset. Each
class also derives from the built-in exception a Python user would expect
(``ValueError`` for bad data, ``KeyError`` for a missing name, ``OSError`` for a
locked file), so code written against plain Python keeps working.

::

    MedMaskError
    ├── MaskValidationError     (also ValueError)  bad arrays, labels, names, spaces
    │   └── SpaceMismatchError                       a mask's grid differs from the archive's
    ├── CorruptFileError        (also ValueError)  a file is damaged, truncated or not ours
    │   └── UnsupportedFormatError                   an unknown version or codec id
    ├── MaskNotFoundError       (also KeyError)    a name or position that is not stored
    ├── ArchiveLockedError      (also OSError)     another writer holds the archive
    └── RemoteReadError         (also OSError)     a URL stays unreadable after retries
        └── RemoteChangedError                       the object was replaced while open

Every message names the file and, where it applies, the mask and the field.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "MedMaskError",
    "MaskValidationError",
    "SpaceMismatchError",
    "CorruptFileError",
    "UnsupportedFormatError",
    "MaskNotFoundError",
    "ArchiveLockedError",
    "RemoteReadError",
    "RemoteChangedError",
    "close_matches",
]


class MedMaskError(Exception):
    """Base class of every exception medmask raises on purpose."""


class MaskValidationError(MedMaskError, ValueError):
    """An array, label, name, mapping or space given by the caller is not acceptable."""


class SpaceMismatchError(MaskValidationError):
    """A mask's grid (shape, spacing, origin, orientation) differs from the one expected."""


class CorruptFileError(MedMaskError, ValueError):
    """A file is damaged, truncated, fails a checksum, or is not a medmask file.

    Attributes:
        path: The file, when known.
        mask: The mask (name) concerned, when the damage is inside one mask.
        field: The header field or section concerned, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        path: object = None,
        mask: str | None = None,
        field: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.mask = mask
        self.field = field
        parts = []
        if self.path is not None:
            parts.append(f"{self.path}")
        if mask is not None:
            parts.append(f"mask {mask!r}")
        if field is not None:
            parts.append(f"field {field!r}")
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class UnsupportedFormatError(CorruptFileError):
    """The file declares a format version or codec this release cannot read."""


class MaskNotFoundError(MedMaskError, KeyError):
    """A mask name, label or position that is not present.

    The message lists close matches when there are any.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class ArchiveLockedError(MedMaskError, OSError):
    """Another writer holds the advisory lock of the archive."""


class RemoteReadError(MedMaskError, OSError):
    """Reading or writing an object through a URL failed, after the retries of transient faults.

    Attributes:
        url: The object's URL.
        mask: The mask (name) being read, when known.
        field: The section being read (``"header"``, ``"index"``, ``"data"``...), when known.
        cause: The last underlying exception, when there was one.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        mask: str | None = None,
        field: str | None = None,
        cause: BaseException | None = None,
    ) -> None:
        self.url = url
        self.mask = mask
        self.field = field
        self.cause = cause
        parts = [p for p in (url, None if mask is None else f"mask {mask!r}") if p]
        if field is not None:
            parts.append(f"field {field!r}")
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)

    def __str__(self) -> str:  # OSError would format (errno, strerror)
        return str(self.args[0]) if self.args else ""


class RemoteChangedError(RemoteReadError):
    """The object behind a URL was replaced or deleted while an archive was open on it.

    medmask pins the object's version (ETag, version id, size) when it opens it and never
    mixes bytes of two versions; reopen the archive to read the new version.
    """


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """Return a ``" (did you mean: a, b?)"`` suffix for error messages, or ``""``."""
    matches = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=n, cutoff=0.6)
    if not matches:
        return ""
    return " (did you mean: " + ", ".join(repr(m) for m in matches) + "?)"
