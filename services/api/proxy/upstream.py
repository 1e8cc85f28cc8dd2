"""A small HTTP/1.1 client for the engines: keep-alive pools over asyncio protocols + httptools.

Why not aiohttp: on the proxy's hot path aiohttp's client is the largest single cost (request
and response objects, header multidicts, payload registry, timers); this does the one thing the
proxy needs -- POST prebuilt bytes to a known worker, relay the answer as it arrives -- with a
fraction of the work (see benchmarks/README.md). The request line and headers are built here
from trusted parts only (the worker's host/port/path; fixed headers), never from the client.

- One pool of idle connections per (host, port). A connection goes back to the pool only after
  a complete response with keep-alive; anything else (error, cancellation, early exit) closes it.
- Connections idle longer than ``keepalive_s`` are not reused (under the engines' own idle
  timeout, uvicorn's 5 s, so the engine never closes one we are about to use).
- ``connect_timeout_s`` bounds TCP connect; ``read_timeout_s`` bounds each wait for bytes.
- Responses: Content-Length, chunked (decoded by httptools) or until-close bodies.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import httptools


class UpstreamError(Exception):
    """The request failed. ``sent`` tells whether the request may have reached the engine."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind  # connect_error | connect_timeout | disconnected | read_timeout | protocol_error


class _Conn(asyncio.Protocol):
    __slots__ = ("transport", "parser", "status", "headers", "_chunks", "_waiter", "complete", "keep_alive",
                 "closed", "exc", "headers_done", "idle_since", "key", "_paused", "_framed")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._chunks: list[bytes] = []
        self._waiter: asyncio.Future | None = None
        self.complete = False
        self.keep_alive = False
        self.closed = False
        self.exc: Exception | None = None
        self.headers_done = False
        self.idle_since = 0.0
        self.key = None
        self._paused = False
        self._framed = False  # Content-Length or chunked: the body has an end other than the connection's

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("unexpected upgrade", kind="protocol_error"))
        except httptools.HttpParserError as exc:
            self._fail(UpstreamError(f"bad response: {exc}", kind="protocol_error"))
        if len(self._chunks) > 64 and not self._paused and self.transport is not None:
            self._paused = True  # backpressure: the client reads slower than the engine writes
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.complete and self.headers_done and not self._framed and self.exc is None:
            self.complete = True  # a body delimited by the end of the connection
            self.keep_alive = False
        if not self.complete and self.exc is None:
            self.exc = UpstreamError("connection closed by the engine", kind="disconnected")
        self._wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-length" or name == b"transfer-encoding":
            self._framed = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    # helpers
    def _fail(self, exc: Exception) -> None:
        if self.exc is None:
            self.exc = exc
        if self.transport is not None:
            self.transport.close()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers = []
        self._chunks = []
        self.complete = False
        self.keep_alive = False
        self.headers_done = False
        self.exc = None
        self._framed = False

    async def _wait(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        handle = loop.call_later(timeout_s, _timeout, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    async def wait_headers(self, timeout_s: float) -> None:
        while not self.headers_done:
            if self.exc is not None:
                raise self.exc
            if self.closed:
                raise UpstreamError("connection closed by the engine", kind="disconnected")
            await self._wait(timeout_s)

    async def read_some(self, timeout_s: float) -> bytes:
        """Next body bytes as they come; b"" at the end of the body."""
        while True:
            if self._chunks:
                chunks, self._chunks = self._chunks, []
                if self._paused and self.transport is not None:
                    self._paused = False
                    self.transport.resume_reading()
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            if self.complete:
                return b""
            if self.exc is not None:
                raise self.exc
            if self.closed:
                raise UpstreamError("connection closed by the engine", kind="disconnected")
            await self._wait(timeout_s)

    async def read_all(self, timeout_s: float) -> bytes:
        parts = []
        while True:
            part = await self.read_some(timeout_s)
            if not part:
                return b"".join(parts)
            parts.append(part)


def _timeout(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(UpstreamError("the engine did not answer in time", kind="read_timeout"))


class Response:
    """An upstream response being read. ``release()`` returns the connection to the pool (or closes it)."""

    __slots__ = ("_client", "_conn", "status", "headers", "_read_timeout_s", "_done")

    def __init__(self, client: "UpstreamClient", conn: _Conn, read_timeout_s: float) -> None:
        self._client = client
        self._conn = conn
        self.status = conn.status
        self.headers = conn.headers
        self._read_timeout_s = read_timeout_s
        self._done = False

    def header(self, name: bytes, default: bytes | None = None) -> bytes | None:
        for k, v in self._conn.headers:
            if k == name:
                return v
        return default

    async def read(self) -> bytes:
        return await self._conn.read_all(self._read_timeout_s)

    def at_eof(self) -> bool:
        """The whole body was received and handed out: the next ``read_some`` would return b""."""
        conn = self._conn
        return conn.complete and not conn._chunks

    async def read_some(self) -> bytes:
        return await self._conn.read_some(self._read_timeout_s)

    def close(self) -> None:
        """Drop the connection (the engine sees the disconnect and stops generating)."""
        if not self._done:
            self._done = True
            if self._conn.transport is not None:
                self._conn.transport.close()

    def release(self) -> None:
        if self._done:
            return
        self._done = True
        conn = self._conn
        if conn.complete and conn.keep_alive and not conn.closed and conn.exc is None and not conn._chunks:
            self._client._put_back(conn)
        elif conn.transport is not None:
            conn.transport.close()


class Target:
    """Where one endpoint of one worker is, with its request head prebuilt (trusted parts only).

    ``api_key`` is the key *this worker's* engine requires (derived per instance, targets.py): it is
    baked into the prebuilt head once, so the hot path never computes or formats it per request.
    """

    __slots__ = ("host", "port", "ssl", "path", "url", "head_json", "head_sse", "authorization")

    def __init__(self, base: str, path: str, *, api_key: str | None = None) -> None:
        from yarl import URL

        url = URL(base + path, encoded=True)
        host = url.raw_host or ""
        if not host or any(c in host for c in "\r\n \t/@"):
            raise ValueError("bad upstream host")
        self.host = host
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.ssl = url.scheme == "https"
        self.path = path
        self.url = url
        host_header = host if url.is_default_port() else f"{host}:{self.port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if url.is_default_port() else f"[{host}]:{self.port}"
        common = (f"POST {url.raw_path} HTTP/1.1\r\nhost: {host_header}\r\n"
                  "content-type: application/json\r\n")
        self.authorization = None
        if api_key:
            if not api_key.isprintable() or any(c.isspace() for c in api_key):
                raise ValueError("bad upstream api key")  # never echoed: it is a secret
            self.authorization = f"Bearer {api_key}"
            common += f"authorization: {self.authorization}\r\n"
        self.head_json = (common + "accept: application/json\r\n").encode("latin-1")
        self.head_sse = (common + "accept: text/event-stream\r\n").encode("latin-1")


class UpstreamClient:
    def __init__(self, *, connect_timeout_s: float = 3.0, read_timeout_s: float = 300.0,
                 keepalive_s: float = 4.0, max_idle_per_host: int = 256) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.keepalive_s = keepalive_s
        self.max_idle_per_host = max_idle_per_host
        self._idle: dict[tuple, deque[_Conn]] = {}
        self._closed = False
        self._ssl_context = None

    async def start(self) -> None:
        pass

    def _put_back(self, conn: _Conn) -> None:
        if self._closed:
            conn.transport.close()
            return
        pool = self._idle.setdefault(conn.key, deque())
        if len(pool) >= self.max_idle_per_host:
            conn.transport.close()
            return
        conn.reset()
        conn.idle_since = time.monotonic()
        pool.append(conn)

    async def _connect(self, target: Target) -> _Conn:
        loop = asyncio.get_running_loop()
        ssl = None
        if target.ssl:
            if self._ssl_context is None:
                import ssl as ssl_mod

                self._ssl_context = ssl_mod.create_default_context()
            ssl = self._ssl_context
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Conn, target.host, target.port, ssl=ssl,
                                       server_hostname=target.host if ssl else None),
                self.connect_timeout_s)
        except asyncio.TimeoutError:
            raise UpstreamError("connect timed out", kind="connect_timeout") from None
        except OSError as exc:
            raise UpstreamError(f"connect failed: {exc.strerror or type(exc).__name__}", kind="connect_error") \
                from None
        conn.key = (target.host, target.port, target.ssl)
        return conn

    def _take_idle(self, key) -> _Conn | None:
        pool = self._idle.get(key)
        if not pool:
            return None
        limit = time.monotonic() - self.keepalive_s
        while pool:
            conn = pool.pop()  # most recently used first: the warmest connection
            if conn.closed or conn.idle_since < limit or conn.transport is None or conn.transport.is_closing():
                if conn.transport is not None:
                    conn.transport.close()
                continue
            return conn
        return None

    async def request(self, target: Target, body: bytes, request_id: str, stream: bool) -> "Response":
        head = target.head_sse if stream else target.head_json
        data = b"%sx-request-id: %s\r\ncontent-length: %d\r\n\r\n%s" % (head, request_id.encode(), len(body), body)
        conn = self._take_idle((target.host, target.port, target.ssl))
        reused = conn is not None
        if conn is None:
            conn = await self._connect(target)
        try:
            conn.transport.write(data)
            await conn.wait_headers(self.read_timeout_s)
        except UpstreamError as exc:
            conn.transport.close()
            if not (reused and exc.kind == "disconnected" and not conn.headers_done):
                raise
            # The engine closed an idle connection just as we reused it: once more on a fresh one.
            conn = await self._connect(target)
            try:
                conn.transport.write(data)
                await conn.wait_headers(self.read_timeout_s)
            except BaseException:
                conn.transport.close()
                raise
        except BaseException:
            conn.transport.close()
            raise
        return Response(self, conn, self.read_timeout_s)

    async def close(self) -> None:
        self._closed = True
        for pool in self._idle.values():
            for conn in pool:
                if conn.transport is not None:
                    conn.transport.close()
        self._idle.clear()
