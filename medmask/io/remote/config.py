"""Settings of remote access: block sizes, retries and timeouts (module constants,
``storage_options`` keys ``medmask_*``, ``MEDMASK_REMOTE_*`` environment variables), and the
fsspec filesystem of a URL opened with them."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from typing import Any

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
