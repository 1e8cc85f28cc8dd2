"""The minute closer: once a minute, write the per-minute cost rows of every open billing
interval for the minutes that have just closed.

Idempotent and safe to run anywhere at once: rows are upserts of values computed from the
interval alone (``costing.minute_costs``), each interval remembers how far its rows go
(``minutes_written_until``), and intervals another writer holds (the billing projection
closing them, another replica's closer) are skipped with ``SKIP LOCKED`` and picked up on the
next pass. After a restart the first pass writes every minute that was missed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable

import asyncpg
import structlog

from . import metrics, store
from .costing import MINUTE, floor_minute, minute_costs
from .money import ZERO, sum_amounts

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class CloseResult:
    closed_until: datetime
    intervals: int
    rows: int
    amount_eur: Decimal


async def close_minutes(conn: asyncpg.Connection, schema: str, now: datetime) -> CloseResult:
    """Write the rows of every complete minute before ``now`` for open intervals, in one transaction."""
    until = floor_minute(now)
    rows: list[store.MinuteRow] = []
    async with conn.transaction():
        records = await conn.fetch(
            f"""SELECT {store.INTERVAL_COLUMNS}, minutes_written_until FROM {schema}.billing_intervals
                WHERE stopped_at IS NULL AND started_at < $1
                  AND (minutes_written_until IS NULL OR minutes_written_until < $1)
                ORDER BY instance_id, started_at
                FOR UPDATE SKIP LOCKED""",
            until,
        )
        for record in records:
            iv = store.interval_from_row(record)
            rows.extend((iv, bucket, amount) for bucket, amount in
                        minute_costs(iv, until=until, from_bucket=record["minutes_written_until"]))
        await store.upsert_minute_rows(conn, schema, rows)
        if records:
            await conn.execute(
                f"""UPDATE {schema}.billing_intervals SET minutes_written_until = $3
                    FROM unnest($1::text[], $2::timestamptz[]) AS k(instance_id, started_at)
                    WHERE billing_intervals.instance_id = k.instance_id
                      AND billing_intervals.started_at = k.started_at""",
                [r["instance_id"] for r in records], [r["started_at"] for r in records], until,
            )
    return CloseResult(until, len(records), len(rows), sum_amounts(a for _, _, a in rows))


async def open_totals(conn: asyncpg.Connection, schema: str) -> tuple[int, Decimal]:
    row = await conn.fetchrow(
        f"SELECT count(*) AS n, coalesce(sum(hourly_price_eur), 0) AS rate FROM {schema}.billing_intervals "
        "WHERE stopped_at IS NULL"
    )
    return int(row["n"]), row["rate"] or ZERO


async def run_minute_closer(
    pool: asyncpg.Pool,
    schema: str,
    stop: asyncio.Event,
    *,
    clock: Clock = utcnow,
    delay_s: float = 1.0,
    on_closed: Callable[[CloseResult], None] | None = None,
) -> None:
    """Close minutes now (catch-up), then ``delay_s`` after every minute boundary, until ``stop``.

    The short delay lets a stop event stamped just before the boundary land first; it is not
    needed for correctness (the projection rewrites an interval's rows when it stops).
    """
    while not stop.is_set():
        now = clock()
        try:
            async with pool.acquire() as conn:
                result = await close_minutes(conn, schema, now)
                count, rate = await open_totals(conn, schema)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the next pass retries; a DB outage must not end the service
            metrics.CLOSER_RUNS.labels("error").inc()
            log.warning("finops.closer.failed", error=str(exc))
        else:
            metrics.CLOSER_RUNS.labels("ok").inc()
            metrics.MINUTE_ROWS.labels("closer").inc(result.rows)
            metrics.OPEN_INTERVALS.set(count)
            metrics.BURN_RATE.set(float(rate))
            metrics.LAST_CLOSED_MINUTE.set(result.closed_until.timestamp())
            if result.rows:
                log.info("finops.closer.closed", until=result.closed_until.isoformat(), intervals=result.intervals,
                         rows=result.rows, amount_eur=str(result.amount_eur))
            if on_closed is not None:
                on_closed(result)
        next_run = floor_minute(now) + MINUTE
        wait_s = max(0.05, (next_run - clock()).total_seconds() + delay_s)
        try:
            await asyncio.wait_for(stop.wait(), timeout=wait_s)
        except asyncio.TimeoutError:
            pass
