"""A proxy-only app: the OpenAI endpoints and ``/healthz``, nothing else of the API.

For tests, benchmarks, and running the data plane as its own process::

    NATS_URL=nats://127.0.0.1:4222 [DATABASE_URL=postgresql://...] \
        python -m services.api.proxy.standalone --host 127.0.0.1 --port 8010 [--litestar-mount]

``/v1/*`` is dispatched to the proxy before Litestar (``Proxy.wrap_asgi``), as ``inventiv api``
serves it (``services.api.app.asgi_entry``). ``--litestar-mount`` sends it through Litestar's
mount instead, to measure what that costs. ``--reuse-port`` binds with ``SO_REUSEPORT``, so that several
processes can serve one port, the kernel spreading connections over them (one per core).
Requests under ``/v1`` that the HTTP parser refuses get OpenAI-shaped 400s (``http_protocol``).
"""

from __future__ import annotations

import argparse
import os
import socket
from contextlib import asynccontextmanager

from services.runtime import natsio

from ..keycache import KeyCache
from . import Proxy, ProxySettings, build_proxy
from .http_protocol import OpenAIErrorHttpToolsProtocol


class ProxyStack:
    """NATS connection + optional pool + key cache + proxy, started and stopped together."""

    def __init__(self, *, nats_url: str, database_url: str | None = None, settings: ProxySettings | None = None,
                 authenticate_session=None) -> None:
        self.nats_url = nats_url
        self.database_url = database_url
        self.settings = settings or ProxySettings.from_env()
        self.authenticate_session = authenticate_session
        self.nc = None
        self.pool = None
        self.key_cache = KeyCache()
        self.proxy: Proxy | None = None

    def build(self) -> Proxy:
        # The proxy object (and its route handlers) exists before start, as in the API's app factory.
        self.proxy = build_proxy(nc=None, pool=None, key_cache=self.key_cache, settings=self.settings,
                                 authenticate_session=self.authenticate_session)
        return self.proxy

    async def start(self) -> None:
        self.nc = await natsio.connect(self.nats_url, name="inventiv-proxy")
        if self.database_url:
            from services.runtime import pg

            self.pool = await pg.create_pool(self.database_url, min_size=1, max_size=4)
        await self.key_cache.start(self.nc, self.pool)
        proxy = self.proxy or self.build()
        await proxy.start(nc=self.nc, pool=self.pool)

    async def stop(self) -> None:
        if self.proxy is not None:
            await self.proxy.stop()
        await self.key_cache.stop()
        if self.pool is not None:
            await self.pool.close()
        if self.nc is not None:
            await self.nc.drain()


def create_app(*, nats_url: str | None = None, database_url: str | None = None,
               settings: ProxySettings | None = None, authenticate_session=None, bypass_litestar: bool = True):
    """A minimal Litestar app containing only the proxy (mounted at ``/v1``) and ``GET /healthz``.

    ``bypass_litestar=True`` (the default, as production serves it) returns the app wrapped by
    ``Proxy.wrap_asgi``: ``/v1/*`` is dispatched to the proxy before Litestar. False: through the mount.
    """
    from litestar import Litestar, get

    stack = ProxyStack(
        nats_url=nats_url or os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
        database_url=database_url if database_url is not None else (os.environ.get("DATABASE_URL") or None),
        settings=settings,
        authenticate_session=authenticate_session,
    )
    proxy = stack.build()

    @asynccontextmanager
    async def lifespan(_app):
        await stack.start()
        try:
            yield
        finally:
            await stack.stop()

    @get("/healthz", sync_to_thread=False)
    def healthz() -> dict:
        return {"status": "ok"}

    app = Litestar(route_handlers=[*proxy.route_handlers, healthz], lifespan=[lifespan], openapi_config=None)
    app.state.proxy_stack = stack
    if bypass_litestar:
        wrapped = proxy.wrap_asgi(app)
        wrapped.state = app.state  # type: ignore[attr-defined]
        return wrapped
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from services.runtime.logging import configure_logging

    parser = argparse.ArgumentParser(description="Inventiv OpenAI proxy, standalone")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    parser.add_argument("--litestar-mount", action="store_true",
                        help="answer /v1 through Litestar's mount instead of before Litestar (to measure it)")
    parser.add_argument("--reuse-port", action="store_true",
                        help="bind with SO_REUSEPORT (several processes on one port)")
    parser.add_argument("--log-level", default=os.environ.get("INVENTIV_LOG_LEVEL", "warning"))
    args = parser.parse_args(argv)
    configure_logging("proxy", fmt=os.environ.get("INVENTIV_LOG_FORMAT", "console"), level=args.log_level)
    app = create_app(bypass_litestar=not args.litestar_mount)
    config = uvicorn.Config(app, host=args.host, port=args.port, loop="uvloop", http=OpenAIErrorHttpToolsProtocol,
                            access_log=False, log_level=args.log_level, lifespan="on", timeout_graceful_shutdown=30,
                            proxy_headers=False)  # the proxy never looks at the client's address
    sockets = None
    if args.reuse_port:
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((args.host, args.port))
        sock.set_inheritable(True)
        sockets = [sock]
    uvicorn.Server(config).run(sockets=sockets)


if __name__ == "__main__":
    main()
