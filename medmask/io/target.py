"""Where a file is: :class:`Target`, a local path or a URL with its storage options, made once.

A ``Target`` is what used to travel as a ``(path, storage_options)`` pair: the caller's path
or URL resolved once (a URL stays a string, a local path is a :class:`~pathlib.Path`), its
scheme, its name and suffix, and the options of its filesystem. Everything below the public
API takes one: opening its bytes (:meth:`Target.open`, through the byte-source table of
:mod:`medmask.io.source`), asking whether it exists or how big it is, joining a child name,
uploading a finished local file to it. Public functions keep accepting a plain path or URL
plus ``storage_options=`` and turn them into a ``Target`` with :meth:`Target.of` at the top.

Example:
    >>> t = Target.of("s3://bucket/cases/s0000.mska", {"anon": True})
    >>> t.scheme, t.name, t.suffix, t.is_url
    ('s3', 's0000.mska', '.mska', True)
    >>> (t.parent / "s0001.mska").path
    's3://bucket/cases/s0001.mska'
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .names import format_from_name, is_url, split_suffix
from .source import _SOURCES, ByteSource, source_schemes

__all__ = ["Target", "open_source"]


class Target:
    """A file or object medmask reads or writes: a local path or a URL, with the options of
    its filesystem (zarr's ``StorePath`` plays the same part).

    Args:
        path: A local path or a URL (``s3://``, ``gs://``, ``az://``, ``http(s)://``,
            ``file://``, ``memory://`` or a scheme registered with
            :func:`medmask.io.source.register_source`).
        storage_options: For a URL: options of its filesystem (credentials, endpoint...),
            plus medmask's ``medmask_retries`` / ``medmask_backoff`` / ``medmask_timeout``.
            Ignored for local paths.

    Raises:
        TypeError: ``path`` is not a path, a URL or a ``Target`` (a
            :class:`~medmask.io.source.ByteSource`, say).
    """

    __slots__ = ("path", "storage_options", "is_url", "scheme")

    path: str
    storage_options: dict[str, Any]
    is_url: bool
    scheme: str

    def __init__(
        self, path: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
    ) -> None:
        if isinstance(path, Target):
            raise TypeError("Target(target): use Target.of(target) to reuse a Target")
        if isinstance(path, ByteSource) or not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"a file is a path or a URL, not {type(path).__name__}")
        text = os.fspath(path)
        self.is_url = is_url(text)
        self.scheme = text.split("://", 1)[0].lower() if self.is_url else ""
        self.path = text
        self.storage_options = dict(storage_options or {}) if self.is_url else {}

    @classmethod
    def of(
        cls,
        path: str | os.PathLike[str] | Target,
        storage_options: Mapping[str, Any] | None = None,
    ) -> Target:
        """``path`` as a Target (a Target is returned as it is).

        Args:
            path: A local path, a URL or a Target.
            storage_options: Options of a URL's filesystem; with a Target, they must be
                empty or equal to the Target's own.

        Raises:
            ValueError: A Target given together with different ``storage_options``.
            TypeError: ``path`` is neither a path, a URL nor a Target.
        """
        if isinstance(path, Target):
            if storage_options and dict(storage_options) != path.storage_options:
                raise ValueError(
                    f"{path}: storage_options given for a Target that has its own; "
                    "pass one or the other"
                )
            return path
        return cls(path, storage_options)

    # -- names ---------------------------------------------------------------------------
    @property
    def local(self) -> Path | None:
        """The local path, or ``None`` for a URL."""
        return None if self.is_url else Path(self.path)

    @property
    def name(self) -> str:
        """The last component of the path (``case.mska``)."""
        text = self.path.split("?", 1)[0].split("#", 1)[0] if self.is_url else self.path
        return text.rstrip("/").rsplit("/", 1)[-1] if self.is_url else Path(text).name

    @property
    def suffix(self) -> str:
        """The suffix, with the compound suffixes medmask knows kept whole (``.nii.gz``)."""
        return split_suffix(self.path)[1]

    @property
    def stem(self) -> str:
        """The name without :attr:`suffix`."""
        return split_suffix(self.path)[0]

    @property
    def format_name(self) -> str | None:
        """The format the name says (see :func:`medmask.io.names.format_from_name`)."""
        return format_from_name(self.path)

    @property
    def parent(self) -> Target:
        """The folder or prefix holding this target, with the same options."""
        if not self.is_url:
            return Target(Path(self.path).parent)
        scheme, rest = self.path.split("://", 1)
        head = rest.rstrip("/").rsplit("/", 1)[0] if "/" in rest.rstrip("/") else rest
        return Target(f"{scheme}://{head}", self.storage_options)

    def __truediv__(self, child: str) -> Target:
        """A file or folder inside this one, with the same options."""
        if not self.is_url:
            return Target(Path(self.path) / child)
        return Target(self.path.rstrip("/") + "/" + str(child).lstrip("/"), self.storage_options)

    def with_name(self, name: str) -> Target:
        """The sibling called ``name``."""
        return self.parent / name

    # -- access --------------------------------------------------------------------------
    def open(self) -> ByteSource:
        """Open the bytes for reading (see :func:`open_source`); close the source after use."""
        return open_source(self)

    def exists(self) -> bool:
        """Whether a file, folder or object (or, for a URL, a prefix) exists here.

        Raises:
            RemoteReadError: A store could not be asked (after the retries).
        """
        if not self.is_url:
            return Path(self.path).exists()
        if self.scheme in _SOURCES:  # a registered byte source: try to open it
            try:
                self.open().close()
            except FileNotFoundError:
                return False
            return True
        from .remote import exists

        return exists(self.path, storage_options=self.storage_options)

    def is_dir(self) -> bool:
        """Whether this is a local folder (a URL is a prefix when it ends with ``/``)."""
        return Path(self.path).is_dir() if not self.is_url else self.path.endswith("/")

    def info(self) -> dict[str, Any] | None:
        """``{"size": bytes, "tag": version tag or None}`` of a file or object as it is now,
        or ``None`` when there is none (or it is a folder).

        Raises:
            RemoteReadError: A store could not be asked (after the retries).
        """
        if not self.is_url:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                return None
            if not os.path.isfile(self.path):
                return None
            return {"size": st.st_size, "tag": f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}"}
        if self.scheme in _SOURCES:
            try:
                with self.open() as src:
                    return {"size": src.size(), "tag": src.tag}
            except FileNotFoundError:
                return None
        from .remote import object_info

        found = object_info(self.path, storage_options=self.storage_options)
        if found is None:
            return None
        tag = found.get("VersionId") or found.get("ETag") or found.get("etag")
        tag = tag or found.get("generation") or found.get("mtime") or found.get("LastModified")
        return {"size": int(found.get("size") or 0), "tag": None if tag is None else str(tag)}

    def read_head(self, n: int = 64 * 1024) -> bytes:
        """The first ``n`` bytes (fewer when the file is shorter).

        Raises:
            FileNotFoundError: No such file or object.
        """
        with self.open() as src:
            return src.read(0, min(n, src.size()), field="header")

    @contextlib.contextmanager
    def writing(self) -> Iterator[Path]:
        """A local path to write this target's content to, published whole on normal exit.

        For a local target it is the target itself (the writer makes it atomic); for a URL
        it is a temporary file, uploaded whole (:func:`medmask.io.remote.upload`) when the
        block ends without an exception; the temporary folder is always removed.

        Raises:
            RemoteReadError: The upload failed after the retries (nothing was published).
        """
        if not self.is_url:
            yield Path(self.path)
            return
        tmpdir = Path(tempfile.mkdtemp(prefix="medmask-upload-"))
        try:
            local = tmpdir / ((self.stem or "object") + self.suffix)
            yield local
            self.upload_from(local)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)

    def upload_from(self, local: str | os.PathLike[str]) -> None:
        """Put a finished local file here, whole or not at all.

        Raises:
            FileNotFoundError: ``local`` does not exist.
            RemoteReadError: The upload failed after the retries.
        """
        from .remote import upload

        upload(local, self.path, storage_options=self.storage_options)

    # -- identity ------------------------------------------------------------------------
    def __fspath__(self) -> str:
        return self.path

    def __str__(self) -> str:
        return self.path

    def __repr__(self) -> str:
        opts = (
            f", storage_options=<{len(self.storage_options)} keys>" if self.storage_options else ""
        )
        return f"Target({self.path!r}{opts})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Target):
            return NotImplemented
        return self.path == other.path and self.storage_options == other.storage_options

    def __hash__(self) -> int:
        return hash(self.path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Target, (self.path, self.storage_options or None))


def open_source(
    target: str | os.PathLike[str] | Target,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> ByteSource:
    """Open a file or object for reading, through the byte-source table.

    Args:
        target: A local path, a URL (``s3://``, ``gs://``, ``az://``, ``http(s)://``,
            ``file://``, ``memory://``, or a scheme registered with
            :func:`~medmask.io.source.register_source`) or a :class:`Target`.
        storage_options: For a path or URL: options of its filesystem (credentials,
            endpoint...); fsspec's own configuration and environment variables apply too.

    Returns:
        A :class:`~medmask.io.source.ByteSource`; close it when done.

    Raises:
        FileNotFoundError: No such file or object.
        OSError: It cannot be opened.
        ValueError: No byte source reads the URL's scheme.
    """
    t = Target.of(target, storage_options)
    factory = _SOURCES.get(t.scheme) or (_SOURCES.get("*") if t.is_url else None)
    if factory is None:
        raise ValueError(
            f"{t}: no byte source reads {t.scheme or 'local'}:// objects "
            f"(registered schemes: {', '.join(repr(s) for s in source_schemes())}; "
            "for s3://, gs://... install medmask[remote])"
        )
    return factory(t)
