"""``inventiv finops``: keeps the FinOps tables up to date.

At start: connect (retrying until NATS and Postgres answer), make the ``finops`` schema exist
and match its DDL (creating it, or rebuilding it by replay), then run side by side until
SIGINT/SIGTERM: the billing projection (EVENTS), the usage projection (USAGE) and the minute
closer. Any number of replicas may run: the runner serialises rival appliers on the
checkpoint row, and the closer's writes are idempotent upserts.
"""

from __future__ import annotations

import asyncio

import structlog

from services.projector.runner import catch_up, run_projection
from services.runtime import natsio, pg
from services.runtime.retry import retry_until_stopped
from services.runtime.service import run_service
from services.runtime.settings import RuntimeSettings

from .closer import run_minute_closer
from .projection import BillingProjection, UsageProjection
from .rebuild import ensure_schema
from .store import DEFAULT_SCHEMA

log = structlog.get_logger("finops")


async def run_finops(nc, pool, stop: asyncio.Event, *, schema: str = DEFAULT_SCHEMA, closer_delay_s: float = 1.0) -> None:
    """The three loops over an open NATS connection and pool (also used by tests and ``up``)."""
    outcome = await retry_until_stopped("finops", "schema", lambda: ensure_schema(nc, pool, schema=schema), stop)
    if outcome is None:
        return
    log.info("finops.schema", schema=schema, outcome=outcome)
    # Billing first, so the closer's first (catch-up) pass sees every interval already logged.
    billing = BillingProjection()
    if await retry_until_stopped(
        "finops", "billing_catch_up", lambda: catch_up(nc, pool, billing, schema=schema), stop
    ) is None:
        return
    tasks = [
        asyncio.create_task(run_projection(nc, pool, billing, schema=schema, stop=stop), name="billing"),
        asyncio.create_task(run_projection(nc, pool, UsageProjection(), schema=schema, stop=stop), name="usage"),
        asyncio.create_task(run_minute_closer(pool, schema, stop, delay_s=closer_delay_s), name="minute_closer"),
    ]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def serve(settings: RuntimeSettings, stop: asyncio.Event) -> None:
    nc = await retry_until_stopped(
        "finops", "nats", lambda: natsio.connect(settings.nats_url, name="finops"), stop)
    if nc is None:
        return
    pool = None
    try:
        pool = await retry_until_stopped(
            "finops", "postgres", lambda: pg.create_pool(settings.database_url, min_size=1, max_size=4), stop
        )
        if pool is None:
            return
        await run_finops(nc, pool, stop)
    finally:
        if pool is not None:
            await pool.close()
        try:
            await nc.drain()
        except Exception:
            pass


def main() -> None:
    run_service("finops", serve, metrics_port=9104)


if __name__ == "__main__":
    main()
