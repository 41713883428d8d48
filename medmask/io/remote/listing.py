"""Listing a prefix: the objects (by name ending) and the "folders" under it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .config import _filesystem, _Policy, _protocol, _split_options
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
    fs, path, policy = _open_prefix(url_prefix, storage_options)
    ends = tuple(s.lower() for s in suffixes)

    def walk() -> list[str]:
        if recursive:
            return list(fs.find(path))
        return [e["name"] for e in fs.ls(path, detail=True) if e.get("type") != "directory"]

    names = _retrying(url_prefix, policy, "listing", walk)
    return sorted(
        _full_url(fs, url_prefix, name) for name in names if not ends or name.lower().endswith(ends)
    )


def list_folders(url_prefix: str, *, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """The URLs of the "folders" (common prefixes) directly under a prefix, e.g. the case
    folders of ``s3://bucket/raw/``.

    Returns:
        Full URLs with the protocol, without a trailing slash, sorted.

    Raises:
        RemoteReadError: The listing failed (after the retries).
    """
    url_prefix = str(url_prefix)
    fs, path, policy = _open_prefix(url_prefix, storage_options)
    entries = _retrying(url_prefix, policy, "listing", lambda: fs.ls(path, detail=True))
    return sorted(
        _full_url(fs, url_prefix, e["name"].rstrip("/"))
        for e in entries
        if e.get("type") == "directory"
    )


def list_entries(
    url_prefix: str, *, storage_options: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The objects directly under a prefix, as fsspec ``info`` entries (``name`` a full
    URL, ``size``, ``type``, and the store's modification time key), retried like reads.

    Raises:
        FileNotFoundError: No such prefix.
        RemoteReadError: The listing failed (after the retries).
    """
    url_prefix = str(url_prefix)
    fs, path, policy = _open_prefix(url_prefix, storage_options)
    entries = _retrying(url_prefix, policy, "listing", lambda: fs.ls(path, detail=True))
    return sorted(
        ({**e, "name": _full_url(fs, url_prefix, e["name"].rstrip("/"))} for e in entries),
        key=lambda e: e["name"],
    )


def object_info(url: str, *, storage_options: Mapping[str, Any] | None = None) -> dict | None:
    """fsspec's ``info`` of one object as the store has it now (``None`` when there is no
    such object, or it is a "folder"), retried like reads.

    Raises:
        RemoteReadError: The request failed (after the retries).
    """
    url = str(url)
    opts, policy = _split_options(url, storage_options)
    fs, path = _filesystem(url, opts)
    fs.invalidate_cache(path)
    try:
        info = _retrying(url, policy, "info", lambda: fs.info(path))
    except FileNotFoundError:
        return None
    return None if info.get("type") == "directory" else info


def _open_prefix(
    url_prefix: str, storage_options: Mapping[str, Any] | None
) -> tuple[Any, str, _Policy]:
    """``(filesystem, path without a trailing slash, retry policy)`` of a prefix, with the
    filesystem's listing cache of it dropped (a listing shows the store as it is now)."""
    opts, policy = _split_options(url_prefix, storage_options)
    fs, path = _filesystem(url_prefix, opts)
    path = path.rstrip("/")
    fs.invalidate_cache(path)
    return fs, path, policy


def _full_url(fs: Any, url_prefix: str, name: str) -> str:
    """A listed name as a URL with the prefix's protocol (local paths stay paths)."""
    return fs.unstrip_protocol(name) if _protocol(url_prefix) != "file" else name
