"""Heartbeat recorder: HEARTBEATS stream -> ``public.worker_heartbeats`` (last one per worker).

Telemetry, not facts: not part of the rebuildable read model, no checkpoint. An ordered
consumer starts with the last message of every subject (what each worker said last) and then
follows new ones; after any error it starts over the same way, which is idempotent.

The instance id and org come from the SUBJECT ``hb.<org>.<instance>`` (NATS permissions let a
worker publish only on its own subject), never from the payload. Messages with a bad subject
or payload are counted and ignored. A row only moves forward in time: an older heartbeat
(by server timestamp) never overwrites a newer one.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import asyncpg
import msgspec
import structlog
from nats.aio.client import Client as NATS

from contracts import codec, subjects

from . import metrics
from .projections.action_log import uuid_or_none
from services.runtime.retry import Backoff, sleep_or_stop

from .runner import DATA_ERRORS, OrderedReader, StreamRecord

log = structlog.get_logger(__name__)

STREAM = "HEARTBEATS"
FILTER = "hb.>"

_json = msgspec.json.Encoder(decimal_format="string")

_UPSERT = """
INSERT INTO public.worker_heartbeats AS w (instance_id, org_id, status, model, received_at, stream_seq, payload)
SELECT instance_id, org_id, status, model, received_at, stream_seq, payload
FROM jsonb_populate_recordset(NULL::public.worker_heartbeats, $1::text::jsonb)
ON CONFLICT (instance_id) DO UPDATE SET
    org_id = EXCLUDED.org_id, status = EXCLUDED.status, model = EXCLUDED.model,
    received_at = EXCLUDED.received_at, stream_seq = EXCLUDED.stream_seq, payload = EXCLUDED.payload
WHERE w.received_at <= EXCLUDED.received_at
"""


def heartbeat_row(record: StreamRecord) -> tuple[dict[str, Any] | None, str | None]:
    """(row, None) for a valid heartbeat, (None, reason) otherwise."""
    try:
        org, instance = subjects.parse_heartbeat_subject(record.subject)
    except subjects.UnsafeSubjectToken:
        return None, "subject"
    instance_id = uuid_or_none(instance)
    if instance_id is None:
        return None, "subject"
    try:
        hb = codec.decode_heartbeat(record.data)
    except (msgspec.DecodeError, ValueError, TypeError):
        return None, "payload"
    payload = msgspec.to_builtins(hb)
    if "\\u0000" in _json.encode(payload).decode():
        return None, "payload"
    received = record.timestamp or datetime.now(timezone.utc)
    return {
        "instance_id": instance_id,
        "org_id": org,
        "status": hb.status,
        "model": hb.model,
        "received_at": received,
        "stream_seq": record.seq,
        "payload": payload,
    }, None


def rows_for(batch: list[StreamRecord]) -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for record in batch:
        row, reason = heartbeat_row(record)
        if row is None:
            metrics.HEARTBEATS_INVALID.labels(reason).inc()
            log.debug("heartbeat.ignored", subject=record.subject, reason=reason)
            continue
        prev = latest.get(row["instance_id"])
        if prev is None or (prev["received_at"], prev["stream_seq"]) <= (row["received_at"], row["stream_seq"]):
            latest[row["instance_id"]] = row
    return list(latest.values())


async def record_batch(pool: asyncpg.Pool, batch: list[StreamRecord]) -> int:
    rows = rows_for(batch)
    if not rows:
        return 0
    async with pool.acquire() as conn:
        try:
            await conn.execute(_UPSERT, _json.encode(rows).decode())
        except DATA_ERRORS:
            # One row Postgres refuses must not stop the others: write them one by one.
            for row in list(rows):
                try:
                    await conn.execute(_UPSERT, _json.encode([row]).decode())
                except DATA_ERRORS as exc:
                    rows.remove(row)
                    metrics.HEARTBEATS_INVALID.labels("refused").inc()
                    log.warning("heartbeat.refused", instance_id=row["instance_id"], error=str(exc))
    metrics.HEARTBEATS_RECORDED.inc(len(rows))
    return len(rows)


async def run_heartbeat_recorder(
    nc: NATS, pool: asyncpg.Pool, *, stop: asyncio.Event, batch_size: int = 500, on_recorded=None
) -> None:
    """Record heartbeats until ``stop``; restarts (last per subject) after any error."""
    js = nc.jetstream()
    backoff = Backoff()
    while not stop.is_set():
        try:
            async with OrderedReader(js, STREAM, FILTER, last_per_subject=True, max_buffer=batch_size * 4) as reader:
                while not stop.is_set():
                    batch = await reader.next_batch(batch_size, 2.0, stop)
                    if not batch:
                        if not stop.is_set():
                            await reader.pending_on_server()  # raises if the consumer is gone
                        continue
                    await record_batch(pool, batch)
                    backoff.reset()
                    if on_recorded is not None:
                        on_recorded(batch[-1].seq)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.HEARTBEAT_ERRORS.inc()
            delay = backoff.next()
            log.warning("heartbeats.retrying", error=f"{type(exc).__name__}: {exc}", retry_in_s=round(delay, 2))
            if isinstance(exc, (asyncpg.PostgresError, OSError, asyncpg.exceptions.InterfaceError)):
                try:
                    await pool.expire_connections()
                except Exception:
                    pass
            await sleep_or_stop(stop, delay)
