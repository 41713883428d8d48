"""What went wrong with a request: transient (retried with backoff), changed, missing or
fatal, and the retry loop of whole-object operations."""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Callable, Iterable
from typing import Any

from ...errors import RemoteReadError
from .config import _Policy

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
