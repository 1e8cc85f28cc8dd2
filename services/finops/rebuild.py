"""Make the ``finops`` schema exist and match its DDL file; rebuild it by replay when it does not.

Rebuild = the same projections, run by the same runner from sequence 1 into ``finops_next``,
then one minute-closer pass (the per-minute rows of still-open intervals), then a swap. There
is no separate rebuild code path, so rebuild == replay by construction, and two replays give
identical tables (tested). Every process doing this holds one advisory lock, so replicas
starting together do it once.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import datetime
from typing import AsyncIterator, Literal

import asyncpg
import structlog
from nats.aio.client import Client as NATS

from services.projector.runner import catch_up

from . import store
from .closer import Clock, close_minutes, utcnow
from .projection import BillingProjection, UsageProjection

log = structlog.get_logger(__name__)

Outcome = Literal["created", "current", "rebuilt"]


@asynccontextmanager
async def schema_lock(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", store.SCHEMA_LOCK_KEY)
        try:
            yield conn
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", store.SCHEMA_LOCK_KEY)


async def build_by_replay(nc: NATS, pool: asyncpg.Pool, schema: str, *, now: datetime) -> dict[str, int]:
    """(Re)create ``schema`` empty, replay EVENTS and USAGE into it, close the minutes before
    ``now``. Returns the checkpoints reached."""
    async with pool.acquire() as conn:
        await store.drop_schema(conn, schema)
        await store.create_schema(conn, schema)
    reached = {}
    for projection in (BillingProjection(), UsageProjection()):
        reached[projection.name] = await catch_up(nc, pool, projection, schema=schema)
    async with pool.acquire() as conn:
        await close_minutes(conn, schema, now)
    return reached


async def ensure_schema(nc: NATS, pool: asyncpg.Pool, *, schema: str = store.DEFAULT_SCHEMA,
                        clock: Clock = utcnow) -> Outcome:
    """``"created"`` (the runners then replay from sequence 1), ``"current"`` or ``"rebuilt"``."""
    store.checked_schema(schema)
    async with schema_lock(pool) as conn:
        state = await store.schema_state(conn, schema)
        if state == "missing":
            await store.create_schema(conn, schema)
            log.info("finops.schema.created", schema=schema)
            return "created"
        if state == "current":
            return "current"
        if state == "foreign":
            raise RuntimeError(f"schema {schema!r} exists but was not created by finops (no {schema}.meta); "
                               "drop or rename it")
        shadow = f"{schema}_next"
        log.warning("finops.schema.ddl_changed", schema=schema, action=f"rebuilding into {shadow} by replay")
        reached = await build_by_replay(nc, pool, shadow, now=clock())
        await store.swap_schema(conn, live=schema, built=shadow)
        log.warning("finops.schema.rebuilt", schema=schema, checkpoints=reached)
        return "rebuilt"
