"""Archives on object storage: byte-range reads and whole-object uploads through fsspec.

:class:`FsspecSource` is the :class:`~medmask.io.source.ByteSource` of a URL (``s3://``,
``gs://``, ``az://``, ``http(s)://``, ``file://``, ``memory://``...). It opens the
filesystem with :func:`fsspec.core.url_to_fs`, so fsspec's own configuration applies
(``FSSPEC_S3_ENDPOINT_URL``, ``AWS_*`` variables, ``~/.config/fsspec``), pins the
object's version at open and serves reads with byte-range requests:

* opening costs one request. On S3 it is a GET of the last :data:`TAIL_BLOCK` bytes
  (``Range: bytes=-N``), whose headers give the size, ETag and version id: an object of at
  most :data:`TAIL_BLOCK` bytes (the real 117-mask case is 37 kB) is then wholly cached.
  Elsewhere it is an ``info`` request;
* the first read fetches what the cache lacks: the rest of the object when it is at most
  :data:`WHOLE_OBJECT_LIMIT` bytes, otherwise the head (:data:`HEAD_BLOCK` bytes; on other
  backends the head and the tail at once, in two concurrent requests). Both ends stay
  cached, so the header, the commit slots, the space and the newest index segment of a
  version-2 archive usually come from the cache: opening one costs 1 request on S3 when it
  is small, 2 otherwise (3 on other backends);
* any other read is exactly one ranged GET (one mask: its blob);
* :meth:`FsspecSource.read_many` merges ranges less than :data:`COALESCE_GAP` bytes apart
  (up to :data:`MAX_REQUEST_BYTES` per request) and issues the requests concurrently (at most
  :data:`MAX_CONCURRENCY` at a time).

Consistency: on S3 every GET is conditional on the pinned version (``VersionId`` on
versioned buckets, which keeps returning the old bytes after a replacement; ``If-Match`` on
the ETag otherwise, which fails), and the ETag and total size of every response are
compared with the pinned ones, so bytes of two versions are never mixed: a replaced or
deleted object raises :class:`~medmask.errors.RemoteChangedError`. Other backends are
checked by size and by the format's checksums (see :meth:`FsspecSource.invalidate`).

Faults: transient errors (HTTP 5xx including 503 SlowDown, 429, reset or dropped
connections, short or truncated bodies, timeouts) are retried :data:`RETRIES` times with
exponential backoff and full jitter (:data:`BACKOFF_BASE` doubling up to
:data:`BACKOFF_MAX`); every request has a connect timeout (:data:`CONNECT_TIMEOUT`), a
read timeout and an overall deadline (:data:`TIMEOUT`), so nothing hangs. What stays
broken raises :class:`~medmask.errors.RemoteReadError` naming the URL, the mask and the
cause. Override per call with ``storage_options`` keys ``medmask_retries``,
``medmask_backoff`` and ``medmask_timeout`` (removed before the options reach fsspec), or
for the process with the environment variables ``MEDMASK_REMOTE_RETRIES``,
``MEDMASK_REMOTE_BACKOFF`` and ``MEDMASK_REMOTE_TIMEOUT``.

Processes: the filesystem client is created lazily in each process (it is re-created
after a fork; fsspec's event loop and connections never cross one), and pickling a source
carries only its URL and storage options, so sources travel to DataLoader workers
(fork or spawn) and Dask workers.

Writing: :func:`upload` puts a finished local file on the store whole or not at all.

Layout: :mod:`.config` (constants, options, the filesystem of a URL), :mod:`.faults`
(error classification, retries), :mod:`.source` (:class:`FsspecSource`, :func:`read_checked`),
:mod:`.transfers` (upload, download, exists, remove, read_bytes), :mod:`.listing`.
"""

from __future__ import annotations

from .config import (
    BACKOFF_BASE,
    BACKOFF_MAX,
    COALESCE_GAP,
    CONNECT_TIMEOUT,
    HEAD_BLOCK,
    MAX_CONCURRENCY,
    MAX_REQUEST_BYTES,
    RETRIES,
    TAIL_BLOCK,
    TIMEOUT,
    UPLOAD_PART_SIZE,
    WHOLE_OBJECT_LIMIT,
)
from .listing import list_entries, list_files, list_folders, object_info
from .source import FsspecSource, read_checked
from .transfers import download, exists, read_bytes, remove, upload

__all__ = [
    "FsspecSource",
    "upload",
    "download",
    "exists",
    "list_files",
    "list_folders",
    "list_entries",
    "object_info",
    "read_bytes",
    "remove",
    "read_checked",
    "WHOLE_OBJECT_LIMIT",
    "HEAD_BLOCK",
    "TAIL_BLOCK",
    "COALESCE_GAP",
    "MAX_REQUEST_BYTES",
    "MAX_CONCURRENCY",
    "RETRIES",
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "CONNECT_TIMEOUT",
    "TIMEOUT",
    "UPLOAD_PART_SIZE",
]
