"""``inventiv projector``: keeps the read model (``rm``) and ``worker_heartbeats`` up to date.

At start: connect (retrying until NATS and Postgres answer), make ``rm`` exist and match the
DDL file (creating or rebuilding it), then run the read-model projection and the heartbeat
recorder side by side until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio

import structlog

from services.runtime import natsio, pg
from services.runtime.retry import retry_until_stopped
from services.runtime.service import run_service
from services.runtime.settings import RuntimeSettings

from .heartbeats import run_heartbeat_recorder
from .read_model import LIVE_SCHEMA, ReadModelProjection
from .rebuild import LogProgress
from .runner import run_projection
from .schema import ensure_read_model

log = structlog.get_logger("projector")


async def serve(settings: RuntimeSettings, stop: asyncio.Event) -> None:
    nc = await retry_until_stopped(
        "projector", "nats", lambda: natsio.connect(settings.nats_url, name="projector"), stop)
    if nc is None:
        return
    pool = None
    try:
        pool = await retry_until_stopped(
            "projector", "postgres", lambda: pg.create_pool(settings.database_url, min_size=1, max_size=4), stop
        )
        if pool is None:
            return
        projection = ReadModelProjection()
        outcome = await retry_until_stopped(
            "projector", "read_model", lambda: ensure_read_model(nc, pool, projection, progress=LogProgress()), stop
        )
        if outcome is None:
            return
        log.info("projector.read_model", outcome=outcome)
        tasks = [
            asyncio.create_task(run_projection(nc, pool, projection, schema=LIVE_SCHEMA, stop=stop), name="read_model"),
            asyncio.create_task(run_heartbeat_recorder(nc, pool, stop=stop), name="heartbeats"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if pool is not None:
            await pool.close()
        try:
            await nc.drain()
        except Exception:
            pass


def main() -> None:
    run_service("projector", serve, metrics_port=9103)


if __name__ == "__main__":
    main()
