"""The byte source of a URL, :class:`FsspecSource` (see :mod:`medmask.io.remote` for how it
reads, caches, pins versions and retries), and :func:`read_checked`."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...errors import CorruptFileError, RemoteChangedError, RemoteReadError
from ..source import ByteSource, register_source
from .config import (
    COALESCE_GAP,
    HEAD_BLOCK,
    MAX_CONCURRENCY,
    MAX_REQUEST_BYTES,
    TAIL_BLOCK,
    WHOLE_OBJECT_LIMIT,
    _filesystem,
    _is_s3,
    _split_options,
)
from .faults import _Changed, _classify, _client_error, _describe, _ShortBody

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
        if offset < 0 or length < 0 or offset + length > self._size:
            raise self._range_error(offset, length, self._size, field=field, mask=mask)

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

    def _s3_args(self, byte_range: str) -> dict[str, Any]:
        """Arguments of a ranged S3 GET of the pinned object (its version when pinned)."""
        kw: dict[str, Any] = {"Bucket": self._bucket, "Key": self._key, "Range": byte_range}
        if self._version:
            kw["VersionId"] = self._version
        return kw

    async def _s3_open(self, fs: Any) -> tuple[int, str | None, str | None, str | None]:
        """One GET of the last :data:`TAIL_BLOCK` bytes (the whole object when it is no
        larger): its headers pin the size, ETag and version, its body is cached."""
        client = await _s3_client(fs, self._bucket)
        kw = self._s3_args(f"bytes=-{TAIL_BLOCK}")
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
        kw = self._s3_args(f"bytes={start}-{end - 1}")
        if not self._version and self._etag:
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


#: Every URL scheme without a byte source of its own is read through fsspec.
register_source(
    "*", lambda target: FsspecSource(target.path, storage_options=target.storage_options)
)
