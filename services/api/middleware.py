"""Request id, structured access log and HTTP metrics, as one pure ASGI middleware.

The request id comes from a well-formed ``X-Request-Id`` header or is generated; it is echoed on
the response, bound to every log line of the request, and becomes the correlation id of the
commands and events the request causes.
"""

from __future__ import annotations

import re
import time

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from contracts.ids import new_id

from . import metrics

log = structlog.get_logger("inventiv.api.access")

REQUEST_ID_HEADER = "x-request-id"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")


def request_id_from_header(raw: bytes | None) -> str:
    if raw:
        try:
            value = raw.decode("ascii")
        except UnicodeDecodeError:
            return new_id()
        if _SAFE_REQUEST_ID.match(value):
            return value
    return new_id()


def request_context_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        raw = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = request_id_from_header(raw)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        method = scope.get("method", "")

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await app(scope, receive, send_wrapper)
            finally:
                elapsed = time.perf_counter() - started
                route = scope.get("path_template") or "<unmatched>"
                metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
                metrics.HTTP_LATENCY.labels(method, route).observe(elapsed)
                if route not in ("/healthz", "/metrics", "/readyz"):
                    log.info("http.request", method=method, route=route, path=scope.get("path"), status=status,
                             duration_ms=round(elapsed * 1000, 2))

    return middleware
