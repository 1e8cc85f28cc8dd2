"""aiohttp's client behind the proxy's small upstream interface (``INVENTIV_PROXY_UPSTREAM_CLIENT=aiohttp``).

The native client (``upstream.py``) is the default: cheaper per request (benchmarks/README.md).
This one stays as a reference and a fallback; the integration tests run the failure cases with both.
"""

from __future__ import annotations

import asyncio

from .upstream import Target, UpstreamError


class _AiohttpResponse:
    """aiohttp's response behind the same small interface, its errors mapped to ``UpstreamError``."""

    __slots__ = ("_resp", "status", "headers")

    def __init__(self, resp) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()]

    def header(self, name: bytes, default: bytes | None = None) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return default

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except Exception as exc:
            raise _map_aiohttp_error(exc) from exc

    async def read_some(self) -> bytes:
        try:
            return await self._resp.content.readany()
        except Exception as exc:
            raise _map_aiohttp_error(exc) from exc

    def at_eof(self) -> bool:
        return self._resp.content.at_eof()

    def close(self) -> None:
        self._resp.close()

    def release(self) -> None:
        self._resp.release()


def _map_aiohttp_error(exc: BaseException) -> UpstreamError:
    import aiohttp

    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamError("connect timed out", kind="connect_timeout")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError("connect failed", kind="connect_error")
    if isinstance(exc, asyncio.TimeoutError):
        return UpstreamError("the engine did not answer in time", kind="read_timeout")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamError("broken response body", kind="protocol_error")
    return UpstreamError(f"upstream failed: {type(exc).__name__}", kind="disconnected")


class AiohttpUpstream:
    """The same client interface over one aiohttp ClientSession (keep-alive connector)."""

    def __init__(self, *, connect_timeout_s: float = 3.0, read_timeout_s: float = 300.0, keepalive_s: float = 4.0,
                 limit: int = 1000) -> None:
        self._args = (connect_timeout_s, read_timeout_s, keepalive_s, limit)
        self._session = None
        base = {"Content-Type": "application/json"}
        self._json_headers = {**base, "Accept": "application/json"}
        self._sse_headers = {**base, "Accept": "text/event-stream"}

    async def start(self) -> None:
        import aiohttp

        connect_timeout_s, read_timeout_s, keepalive_s, limit = self._args
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=keepalive_s),
            timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_connect=connect_timeout_s,
                                          sock_read=read_timeout_s),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
        )

    async def request(self, target: Target, body: bytes, request_id: str, stream: bool) -> _AiohttpResponse:
        headers = dict(self._sse_headers if stream else self._json_headers)
        headers["X-Request-Id"] = request_id
        if target.authorization is not None:  # the key of this worker's engine, formatted once per target
            headers["Authorization"] = target.authorization
        try:
            resp = await self._session.post(target.url, data=body, headers=headers, allow_redirects=False)
        except Exception as exc:
            raise _map_aiohttp_error(exc) from exc
        return _AiohttpResponse(resp)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
