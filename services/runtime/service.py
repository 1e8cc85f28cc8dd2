"""Run one long-lived async service: logging, signals, metrics endpoint, clean shutdown.

Each service exposes ``async def serve(settings: RuntimeSettings, stop: asyncio.Event)`` that
returns once ``stop`` is set and its work is drained.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Awaitable, Callable

import structlog
from prometheus_client import start_http_server

from .logging import configure_logging
from .settings import RuntimeSettings, env_int, runtime_settings_from_env

Serve = Callable[[RuntimeSettings, asyncio.Event], Awaitable[None]]


def start_metrics_server(service: str, default_port: int) -> int | None:
    """Prometheus metrics on ``INVENTIV_<SERVICE>_METRICS_PORT`` (0 disables)."""
    port = env_int(f"INVENTIV_{service.upper()}_METRICS_PORT", default_port)
    if port <= 0:
        return None
    start_http_server(port, addr="127.0.0.1")
    return port


def run_service(service: str, serve: Serve, *, metrics_port: int) -> None:
    settings = runtime_settings_from_env()
    configure_logging(service, fmt=settings.log_format, level=settings.log_level)
    log = structlog.get_logger(service)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        port = start_metrics_server(service, metrics_port)
        log.info("service.starting", metrics_port=port)
        await serve(settings, stop)
        log.info("service.stopped")

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
