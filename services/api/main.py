"""``inventiv api``: the API on uvicorn (uvloop + httptools) at INVENTIV_API_HOST:INVENTIV_API_PORT."""

from __future__ import annotations

import asyncio

import uvicorn
from litestar import Litestar

from services.runtime.logging import configure_logging
from services.runtime.settings import runtime_settings_from_env

from .app import asgi_entry, create_app
from .proxy.http_protocol import OpenAIErrorHttpToolsProtocol
from .settings import ApiSettings


class ApiServer(uvicorn.Server):
    """Ends open SSE streams as soon as shutdown starts: uvicorn waits for open connections to
    finish before running the lifespan shutdown, and an event stream never finishes by itself."""

    def __init__(self, config: uvicorn.Config, app: Litestar) -> None:
        super().__init__(config)
        self._litestar = app
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig, frame) -> None:  # type: ignore[override]
        resources = getattr(self._litestar.state, "resources", None)
        if resources is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(resources.hub.close_all, "shutdown")
        super().handle_exit(sig, frame)


def main() -> None:
    settings = runtime_settings_from_env()
    configure_logging("api", fmt=settings.log_format, level=settings.log_level)
    api = ApiSettings.from_env()
    app = create_app(settings, api)
    config = uvicorn.Config(
        asgi_entry(app),
        host=api.host,
        port=api.port,
        loop="uvloop",
        # httptools, with malformed requests under /v1 (e.g. CR/LF in a header) answered in OpenAI's error shape.
        http=OpenAIErrorHttpToolsProtocol,
        lifespan="on",
        access_log=False,  # the request middleware logs each request once, with its request id
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=10,
        log_config=None,
    )
    ApiServer(config, app).run()


if __name__ == "__main__":
    main()
