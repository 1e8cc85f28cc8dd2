"""The ASGI side of an SSE stream: write timeouts and disconnect detection.

Litestar's ``Stream`` awaits ``send`` without a deadline, so a client that stops reading would
pin its connection forever. Here every write has a deadline (a slow reader is disconnected),
and a client disconnect ends the session at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from litestar.response import Stream
from litestar.types import Receive, Scope, Send

from .sse import SseSession

log = structlog.get_logger(__name__)

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


async def _never():  # pragma: no cover - Litestar's own iterator is never used
    if False:
        yield b""


class SseResponse(Stream):
    def __init__(self, session: SseSession, *, write_timeout_s: float) -> None:
        super().__init__(content=_never(), media_type="text/event-stream", headers=dict(SSE_HEADERS))
        self._session = session
        self._write_timeout_s = write_timeout_s

    def to_asgi_response(self, app, request, **kwargs: Any):  # type: ignore[override]
        inner = super().to_asgi_response(app, request, **kwargs)
        return _SseAsgi(inner, self._session, self._write_timeout_s)


class _SseAsgi:
    def __init__(self, inner, session: SseSession, write_timeout_s: float) -> None:
        self._inner = inner
        self._session = session
        self._write_timeout_s = write_timeout_s

    async def _watch_disconnect(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._session.close("client_closed")
                return

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._inner.start_response(send=send)
        watcher = asyncio.create_task(self._watch_disconnect(receive))
        frames = self._session.frames()
        try:
            async for chunk in frames:
                try:
                    await asyncio.wait_for(
                        send({"type": "http.response.body", "body": chunk, "more_body": True}), self._write_timeout_s
                    )
                except asyncio.TimeoutError:
                    # Returning without completing the response makes the server drop the connection.
                    self._session.close("write_timeout")
                    log.info("sse.slow_client_dropped", org_id=self._session.subscriber.org_id)
                    return
                except Exception:  # noqa: BLE001 - the client went away mid-write
                    self._session.close("client_closed")
                    return
            try:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            except Exception:  # noqa: BLE001
                pass
        finally:
            watcher.cancel()
            await frames.aclose()
            self._session.close("client_closed")
            log.debug("sse.closed", reason=self._session.subscriber.closed_reason)
