"""Listing a prefix: the objects (by name ending) and the "folders" under it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .config import _filesystem, _protocol, _split_options
from .faults import _retrying


def list_files(
    url_prefix: str,
    suffixes: Iterable[str] = (".mska", ".msk"),
    *,
    storage_options: Mapping[str, Any] | None = None,
    recursive: bool = True,
) -> list[str]:
    """The URLs of the objects under a prefix whose names end with one of ``suffixes``.

    Args:
        url_prefix: A "folder" URL, e.g. ``s3://bucket/packed/`` (a trailing slash is
            optional).
        suffixes: Name endings to keep (case-insensitive); empty keeps every object.
        storage_options: As for :class:`FsspecSource`.
        recursive: Whether to descend into sub-prefixes.

    Returns:
        Full URLs (with the protocol), sorted.

    Raises:
        RemoteReadError: The listing failed (after the retries).
    """
    url_prefix = str(url_prefix)
    opts, policy = _split_options(url_prefix, storage_options)
    fs, path = _filesystem(url_prefix, opts)
    path = path.rstrip("/")
    fs.invalidate_cache(path)
    ends = tuple(s.lower() for s in suffixes)

    def walk() -> list[str]:
        if recursive:
            return list(fs.find(path))
        return [e["name"] for e in fs.ls(path, detail=True) if e.get("type") != "directory"]

    names = _retrying(url_prefix, policy, "listing", walk)
    protocol = _protocol(url_prefix)
    out = []
    for name in names:
        if ends and not name.lower().endswith(ends):
            continue
        out.append(fs.unstrip_protocol(name) if protocol != "file" else name)
    return sorted(out)


def list_folders(url_prefix: str, *, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """The URLs of the "folders" (common prefixes) directly under a prefix, e.g. the case
    folders of ``s3://bucket/raw/``.

    Returns:
        Full URLs with the protocol, without a trailing slash, sorted.

    Raises:
        RemoteReadError: The listing failed (after the retries).
    """
    url_prefix = str(url_prefix)
    opts, policy = _split_options(url_prefix, storage_options)
    fs, path = _filesystem(url_prefix, opts)
    path = path.rstrip("/")
    fs.invalidate_cache(path)
    entries = _retrying(url_prefix, policy, "listing", lambda: fs.ls(path, detail=True))
    protocol = _protocol(url_prefix)
    out = []
    for e in entries:
        if e.get("type") == "directory":
            name = e["name"].rstrip("/")
            out.append(fs.unstrip_protocol(name) if protocol != "file" else name)
    return sorted(out)
