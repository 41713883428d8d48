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
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError, RemoteChangedError, RemoteReadError
from .source import ByteSource

__all__ = [
    "FsspecSource",
    "upload",
    "download",
    "exists",
    "list_files",
    "list_folders",
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

#: Objects of at most this many bytes are fetched whole by open and the first read.
WHOLE_OBJECT_LIMIT = 256 * 1024
#: Bytes fetched (and cached) from the start of a larger object by the first read: the
#: version-2 preamble and commit slots (144 B), a ``.msk`` header and meta, a version-1 header
#: and its index.
HEAD_BLOCK = 16 * 1024
#: Bytes fetched (and cached) from the end of an object (on S3 by the open request): a
#: version-2 archive keeps its newest index segment (and usually its space) there.
TAIL_BLOCK = 64 * 1024
#: :meth:`FsspecSource.read_many` reads ranges closer than this in one request.
COALESCE_GAP = 64 * 1024
#: Largest merged request of :meth:`FsspecSource.read_many` (bytes).
MAX_REQUEST_BYTES = 16 * 1024 * 1024
#: Requests in flight at once for one :meth:`FsspecSource.read_many` call.
MAX_CONCURRENCY = 8
#: Retries of a transient fault (so ``RETRIES + 1`` attempts); env ``MEDMASK_REMOTE_RETRIES``.
RETRIES = 5
#: First backoff (seconds); doubled per retry, full jitter; env ``MEDMASK_REMOTE_BACKOFF``.
BACKOFF_BASE = 0.1
#: Longest backoff between two attempts (seconds).
BACKOFF_MAX = 5.0
#: Seconds to establish a connection.
CONNECT_TIMEOUT = 10.0
#: Seconds of silence on a connection, and the deadline of one whole request; env
#: ``MEDMASK_REMOTE_TIMEOUT``.
TIMEOUT = 60.0
#: Part size of multipart uploads; smaller files (below twice this) are one PUT.
UPLOAD_PART_SIZE = 16 * 1024 * 1024

_S3_PROTOCOLS = ("s3", "s3a")
_OPTION_KEYS = ("medmask_retries", "medmask_backoff", "medmask_timeout")
_TRANSIENT_CODES = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "InternalError",
    "ServiceUnavailable",
    "503",
    "500",
    "502",
    "504",
    "429",
    "XAmzContentSHA256Mismatch",
    "BadDigest",
}


class _ShortBody(Exception):
    """A response carried fewer (or more) bytes than asked for."""


class _Changed(Exception):
    """The object is no longer the pinned version."""


# -- options ---------------------------------------------------------------------------------
def _env_number(name: str, default: float, cast: Callable[[str], float]) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from None
    if value < 0:
        raise ValueError(f"environment variable {name}={raw!r} must not be negative")
    return value


class _Policy:
    """Retry and timeout settings of one source (from options, environment, defaults)."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.retries = int(
            options.get("medmask_retries", _env_number("MEDMASK_REMOTE_RETRIES", RETRIES, int))
        )
        self.backoff = float(
            options.get(
                "medmask_backoff", _env_number("MEDMASK_REMOTE_BACKOFF", BACKOFF_BASE, float)
            )
        )
        self.timeout = float(
            options.get("medmask_timeout", _env_number("MEDMASK_REMOTE_TIMEOUT", TIMEOUT, float))
        )
        if self.retries < 0 or self.backoff < 0 or self.timeout <= 0:
            raise ValueError(
                f"medmask_retries ({self.retries}) and medmask_backoff ({self.backoff}) must "
                f"not be negative and medmask_timeout ({self.timeout}) must be positive"
            )

    def delay(self, attempt: int) -> float:
        """Backoff before retry number ``attempt`` (1-based): full jitter."""
        return random.uniform(0, min(BACKOFF_MAX, self.backoff * 2 ** (attempt - 1)))


def _split_options(
    url: str, storage_options: Mapping[str, Any] | None
) -> tuple[dict[str, Any], _Policy]:
    """fsspec options (with medmask's timeouts added for S3) and the retry policy."""
    opts = dict(storage_options or {})
    policy = _Policy(opts)
    for key in _OPTION_KEYS:
        opts.pop(key, None)
    if _protocol(url) in _S3_PROTOCOLS:
        # one attempt per request inside botocore and s3fs: medmask does the retrying, so
        # that attempts, backoff and request counts stay bounded and known
        config = dict(opts.get("config_kwargs") or {})
        config.setdefault("connect_timeout", min(CONNECT_TIMEOUT, policy.timeout))
        config.setdefault("read_timeout", policy.timeout)
        config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
        opts["config_kwargs"] = config
    return opts, policy


def _protocol(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def _filesystem(url: str, opts: Mapping[str, Any]) -> tuple[Any, str]:
    try:
        import fsspec.core
    except ImportError as exc:  # pragma: no cover - fsspec is a dependency of the remote extra
        raise ImportError(
            f'{url}: reading URLs needs fsspec (and s3fs for s3://): pip install "medmask[remote]"'
        ) from exc
    try:
        fs, path = fsspec.core.url_to_fs(url, **opts)
    except ImportError as exc:
        raise ImportError(
            f"{url}: no fsspec implementation for {_protocol(url)}:// is installed ({exc}); "
            'for s3:// pip install "medmask[remote]", for gs:// gcsfs, for az:// adlfs'
        ) from exc
    if _is_s3(fs):
        fs.retries = 1  # s3fs's own retry loop: one attempt (medmask retries; see above)
    return fs, path


def _is_s3(fs: Any) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return any(p in _S3_PROTOCOLS for p in protocols) and hasattr(fs, "split_path")


# -- error classification --------------------------------------------------------------------
def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _client_error(exc: BaseException) -> tuple[str, int] | None:
    """``(code, http status)`` of a botocore ClientError in the chain, if any."""
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if isinstance(response, dict) and "Error" in response:
            code = str(response["Error"].get("Code", ""))
            status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            return code, status
    return None


def _classify(exc: BaseException) -> str:
    """``"transient"``, ``"changed"``, ``"missing"`` or ``"fatal"``."""
    if isinstance(exc, _Changed):
        return "changed"
    if isinstance(exc, _ShortBody):
        return "transient"
    ce = _client_error(exc)
    if ce is not None:
        code, status = ce
        if code in ("PreconditionFailed", "412") or status == 412:
            return "changed"
        if code in ("NoSuchKey", "NoSuchVersion", "404", "NotFound") or status == 404:
            return "missing"
        if code in _TRANSIENT_CODES or status >= 500 or status == 429:
            return "transient"
        return "fatal"
    for e in _chain(exc):
        status = getattr(e, "status", None)  # aiohttp's ClientResponseError (HTTP(S) URLs)
        if isinstance(status, int) and 100 <= status < 600:
            if status == 412:
                return "changed"
            if status == 404:
                return "missing"
            return "transient" if status >= 500 or status in (408, 429) else "fatal"
    for e in _chain(exc):
        name = type(e).__name__
        if name in ("NoCredentialsError", "PartialCredentialsError", "ParamValidationError"):
            return "fatal"
        if isinstance(e, (FileNotFoundError,)):
            return "missing"
        if isinstance(e, (PermissionError, IsADirectoryError, NotADirectoryError)):
            return "fatal"
        if isinstance(e, (TimeoutError, asyncio.TimeoutError, ConnectionError, OSError)):
            return "transient"
        module = type(e).__module__ or ""
        if module.startswith(("aiohttp", "botocore", "aiobotocore", "urllib3", "http.client")):
            return "transient"
    return "fatal"


def _describe(exc: BaseException) -> str:
    ce = _client_error(exc)
    text = str(exc) or type(exc).__name__
    if ce is not None:
        code, status = ce
        return f"HTTP {status} {code}: {text}" if status else f"{code}: {text}"
    return f"{type(exc).__name__}: {text}"


# -- fork hygiene ----------------------------------------------------------------------------
#: s3fs clients inherited from the parent by a forked child: kept referenced and never
#: closed there. s3fs closes a client when it is garbage collected; in a child, a collection
#: that happened on the child's fsspec I/O thread scheduled that close on the child's event
#: loop for a client bound to the parent's, and every forked DataLoader worker logged
#: "Task exception was never retrieved ... attached to a different loop" (seen in a
#: bench_remote run; gone with this hook).
_INHERITED: list[Any] = []


def _after_fork_in_child() -> None:
    import sys
    import weakref

    core = sys.modules.get("s3fs.core")
    if core is None:
        return
    cls = core.S3FileSystem
    _INHERITED.extend(getattr(cls, "_cache", {}).values())
    registry = getattr(weakref.finalize, "_registry", {})
    for fin, info in list(registry.items()):
        if getattr(info.func, "__qualname__", "") == "S3FileSystem.close_session":
            _INHERITED.append(info.args)  # the client stays referenced, never closed here
            fin.detach()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- the source ------------------------------------------------------------------------------
class FsspecSource(ByteSource):
    """An object behind a URL, read with byte-range requests (see the module docstring).

    Args:
        url: The object's URL (``s3://bucket/key.mska``, ``gs://...``, ``https://...``,
            ``file:///...``, ``memory://...``).
        storage_options: Options of the fsspec filesystem (``key``/``secret``,
            ``client_kwargs={"endpoint_url": ...}``, ``anon``...), plus medmask's own
            ``medmask_retries``, ``medmask_backoff`` and ``medmask_timeout``.

    Raises:
        FileNotFoundError: No object at ``url``.
        RemoteReadError: The object's information cannot be read (after retries).
        ImportError: No fsspec implementation of the URL's protocol is installed.
        ValueError: An option is out of range.

    Several threads may share one source. Pickling carries only ``url`` and
    ``storage_options``: the copy opens (and pins) the object again where it is loaded.
    """

    is_local = False

    def __init__(self, url: str, *, storage_options: Mapping[str, Any] | None = None) -> None:
        self.name = str(url)
        self.url = self.name
        self.storage_options = dict(storage_options or {})
        self._opts, self.policy = _split_options(self.name, self.storage_options)
        self._lock = threading.Lock()
        self._prefetch_lock = threading.Lock()
        self._pid = -1
        self._fs: Any = None
        self._path = ""
        self._blocks: list[tuple[int, bytes]] = []  # cached (start, bytes), immutable data
        self._prefetched = False
        self._closed = False
        self._recheck = False
        #: requests this source has sent (every attempt counts), for tests and benchmarks
        self.requests = 0
        #: body bytes received by this source
        self.bytes_received = 0
        fs = self._filesystem()
        self._s3 = _is_s3(fs)
        self._bucket = self._key = self._version = None
        if self._s3:
            self._bucket, self._key, self._version = fs.split_path(self._path)
        self._size, self._etag, self._tag, version = self._call(
            self._info_once, field="header", opening=True
        )
        if self._s3 and self._version is None and version not in (None, "null"):
            self._version = version  # versioned bucket: pinned reads keep the old bytes

    # -- process-local filesystem -----------------------------------------------------------
    def _filesystem(self) -> Any:
        pid = os.getpid()
        if self._fs is not None and self._pid != pid:
            # a forked child: locks may have been held by a thread that did not come along
            self._lock = threading.Lock()
            self._prefetch_lock = threading.Lock()
        if self._fs is None or self._pid != pid:
            with self._lock:
                if self._fs is None or self._pid != pid:
                    self._fs, self._path = _filesystem(self.name, self._opts)
                    self._pid = pid
        return self._fs

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.name, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], storage_options=state["storage_options"])  # type: ignore[misc]

    # -- ByteSource ---------------------------------------------------------------------------
    def size(self) -> int:
        return self._size

    @property
    def tag(self) -> str | None:
        return self._tag

    def read(
        self, offset: int, length: int, *, field: str = "data", mask: str | None = None
    ) -> bytes:
        self._check_range(offset, length, field, mask)
        if length == 0:
            return b""
        hit = self._cached(offset, length)
        if hit is None and not self._prefetched:
            self._prefetch(field, mask)
            hit = self._cached(offset, length)
        if hit is not None:
            return hit
        return self._call(self._get_once, offset, offset + length, field=field, mask=mask)

    def read_many(self, ranges: Sequence[tuple[int, int]], *, field: str = "data") -> list[bytes]:
        """Several ranges in the order given: cached ones from the cache, the others merged
        into requests of neighbouring ranges (gap below :data:`COALESCE_GAP`), issued
        concurrently.

        Raises:
            CorruptFileError: A range lies past the end of the object.
            RemoteReadError: A request failed after the retries.
            RemoteChangedError: The object was replaced since it was opened.
        """
        for off, length in ranges:
            self._check_range(off, length, field, None)
        if not ranges:
            return []
        if not self._prefetched and any(n and self._cached(off, n) is None for off, n in ranges):
            self._prefetch(field, None)
        out: list[bytes | None] = [None] * len(ranges)
        todo = []
        for i, (off, length) in enumerate(ranges):
            hit = b"" if length == 0 else self._cached(off, length)
            if hit is None:
                todo.append((off, off + length, i))
            else:
                out[i] = hit
        groups = _coalesce(todo)
        if groups:
            spans = [(g[0], g[1]) for g in groups]
            bodies = self._call_many(spans, field=field)
            for (start, _end, members), body in zip(groups, bodies, strict=True):
                for off, end, i in members:
                    out[i] = body[off - start : end - start]
        return out  # type: ignore[return-value]

    def invalidate(self, offset: int | None = None, length: int | None = None) -> None:
        """Forget cached bytes (all, or those overlapping ``[offset, offset + length)``).

        For a reader that found a checksum mismatch in bytes read from this source: the
        next read fetches them again (a byte flipped in transit is fixed by a retry), and on
        backends without conditional reads it first checks that the object was not replaced
        (raising :class:`RemoteChangedError` if it was). See :func:`read_checked`.
        """
        with self._lock:
            if offset is None:
                self._blocks = []
            else:
                end = offset + (length or 0)
                self._blocks = [(s, b) for s, b in self._blocks if s + len(b) <= offset or s >= end]
            if not self._s3:
                self._recheck = True

    def close(self) -> None:
        with self._lock:
            self._blocks = []
            self._closed = True

    def __repr__(self) -> str:
        return f"FsspecSource({self.name!r}, size={self._size}, tag={self._tag!r})"

    # -- internals -----------------------------------------------------------------------------
    def _check_range(self, offset: int, length: int, field: str, mask: str | None) -> None:
        if self._closed:
            raise ValueError(f"{self.name}: I/O on a closed source")
        if self._pid != os.getpid():
            self._filesystem()  # forked: fresh locks and client before anything else
        if offset < 0 or length < 0:
            raise CorruptFileError(
                f"negative offset {offset} or length {length}",
                path=self.name,
                mask=mask,
                field=field,
            )
        if offset + length > self._size:
            raise CorruptFileError(
                f"section [{offset}, {offset + length}) lies past the end of the object "
                f"({self._size} bytes); it is truncated or damaged",
                path=self.name,
                mask=mask,
                field=field,
            )

    def _cached(self, offset: int, length: int) -> bytes | None:
        for start, data in self._blocks:
            if start <= offset and offset + length <= start + len(data):
                return data[offset - start : offset - start + length]
        return None

    def _prefetch(self, field: str, mask: str | None) -> None:
        if self._prefetched or self._size == 0:
            return
        with self._prefetch_lock:  # one prefetch even when threads open at once
            if not self._prefetched:
                self._prefetch_locked(field, mask)

    def _prefetch_locked(self, field: str, mask: str | None) -> None:
        have = self._blocks[0][0] if self._blocks else self._size  # S3: the tail came at open
        if have == 0:
            spans = []
        elif self._size <= WHOLE_OBJECT_LIMIT or have <= HEAD_BLOCK:
            spans = [(0, have)]  # the rest of a small object: one request
        elif self._blocks:
            spans = [(0, HEAD_BLOCK)]
        else:
            spans = [(0, HEAD_BLOCK), (self._size - TAIL_BLOCK, self._size)]
        bodies = self._call_many(spans, field=field, mask=mask) if spans else []
        with self._lock:
            self._blocks = [*self._blocks, *((s, b) for (s, _e), b in zip(spans, bodies))]
            self._prefetched = True

    # one attempt of each request kind -----------------------------------------------------
    def _info_once(self) -> tuple[int, str | None, str | None, str | None]:
        """``(size, etag, tag, version id)`` from one request."""
        fs = self._filesystem()
        self.requests += 1
        if self._s3:
            return _sync(fs, self._s3_open(fs), self.policy.timeout)
        info = fs.info(self._path)
        if info.get("type") == "directory":
            raise IsADirectoryError(errno.EISDIR, "is a folder, not an object", self.name)
        size = int(info["size"])
        tag = None
        for key in ("ETag", "etag", "VersionId", "generation", "md5Hash", "mtime", "created"):
            if info.get(key) is not None:
                tag = f"{key}={info[key]}"
                break
        return size, None, f"{tag};size={size}" if tag else f"size={size}", None

    async def _s3_open(self, fs: Any) -> tuple[int, str | None, str | None, str | None]:
        """One GET of the last :data:`TAIL_BLOCK` bytes (the whole object when it is no
        larger): its headers pin the size, ETag and version, its body is cached."""
        client = await _s3_client(fs, self._bucket)
        kw: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": self._key,
            "Range": f"bytes=-{TAIL_BLOCK}",
        }
        if self._version:
            kw["VersionId"] = self._version
        try:
            resp = await client.get_object(**kw)
        except Exception as exc:
            if _client_error(exc) not in (("InvalidRange", 416), ("416", 416)):
                raise
            # an empty object has no last bytes: ask for its information instead
            kw.pop("Range")
            head = await client.head_object(**kw)
            etag, version = head.get("ETag"), head.get("VersionId")
            size = int(head["ContentLength"])
            return size, etag, f"{etag};version={version};size={size}", version
        body_stream = resp["Body"]
        try:
            body = await body_stream.read()
        finally:
            body_stream.close()
        self.bytes_received += len(body)
        etag, version = resp.get("ETag"), resp.get("VersionId")
        total = _total_size(resp.get("ContentRange"))
        size = len(body) if total is None else total
        if len(body) != min(size, TAIL_BLOCK):
            raise _ShortBody(f"asked for the last {min(size, TAIL_BLOCK)} bytes, got {len(body)}")
        with self._lock:
            self._blocks = [(size - len(body), body)] if body else []
            self._prefetched = len(body) == size
        return size, etag, f"{etag};version={version};size={size}", version

    def _get_once(self, start: int, end: int) -> bytes:
        fs = self._filesystem()
        if self._s3:
            return _sync(fs, self._s3_get(fs, start, end), self.policy.timeout)
        if self._recheck:
            size, _etag, tag, _v = self._info_once()
            if size != self._size or tag != self._tag:
                raise _Changed(f"was {self._tag}, now {tag}")
            self._recheck = False
        self.requests += 1
        body = fs.cat_file(self._path, start=start, end=end)
        self.bytes_received += len(body)
        if len(body) != end - start:
            raise _ShortBody(f"asked for {end - start} bytes at {start}, got {len(body)}")
        return body

    async def _s3_get(self, fs: Any, start: int, end: int) -> bytes:
        client = await _s3_client(fs, self._bucket)
        kw: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": self._key,
            "Range": f"bytes={start}-{end - 1}",
        }
        if self._version:
            kw["VersionId"] = self._version
        elif self._etag:
            kw["IfMatch"] = self._etag
        self.requests += 1
        resp = await client.get_object(**kw)
        body_stream = resp["Body"]
        try:
            etag = resp.get("ETag")
            if self._etag and etag and etag != self._etag:
                raise _Changed(f"ETag was {self._etag}, now {etag}")
            total = _total_size(resp.get("ContentRange"))
            if total is not None and total != self._size:
                raise _Changed(f"size was {self._size} bytes, now {total}")
            body = await body_stream.read()
        finally:
            body_stream.close()
        self.bytes_received += len(body)
        if len(body) != end - start:
            raise _ShortBody(f"asked for {end - start} bytes at {start}, got {len(body)}")
        return body

    # retry loops --------------------------------------------------------------------------
    def _call(
        self,
        fn: Callable[..., Any],
        *args: Any,
        field: str,
        mask: str | None = None,
        opening: bool = False,
    ) -> Any:
        if self._closed:
            raise ValueError(f"{self.name}: I/O on a closed source")
        attempt = 0
        while True:
            try:
                return fn(*args)
            except Exception as exc:  # noqa: BLE001 - classified below
                kind = _classify(exc)
                if kind != "transient" or attempt >= self.policy.retries:
                    raise self._final(exc, kind, attempt + 1, field, mask, opening) from exc
                attempt += 1
                time.sleep(self.policy.delay(attempt))

    def _call_many(
        self, spans: Sequence[tuple[int, int]], *, field: str, mask: str | None = None
    ) -> list[bytes]:
        """Fetch several ``[start, end)`` spans concurrently, each with its own retries."""
        if len(spans) == 1:
            return [self._call(self._get_once, *spans[0], field=field, mask=mask)]
        fs = self._filesystem()
        if self._s3:
            return _sync(
                fs,
                self._s3_many(fs, spans, field, mask),
                self.policy.timeout * (self.policy.retries + 1) * (len(spans) + 1),
            )
        from concurrent.futures import ThreadPoolExecutor

        workers = min(MAX_CONCURRENCY, len(spans))
        with ThreadPoolExecutor(workers, thread_name_prefix="medmask-remote") as pool:
            futures = [
                pool.submit(self._call, self._get_once, s, e, field=field, mask=mask)
                for s, e in spans
            ]
            return [f.result() for f in futures]

    async def _s3_many(
        self, fs: Any, spans: Sequence[tuple[int, int]], field: str, mask: str | None
    ) -> list[bytes]:
        gate = asyncio.Semaphore(MAX_CONCURRENCY)

        async def one(start: int, end: int) -> bytes:
            attempt = 0
            while True:
                try:
                    async with gate:
                        return await asyncio.wait_for(
                            self._s3_get(fs, start, end), self.policy.timeout
                        )
                except Exception as exc:  # noqa: BLE001 - classified below
                    kind = _classify(exc)
                    if kind != "transient" or attempt >= self.policy.retries:
                        raise self._final(exc, kind, attempt + 1, field, mask) from exc
                    attempt += 1
                    await asyncio.sleep(self.policy.delay(attempt))

        return list(await asyncio.gather(*(one(s, e) for s, e in spans)))

    def _final(
        self,
        exc: BaseException,
        kind: str,
        attempts: int,
        field: str,
        mask: str | None,
        opening: bool = False,
    ) -> BaseException:
        if isinstance(exc, (RemoteReadError, CorruptFileError)):
            return exc
        if kind == "changed":
            what = str(exc) if isinstance(exc, _Changed) else _describe(exc)
            return RemoteChangedError(
                f"the object was replaced while it was open ({what}); "
                "reopen it to read the new version",
                url=self.name,
                mask=mask,
                field=field,
                cause=exc,
            )
        if kind == "missing":
            if opening:
                return FileNotFoundError(errno.ENOENT, "no such object", self.name)
            return RemoteChangedError(
                "the object was deleted while it was open",
                url=self.name,
                mask=mask,
                field=field,
                cause=exc,
            )
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        hint = ""
        if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            hint = (
                " (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or storage_options "
                "key/secret, or anon=True for public buckets)"
            )
        return RemoteReadError(
            f"reading failed{tried}: {_describe(exc)}{hint}",
            url=self.name,
            mask=mask,
            field=field,
            cause=exc,
        )


def _total_size(content_range: str | None) -> int | None:
    if not content_range or "/" not in content_range:
        return None
    total = content_range.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


async def _s3_client(fs: Any, bucket: str | None) -> Any:
    await fs.set_session()
    return await fs.get_s3(bucket)


def _sync(fs: Any, coro: Any, timeout: float) -> Any:
    """Run ``coro`` on the filesystem's event loop with an overall deadline."""
    from fsspec.asyn import sync

    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return sync(fs.loop, bounded)


def _coalesce(
    todo: Sequence[tuple[int, int, int]],
) -> list[tuple[int, int, list[tuple[int, int, int]]]]:
    """Merge ``(start, end, index)`` ranges into ``(start, end, members)`` requests."""
    groups: list[tuple[int, int, list[tuple[int, int, int]]]] = []
    for start, end, i in sorted(todo):
        if groups:
            g_start, g_end, members = groups[-1]
            if start - g_end < COALESCE_GAP and max(end, g_end) - g_start <= MAX_REQUEST_BYTES:
                members.append((start, end, i))
                groups[-1] = (g_start, max(g_end, end), members)
                continue
        groups.append((start, end, [(start, end, i)]))
    return groups


def read_checked(
    source: ByteSource,
    offset: int,
    length: int,
    check: Callable[[bytes], bool],
    *,
    field: str = "data",
    mask: str | None = None,
) -> bytes:
    """Read a range and, when ``check`` rejects it on a remote source, read it once more.

    For readers that verify checksums: a byte damaged in transit (or a stale cache) is
    fetched again instead of failing the read; a local file is never re-read. The caller
    still verifies the returned bytes and raises its own error if they stay wrong.

    Args:
        source: Any byte source.
        offset: Absolute offset.
        length: Number of bytes.
        check: Returns whether the bytes are right (e.g. their CRC matches the index).
        field: The section, for messages.
        mask: The mask, for messages.

    Returns:
        The bytes of the last read (those of the retry when the first ones were rejected).

    Raises:
        CorruptFileError: The range lies past the end.
        RemoteReadError: A remote read failed after its retries.
        RemoteChangedError: The object was replaced since the source was opened.
    """
    raw = source.read(offset, length, field=field, mask=mask)
    if source.is_local or check(raw):
        return raw
    invalidate = getattr(source, "invalidate", None)
    if invalidate is None:
        return raw
    invalidate(offset, length)
    return source.read(offset, length, field=field, mask=mask)


# -- whole objects ---------------------------------------------------------------------------
def _retrying(
    url: str, policy: _Policy, what: str, fn: Callable[[], Any], *, on_retry: Callable | None = None
):
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below
            kind = _classify(exc)
            if kind == "missing":
                raise FileNotFoundError(errno.ENOENT, f"{what}: no such object", url) from exc
            if kind != "transient" or attempt >= policy.retries:
                tried = f" after {attempt + 1} attempts" if attempt else ""
                raise RemoteReadError(
                    f"{what} failed{tried}: {_describe(exc)}", url=url, cause=exc
                ) from exc
            attempt += 1
            if on_retry is not None:
                on_retry()
            time.sleep(policy.delay(attempt))


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
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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


def read_bytes(url: str, *, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """The whole object at ``url`` (e.g. a ``.nii.gz`` to convert), with retries.

    Raises:
        FileNotFoundError: No object at ``url``.
        RemoteReadError: The read failed after the retries.
    """
    url = str(url)
    opts, policy = _split_options(url, storage_options)
    fs, path = _filesystem(url, opts)
    return _retrying(url, policy, "read", lambda: fs.cat_file(path))
