"""Whole objects: upload (whole or not at all), download, exists, remove, read."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..atomic import atomic_temp
from .config import UPLOAD_PART_SIZE, _filesystem, _is_s3, _split_options
from .faults import _retrying


def upload(
    local_path: str | os.PathLike, url: str, *, storage_options: Mapping[str, Any] | None = None
) -> None:
    """Put a finished local file at ``url``, whole or not at all.

    S3: one PUT below twice :data:`UPLOAD_PART_SIZE`, otherwise a multipart upload that S3
    completes atomically (an upload that fails is aborted, so no parts are left behind).
    ``file://``: a temporary sibling renamed over the target. Other stores: the
    filesystem's own upload (single-request uploads on GCS and Azure are atomic). Transient
    faults are retried like reads (the whole upload is repeated; it is idempotent).

    Args:
        local_path: The finished file.
        url: Where to put it.
        storage_options: As for :class:`FsspecSource`.

    Raises:
        FileNotFoundError: ``local_path`` does not exist.
        RemoteReadError: The upload failed after the retries (nothing was published).
    """
    local_path = Path(local_path)
    if not local_path.is_file():
        raise FileNotFoundError(errno.ENOENT, "no such file to upload", str(local_path))
    url = str(url)
    opts, policy = _split_options(url, storage_options)
    fs, path = _filesystem(url, opts)
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if "file" in protocols or "local" in protocols:
        _local_replace(local_path, Path(path))
        return
    if _is_s3(fs):

        def put() -> None:
            fs.put_file(str(local_path), path, chunksize=UPLOAD_PART_SIZE)

    else:

        def put() -> None:
            fs.put_file(str(local_path), path)

    _retrying(url, policy, "upload", put, on_retry=lambda: fs.invalidate_cache(path))
    fs.invalidate_cache(path)


def _local_replace(src: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_temp(target) as (out, _tmp), open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)


def download(
    url: str,
    local_path: str | os.PathLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> Path:
    """Copy the object at ``url`` to ``local_path`` (written to a temporary sibling first).

    Args:
        url: The object.
        local_path: The file to write.
        storage_options: As for :class:`FsspecSource`.

    Returns:
        ``local_path`` as a :class:`~pathlib.Path`.

    Raises:
        FileNotFoundError: No object at ``url``.
        RemoteReadError: The download failed after the retries.
    """
    url = str(url)
    target = Path(local_path)
    opts, policy = _split_options(url, storage_options)
    fs, path = _filesystem(url, opts)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        _retrying(url, policy, "download", lambda: fs.get_file(path, tmp))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def exists(url: str, *, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether an object (or a prefix holding objects) exists at ``url``.

    Raises:
        RemoteReadError: The store cannot be asked (after the retries).
    """
    url = str(url)
    opts, policy = _split_options(url, storage_options)
    fs, path = _filesystem(url, opts)
    fs.invalidate_cache(path)
    return bool(_retrying(url, policy, "exists", lambda: fs.exists(path)))


def remove(url: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
    """Delete the object at ``url`` (nothing happens when there is none).

    Raises:
        RemoteReadError: The delete failed (after the retries).
    """
    url = str(url)
    opts, policy = _split_options(url, storage_options)
    fs, path = _filesystem(url, opts)

    def rm() -> None:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)

    _retrying(url, policy, "delete", rm)
    fs.invalidate_cache(path)


def read_bytes(
    url: str, *, storage_options: Mapping[str, Any] | None = None, one_request: bool = False
) -> bytes:
    """The whole object at ``url`` (e.g. a ``.nii.gz`` to convert), with retries.

    Args:
        url: The object.
        storage_options: As for :class:`FsspecSource`.
        one_request: On S3, one GET (no size request first, no concurrent ranges): what a
            reader that promises one request per object asks for (a catalogue).

    Raises:
        FileNotFoundError: No object at ``url``.
        RemoteReadError: The read failed after the retries.
    """
    url = str(url)
    opts, policy = _split_options(url, storage_options)
    fs, path = _filesystem(url, opts)
    kw = {"max_concurrency": 1} if one_request and _is_s3(fs) else {}
    return _retrying(url, policy, "read", lambda: fs.cat_file(path, **kw))
