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
    ├── CorruptFileError        (also ValueError)  a file is damaged or truncated
    │   └── UnsupportedFormatError                   an unknown version or codec id
    ├── ForeignFileError        (also ValueError)  another format (NIfTI, NRRD, DICOM...)
    ├── MaskNotFoundError       (also KeyError)    a name or position that is not stored
    ├── ArchiveLockedError      (also OSError)     another writer holds the archive
    └── RemoteReadError         (also OSError)     a URL stays unreadable after retries
        └── RemoteChangedError                       the object was replaced while open

Every message names the file and, where it applies, the mask and the field: they are
keywords of every medmask error (``path=``, ``mask=``, ``field=``; see
:class:`MedMaskError`), never pasted into the text by hand.
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
    "ForeignFileError",
    "MaskNotFoundError",
    "ArchiveLockedError",
    "RemoteReadError",
    "RemoteChangedError",
    "close_matches",
]


class MedMaskError(Exception):
    """Base class of every exception medmask raises on purpose.

    Every medmask error takes its context as keywords, and renders it in front of the
    message: ``"<path>: mask '<mask>': field '<field>': <message>"``. Code that raises
    one never pastes the path into the message by hand; code that catches one from a
    lower layer (a codec knows no file) adds what it knows with :meth:`add_context`.

    Args:
        message: What is wrong and, where it helps, what to do.
        path: The file or URL, when known.
        mask: The mask (name) concerned, when known.
        field: The header field or section concerned, when known.

    Attributes:
        message: The message without its context.
        path: The file (as text), or ``None``.
        mask: The mask, or ``None``.
        field: The field, or ``None``.
    """

    def __init__(
        self,
        message: str = "",
        *,
        path: object = None,
        mask: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.mask = mask
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.path is not None:
            parts.append(self.path)
        if self.mask is not None:
            parts.append(f"mask {self.mask!r}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message

    def add_context(
        self, *, path: object = None, mask: str | None = None, field: str | None = None
    ) -> MedMaskError:
        """Fill in the context this error does not have yet (what it has is kept).

        Args:
            path: The file or URL.
            mask: The mask concerned.
            field: The field concerned.

        Returns:
            The same exception, to re-raise (``raise err.add_context(path=p) from None``
            would lose the cause: re-raise with a bare ``raise``).
        """
        if self.path is None and path is not None:
            self.path = str(path)
        if self.mask is None and mask is not None:
            self.mask = mask
        if self.field is None and field is not None:
            self.field = field
        self.args = (self._render(), *self.args[1:])
        return self

    def __str__(self) -> str:  # KeyError would repr() the text, OSError format errno
        return self._render()


class MaskValidationError(MedMaskError, ValueError):
    """An array, label, name, mapping or space given by the caller is not acceptable."""


class SpaceMismatchError(MaskValidationError):
    """A mask's grid (shape, spacing, origin, orientation) differs from the one expected."""


class CorruptFileError(MedMaskError, ValueError):
    """A file is damaged, truncated or fails a checksum (a medmask file, or a foreign file
    being converted), or starts with bytes no format medmask knows.

    ``path``, ``mask`` and ``field`` (see :class:`MedMaskError`) say where. A file of
    another format medmask recognises is not damaged: that is :class:`ForeignFileError`.
    """


class UnsupportedFormatError(CorruptFileError):
    """The file declares a format version or codec this release cannot read."""


class ForeignFileError(MedMaskError, ValueError):
    """A medmask file was expected, and this is a file of another format medmask recognises
    (NIfTI, NRRD, a Slicer segmentation, DICOM, gzip, zip...), told by its first bytes.

    Not a :class:`CorruptFileError`: nothing is damaged. The message names the format and
    what to do (``medmask pack`` converts the formats it can read into an archive).

    Args:
        message: What the file is and what to do.
        kind: The format's key in the format table (``"nifti"``, ``"seg.nrrd"``...).
        path: The file.

    Attributes:
        kind: See above.
    """

    def __init__(self, message: str = "", *, kind: str | None = None, path: object = None) -> None:
        self.kind = kind
        super().__init__(message, path=path)


class MaskNotFoundError(MedMaskError, KeyError):
    """A mask name, label or position that is not present.

    The message lists close matches when there are any.
    """


class ArchiveLockedError(MedMaskError, OSError):
    """Another writer holds the advisory lock of the archive."""


class RemoteReadError(MedMaskError, OSError):
    """Reading or writing an object through a URL failed, after the retries of transient faults.

    Args:
        message: What failed.
        url: The object's URL (also available as ``path``).
        mask: The mask (name) being read, when known.
        field: The section being read (``"header"``, ``"index"``, ``"data"``...), when known.
        cause: The last underlying exception, when there was one.
    """

    def __init__(
        self,
        message: str = "",
        *,
        url: str | None = None,
        mask: str | None = None,
        field: str | None = None,
        cause: BaseException | None = None,
        path: object = None,
    ) -> None:
        self.cause = cause
        super().__init__(message, path=url if url is not None else path, mask=mask, field=field)

    @property
    def url(self) -> str | None:
        """The object's URL (the same as ``path``)."""
        return self.path


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
