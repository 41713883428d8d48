"""A real S3 endpoint on loopback for the tests, and a fault-injecting HTTP proxy.

* :func:`s3_server` (session fixture): a ``moto`` S3 server (``ThreadedMotoServer``) on
  127.0.0.1 and a free port, with dummy ``AWS_*`` credentials in the environment; stopped
  at the end of the session.
* :func:`s3` (fixture): a fresh bucket on that server and the ``storage_options`` that
  reach it (``{"client_kwargs": {"endpoint_url": ...}}``).
* :class:`FaultProxy` / :func:`fault_proxy` (fixture): an HTTP/1.1 proxy of our own
  between the client (s3fs) and moto that counts requests and bytes and injects faults
  per request: 503 SlowDown, 500, a dropped connection, a reset, a truncated body, a
  flipped byte, added latency, a stall.

Registered in ``tests/conftest.py`` with ``pytest_plugins``; usable from benchmarks too
(:func:`start_s3_server`, :class:`FaultProxy`).
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}

SLOWDOWN_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
INTERNAL_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


class S3Server:
    """A running moto S3 server on 127.0.0.1.

    Attributes:
        endpoint: ``http://127.0.0.1:PORT``.
        host: The address.
        port: The port.
    """

    def __init__(self) -> None:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        self.host, self.port = self._server.get_host_and_port()
        self.endpoint = f"http://{self.host}:{self.port}"

    def client(self) -> Any:
        """A plain boto3 client talking to the server directly (for setup and checks)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")

    def storage_options(self, endpoint: str | None = None, **extra: Any) -> dict[str, Any]:
        """fsspec options that reach the server (or ``endpoint``, e.g. a proxy)."""
        return {"client_kwargs": {"endpoint_url": endpoint or self.endpoint}, **extra}

    def new_bucket(self, *, versioned: bool = False) -> str:
        """Create a bucket with a unique name and return the name."""
        name = f"t{uuid.uuid4().hex[:20]}"
        c = self.client()
        c.create_bucket(Bucket=name)
        if versioned:
            c.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def stop(self) -> None:
        self._server.stop()


def start_s3_server() -> S3Server:
    """Set the dummy credentials in ``os.environ`` and start a moto server."""
    for k, v in CREDENTIALS.items():
        os.environ.setdefault(k, v)
    return S3Server()


@dataclass
class Fault:
    """One programmable fault.

    Attributes:
        kind: ``"503"``, ``"500"``, ``"drop"`` (close without answering), ``"reset"`` (TCP
            RST), ``"truncate"`` (send half the body, then close), ``"flip"`` (flip one bit
            of the body), ``"latency"`` (sleep ``delay`` first) or ``"stall"`` (answer
            nothing until the client gives up, or ``delay`` passes; then drop).
        times: How many matching requests it hits (``None``: all of them).
        method: Only requests of this method (``None``: any).
        ranged: Only requests with (True) or without (False) a Range header (``None``: any).
        path_contains: Only requests whose path contains this.
        delay: Seconds, for ``latency`` and ``stall``.
    """

    kind: str
    times: int | None = 1
    method: str | None = None
    ranged: bool | None = None
    path_contains: str | None = None
    delay: float = 0.0
    hits: int = 0

    def matches(self, method: str, path: str, headers: Any) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and method != self.method:
            return False
        if self.ranged is not None and ("Range" in headers) != self.ranged:
            return False
        return not (self.path_contains is not None and self.path_contains not in path)


@dataclass
class Record:
    """One request seen by the proxy."""

    method: str
    path: str
    range: str | None
    status: int
    body_bytes: int
    fault: str | None = None
    #: A stalled request whose client closed the connection (gave up) during the stall.
    abandoned: bool = False


@dataclass
class _State:
    upstream: tuple[str, int]
    faults: list[Fault] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)
    latency: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    max_in_flight: int = 0
    #: While set: each request waits there until that many are in the proxy together.
    gather: threading.Barrier | None = None
    gather_timeouts: int = 0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    state: _State  # set on the subclass made per proxy

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _client_gone(self) -> bool:
        """The client closed its end (it gave up waiting)."""
        ready, _, _ = select.select([self.connection], [], [], 0)
        if not ready:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _stall(self, rec: Record, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self._client_gone():
                rec.abandoned = True
                return
            time.sleep(0.01)

    def _handle(self) -> None:
        st = self.state
        with st.lock:
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            self._handle_counted()
        finally:
            with st.lock:
                st.in_flight -= 1

    def _handle_counted(self) -> None:
        st = self.state
        body = self._read_body()
        with st.lock:
            fault = next(
                (f for f in st.faults if f.matches(self.command, self.path, self.headers)), None
            )
            if fault is not None:
                fault.hits += 1
        rec = Record(self.command, self.path, self.headers.get("Range"), 0, 0, fault and fault.kind)
        with st.lock:
            st.records.append(rec)
        gather = st.gather
        if gather is not None:
            try:
                gather.wait()
            except threading.BrokenBarrierError:
                with st.lock:
                    st.gather_timeouts += 1
        if st.latency:
            time.sleep(st.latency)
        kind = fault.kind if fault else None
        if kind == "latency":
            time.sleep(fault.delay)
        if kind == "stall":
            self._stall(rec, fault.delay)
        if kind in ("drop", "stall"):
            self.close_connection = True
            return
        if kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if kind in ("503", "500"):
            payload = SLOWDOWN_XML if kind == "503" else INTERNAL_XML
            rec.status = int(kind)
            self.send_response(int(kind))
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            rec.body_bytes = len(payload)
            self.wfile.write(payload)
            return
        status, headers, payload = self._forward(body)
        rec.status = status
        if kind == "flip" and payload:
            pos = len(payload) // 2
            payload = payload[:pos] + bytes([payload[pos] ^ 0x10]) + payload[pos + 1 :]
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in _HOP and k.lower() != "content-length":
                self.send_header(k, v)
        if self.command == "HEAD":
            length = dict((k.lower(), v) for k, v in headers).get("content-length", "0")
            self.send_header("Content-Length", length)
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if kind == "truncate":
            half = payload[: len(payload) // 2]
            rec.body_bytes = len(half)
            self.wfile.write(half)
            self.wfile.flush()
            self.close_connection = True
            return
        rec.body_bytes = len(payload)  # before the write: the client may look at once
        self.wfile.write(payload)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = getattr(self, "_up", None)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        for attempt in range(2):  # a kept-alive upstream connection may have gone stale
            if conn is None:
                conn = http.client.HTTPConnection(*self.state.upstream, timeout=60)
                self._up = conn
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                return resp.status, resp.getheaders(), payload
            except (http.client.HTTPException, OSError):
                conn.close()
                conn = self._up = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            up = getattr(self, "_up", None)
            if up is not None:
                up.close()


class FaultProxy:
    """A counting, fault-injecting HTTP proxy on 127.0.0.1 in front of ``upstream``.

    Args:
        upstream: ``(host, port)`` of the real server.

    Attributes:
        url: ``http://127.0.0.1:PORT``, the endpoint to give the client.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.state = _State(upstream=upstream)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, kind: str, **kw: Any) -> Fault:
        """Program a fault (see :class:`Fault`) and return it (its ``hits`` count)."""
        fault = Fault(kind, **kw)
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault and forget the records."""
        with self.state.lock:
            self.state.faults.clear()
            self.state.records.clear()

    def set_latency(self, seconds: float) -> None:
        """Add ``seconds`` to every request."""
        self.state.latency = seconds

    def gather(self, n: int | None, timeout: float = 30.0) -> None:
        """From now on, hold each request until ``n`` requests are in the proxy together
        (``None``: stop holding). A request that waited ``timeout`` seconds in vain goes on
        and is counted in :meth:`gather_timeouts` (only against a hang: requests sent
        one after the other all time out there)."""
        self.state.gather = None if n is None else threading.Barrier(n, timeout=timeout)

    def gather_timeouts(self) -> int:
        """Requests that gave up waiting for the others (see :meth:`gather`)."""
        return self.state.gather_timeouts

    def max_in_flight(self) -> int:
        """The most requests the proxy handled at once since :meth:`reset_counts`."""
        return self.state.max_in_flight

    def reset_counts(self) -> None:
        with self.state.lock:
            self.state.records.clear()
            self.state.max_in_flight = self.state.in_flight
            self.state.gather_timeouts = 0

    def records(self, method: str | None = None) -> list[Record]:
        with self.state.lock:
            return [r for r in self.state.records if method is None or r.method == method]

    def count(self, method: str | None = None) -> int:
        """Requests seen (of ``method``)."""
        return len(self.records(method))

    def bytes_out(self, method: str | None = None) -> int:
        """Response body bytes sent to the client."""
        return sum(r.body_bytes for r in self.records(method))

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1 for the whole session (dummy AWS_* credentials set)."""
    pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    server = start_s3_server()
    try:
        yield server
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class S3Bucket:
    """A fresh bucket: ``name``, ``server``, ``storage_options`` and ``url(key)``."""

    server: S3Server
    name: str
    storage_options: dict[str, Any]

    def url(self, key: str) -> str:
        return f"s3://{self.name}/{key}"

    def put(self, key: str, data: bytes) -> str:
        self.server.client().put_object(Bucket=self.name, Key=key, Body=data)
        return self.url(key)

    def get(self, key: str) -> bytes:
        return self.server.client().get_object(Bucket=self.name, Key=key)["Body"].read()

    def keys(self, prefix: str = "") -> list[str]:
        out = self.server.client().list_objects_v2(Bucket=self.name, Prefix=prefix)
        return sorted(o["Key"] for o in out.get("Contents", []))


@pytest.fixture
def s3(s3_server: S3Server) -> S3Bucket:
    """A fresh bucket on the session's server, reached directly (no proxy)."""
    name = s3_server.new_bucket()
    return S3Bucket(s3_server, name, s3_server.storage_options(medmask_backoff=0.01))


@pytest.fixture
def fault_proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session's server."""
    proxy = FaultProxy((s3_server.host, s3_server.port))
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def s3p(s3_server: S3Server, fault_proxy: FaultProxy) -> S3Bucket:
    """A fresh bucket reached through :func:`fault_proxy` (``s3p.proxy``), quick backoff."""
    name = s3_server.new_bucket()
    bucket = S3Bucket(
        s3_server,
        name,
        s3_server.storage_options(fault_proxy.url, medmask_backoff=0.01, medmask_timeout=5),
    )
    bucket.proxy = fault_proxy  # type: ignore[attr-defined]
    return bucket


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
