"""Writing billing events and usage records the way the orchestrator and the API do, and
reading FinOps tables back for comparison."""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from contracts import codec, subjects
from contracts.usage import UsageRecord
from services.runtime.eventstore import JetStreamEventStore

TABLES = {
    "billing_intervals": "instance_id, started_at",
    "cost_actual_minute": "instance_id, interval_started_at, bucket_minute",
    "usage_records": "id",
    "usage_minute": "org_id, bucket_minute, api_key_id, model",
    "usage_daily": "org_id, day, api_key_id, model",
}


async def append_all(js, events) -> int:
    store = JetStreamEventStore(js)
    last = 0
    for event in events:
        last = await store.append(event, expected_last_seq=None)
    return last


async def publish_usage(js, records: list[UsageRecord]) -> int:
    last = 0
    for rec in records:
        ack = await js.publish(subjects.usage_subject(rec.org_id), codec.encode(rec))
        last = ack.seq
    return last


async def dump(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple]]:
    """Every FinOps row, in key order (timestamps of bookkeeping columns left out)."""
    out = {}
    for table, order in TABLES.items():
        rows = await conn.fetch(f"SELECT * FROM {schema}.{table} ORDER BY {order}")
        out[table] = [tuple(r.values()) for r in rows]
    out["checkpoints"] = [tuple(r.values()) for r in
                          await conn.fetch(f"SELECT name, last_seq FROM {schema}.checkpoints ORDER BY name")]
    return out


def d(value) -> Decimal:
    return Decimal(str(value))
