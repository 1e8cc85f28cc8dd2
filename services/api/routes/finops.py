"""FinOps read API: cost now, the dashboard summary, and actual cost per minute.

Scoped to the caller's organisation: every handler takes the ``org_id`` dependency (provided
by the app from the credential) and passes it to ``services.finops.queries``; the Postgres
pool comes from the ``pg_pool`` dependency. Money is a fixed-point string with 6 decimals,
field names carry their unit (``amount_eur``, ``burn_rate_eur_per_hour``). Paths and field
names follow the original's FinOps read API.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, TypeVar

import asyncpg
from litestar import Controller, get
from litestar.params import Parameter

from services.finops import queries
from services.finops.queries import ActualMinuteSeries, CostSummary, CurrentCost

from ..errors import ReadModelUnavailable

T = TypeVar("T")

# Prepared statements cached on a pooled connection break once when finops swaps its schema
# after a rebuild; a retry on a fresh statement then succeeds.
_RETRYABLE = (asyncpg.InvalidCachedStatementError, asyncpg.UndefinedTableError, asyncpg.FeatureNotSupportedError)
_STALE_OID_MARKERS = ("could not open relation with OID", "cache lookup failed for relation")


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _RETRYABLE) or (
        isinstance(exc, asyncpg.PostgresError) and any(m in str(exc) for m in _STALE_OID_MARKERS)
    )


async def _read(pool: asyncpg.Pool, query: Callable[..., Awaitable[T]], **kwargs: Any) -> T:
    async with pool.acquire() as conn:
        try:
            return await query(conn, **kwargs)
        except Exception as exc:  # noqa: BLE001 - filtered just below
            if not _retryable(exc) or conn.is_in_transaction():
                raise
            await conn.reload_schema_state()
            try:
                return await query(conn, **kwargs)
            except asyncpg.UndefinedTableError as again:
                raise ReadModelUnavailable(f"finops tables missing: {again}") from again


def _now() -> datetime:
    return datetime.now(timezone.utc)


class FinOpsController(Controller):
    path = "/finops"
    tags = ["finops"]

    @get("/cost/current", summary="Burn rate now, its forecasts, and the cost to date")
    async def cost_current(self, org_id: str, pg_pool: Any) -> CurrentCost:
        return await _read(pg_pool, queries.current_cost, org_id=org_id, now=_now())

    @get("/dashboard/costs/summary",
         summary="Burn rate, cost to date and spend windows per instance/model/org; tokens per API key/model")
    async def costs_summary(
        self,
        org_id: str,
        pg_pool: Any,
        limit_instances: int = Parameter(default=50, ge=0, le=1000, description="at most this many instances"),
    ) -> CostSummary:
        return await _read(pg_pool, queries.costs_summary, org_id=org_id, now=_now(), limit_instances=limit_instances)

    @get("/cost/actual/minute", summary="Actual cost per complete minute (minutes without cost are absent)")
    async def cost_actual_minute(
        self,
        org_id: str,
        pg_pool: Any,
        minutes: int = Parameter(default=60, ge=1, le=31 * 24 * 60, description="how far back, in minutes"),
        instance_id: str | None = Parameter(default=None, max_length=128, description="one instance only"),
    ) -> ActualMinuteSeries:
        return await _read(pg_pool, queries.actual_cost_minutes, org_id=org_id, now=_now(), minutes=minutes,
                           instance_id=instance_id)


route_handlers = [FinOpsController]
