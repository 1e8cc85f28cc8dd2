"""Answering the client over ASGI: fixed responses, and knowing when the client went away."""

from __future__ import annotations

import asyncio

JSON_CTYPE = b"application/json"
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]

# A request still running after this long gets a task watching for the client's disconnect.
# Shorter requests (a fast embedding, a zero-delay engine) never pay for that task (~20 us CPU);
# a longer one is noticed at most this late, which is nothing next to a generation.
DISCONNECT_WATCH_AFTER_S = 0.05


async def send_simple(send, status: int, body: bytes, extra_headers: list | None = None) -> None:
    headers = [(b"content-type", JSON_CTYPE), (b"content-length", str(len(body)).encode())]
    if extra_headers:
        headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_whole(send, status: int, ctype: bytes, body: bytes, request_id: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode()),
                            (b"x-request-id", request_id.encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class ClientState:
    """Where the answer to one client stands; shared by the request task and its disconnect watcher."""

    __slots__ = ("done", "disconnected", "response_started", "_timer", "_watcher")

    def __init__(self) -> None:
        self.done = False
        self.disconnected = False
        self.response_started = False
        self._timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task | None = None

    def watch_disconnect(self, receive, task: asyncio.Task, after_s: float = DISCONNECT_WATCH_AFTER_S) -> None:
        """Cancel ``task`` if the client disconnects before its answer is complete (checked from ``after_s``)."""
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(after_s, self._start_watcher, loop, receive, task)

    def _start_watcher(self, loop, receive, task) -> None:
        self._timer = None
        if not self.done:
            self._watcher = loop.create_task(self._watch(receive, task))

    async def _watch(self, receive, task: asyncio.Task) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                if not self.done:
                    self.disconnected = True
                    task.cancel()
                return

    def finish(self) -> None:
        self.done = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done():
            watcher.cancel()
