"""The byte-source layer: the one interface every medmask reader reads through.

A :class:`ByteSource` is a read-only view of one file or object: exact range reads, its
size, a tag that changes when the object is replaced, and ``close``. Two implementations:
:class:`LocalFileSource` (``os.pread`` on a descriptor; thread-safe, no seek state) and
:class:`medmask.io.remote.FsspecSource` (byte-range requests through fsspec for
``s3://``, ``gs://``, ``az://``, ``http(s)://``, ``file://``, ``memory://`` URLs).
:func:`medmask.io.target.open_source` picks one from the byte-source table
(:func:`register_source`), by the target's URL scheme.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import CorruptFileError

__all__ = [
    "ByteSource",
    "LocalFileSource",
    "register_source",
    "source_schemes",
    "SourceFactory",
]

#: Reads ending beyond this offset check the file size first (others learn it from a short
#: read).
_CHECK_SIZE_ABOVE = 1 << 20


class ByteSource(ABC):
    """Read-only random access to the bytes of one file or object.

    Attributes:
        name: The path or URL, for messages.
        is_local: Whether this is a local file (locks and ``fileno`` are available).
    """

    name: str
    is_local: bool = False

    @abstractmethod
    def size(self) -> int:
        """Size in bytes of the object (as pinned at open for remote objects)."""

    @property
    @abstractmethod
    def tag(self) -> str | None:
        """A version tag of the object (ETag / version id, or inode + mtime locally)."""

    @abstractmethod
    def read(
        self, offset: int, length: int, *, field: str = "data", mask: str | None = None
    ) -> bytes:
        """Exactly ``length`` bytes at ``offset``.

        Args:
            offset: Absolute byte offset.
            length: Number of bytes.
            field: The file section being read (for error messages).
            mask: The mask being read, if any (for error messages).

        Raises:
            CorruptFileError: The range lies (partly) past the end of the object.
            OSError: The read failed (after retries, for remote objects).
        """

    def read_many(self, ranges: Sequence[tuple[int, int]], *, field: str = "data") -> list[bytes]:
        """Several ranges at once, in the order given.

        Remote sources coalesce neighbouring ranges into a few requests; the default reads
        them one by one.
        """
        return [self.read(off, length, field=field) for off, length in ranges]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the source holds (idempotent)."""

    def __enter__(self) -> ByteSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def _range_error(
        self, offset: int, length: int, size: int, *, field: str, mask: str | None
    ) -> CorruptFileError:
        """The error for a read of ``[offset, offset + length)`` that is negative or ends
        past ``size`` (the file or object is truncated, or an index points nowhere)."""
        if offset < 0 or length < 0:
            problem = f"negative offset {offset} or length {length}"
        else:
            what = "file" if self.is_local else "object"
            problem = (
                f"section [{offset}, {offset + length}) lies past the end of the {what} "
                f"({size} bytes); the {what} is truncated or damaged"
            )
        return CorruptFileError(problem, path=self.name, mask=mask, field=field)


class LocalFileSource(ByteSource):
    """A local file read with ``os.pread`` (several threads may share one source).

    Args:
        path: The file.
        fd: An already open descriptor to read instead of opening ``path`` (the source
            then does not close it unless ``own_fd``).
        own_fd: Whether :meth:`close` closes ``fd``.

    Raises:
        OSError: The file cannot be opened (FileNotFoundError when it does not exist).
    """

    is_local = True

    def __init__(
        self, path: str | os.PathLike, *, fd: int | None = None, own_fd: bool = True
    ) -> None:
        self.name = os.fspath(path)
        if fd is None:
            fd = os.open(self.name, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            own_fd = True
        self.fd = fd
        self._own = own_fd

    def fileno(self) -> int:
        """The descriptor (for locks and fsync)."""
        return self.fd

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    @property
    def tag(self) -> str | None:
        st = os.fstat(self.fd)
        return f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}"

    def read(
        self, offset: int, length: int, *, field: str = "data", mask: str | None = None
    ) -> bytes:
        if (
            offset < 0
            or length < 0
            or (
                # a hostile offset or length must fail here, not allocate its buffer (or overflow
                # a C long) before a short read shows it
                offset + length > _CHECK_SIZE_ABOVE and offset + length > self.size()
            )
        ):
            raise self._range_error(offset, length, self.size(), field=field, mask=mask)
        chunks = []
        got = 0
        while got < length:
            chunk = os.pread(self.fd, length - got, offset + got)
            if not chunk:
                raise self._range_error(offset, length, self.size(), field=field, mask=mask)
            chunks.append(chunk)
            got += len(chunk)
        if not chunks:
            return b""
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if self._own and fd >= 0:
            os.close(fd)


# -- the byte-source table ----------------------------------------------------------------
#: A byte-source factory: opens the object a :class:`~medmask.io.target.Target` names.
SourceFactory = Callable[[Any], ByteSource]

#: ``{scheme: factory}``: ``""`` is a local path; ``"*"`` any URL scheme without an entry of
#: its own (:mod:`medmask.io.remote` registers fsspec there).
_SOURCES: dict[str, SourceFactory] = {}


def register_source(scheme: str, factory: SourceFactory, *, replace: bool = False) -> None:
    """Declare how the objects of a URL scheme are read: the byte-source table.

    Every reader of medmask files opens its bytes through this table, so a registered
    scheme works everywhere a path or URL is taken (``MaskArchive``, ``load_mask``,
    ``medmask.stats``, the MONAI loaders, the command line).

    Args:
        scheme: The URL scheme without ``://`` (lower case), ``""`` for local paths, or
            ``"*"`` for every URL scheme that has no entry of its own.
        factory: ``factory(target) -> ByteSource`` for a
            :class:`~medmask.io.target.Target` (its ``path`` and ``storage_options``).
        replace: Allow replacing an existing entry.

    Raises:
        ValueError: ``scheme`` is already registered (and not ``replace``).
    """
    scheme = scheme.lower()
    if scheme in _SOURCES and not replace and _SOURCES[scheme] is not factory:
        raise ValueError(f"a byte source is already registered for scheme {scheme!r}")
    _SOURCES[scheme] = factory


def source_schemes() -> list[str]:
    """The schemes of the byte-source table (``""``: local paths, ``"*"``: the fallback)."""
    return sorted(_SOURCES)


register_source("", lambda target: LocalFileSource(target.path))
