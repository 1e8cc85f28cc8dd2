"""``inventiv orchestrator``: pulls commands, decides, appends events, drives the provider."""

from __future__ import annotations

import asyncio

from services.runtime import natsio
from services.runtime.service import run_service
from services.runtime.settings import RuntimeSettings

from . import bootstrap


async def serve(settings: RuntimeSettings, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set, then drain in-flight commands and return.

    Mock worker processes are left running (they are servers); see ``bootstrap.stop_all_servers``.
    """
    nc = await natsio.connect(settings.nats_url, name="orchestrator")
    try:
        orchestrator = bootstrap.build_orchestrator(settings, nc)
        await orchestrator.run(stop)
    finally:
        await nc.drain()


def main() -> None:
    run_service("orchestrator", serve, metrics_port=9102)


if __name__ == "__main__":
    main()
