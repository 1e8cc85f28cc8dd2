"""The read-model projection: EVENTS -> ``rm`` (instances, history, action log, identity).

One checkpoint (``read_model``) for every table, so they are always mutually consistent and a
rebuild swaps them together.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from contracts import codec

from .projections import INSTANCE_COLUMNS, EventMeta, instance_id_of, project_batch, project_unreadable
from .projections.action_log import PROJECTION_ERROR, action_log_row
from .rowops import InsertIfAbsent, apply_ops, ident
from .runner import DATA_ERRORS, StreamRecord
from .schema import check_stamp

LIVE_SCHEMA = "rm"
NAME = "read_model"


def decode(record: StreamRecord) -> tuple[Any, EventMeta, dict[str, str], str | None]:
    meta = EventMeta(record.seq, record.subject, record.timestamp)
    try:
        return codec.decode_event(record.data), meta, dict(record.headers), None
    except (msgspec.DecodeError, ValueError, TypeError) as exc:
        return None, meta, dict(record.headers), f"cannot decode: {exc}"


async def load_instances(conn: asyncpg.Connection, schema: str, instance_ids: set[str]) -> dict[str, dict[str, Any]]:
    if not instance_ids:
        return {}
    cols = ", ".join(INSTANCE_COLUMNS)
    rows = await conn.fetch(
        f"SELECT {cols} FROM {ident(schema)}.instances WHERE id = ANY($1::uuid[])", sorted(instance_ids)
    )
    out = {}
    for r in rows:
        row = dict(r)
        for key in ("id", "org_id", "zone_id", "instance_type_id", "model_id"):
            row[key] = str(row[key])
        out[row["id"]] = row
    return out


class ReadModelProjection:
    name = NAME
    stream = "EVENTS"
    filter_subject = "evt.>"

    async def apply(self, conn: asyncpg.Connection, schema: str, batch: list[StreamRecord]) -> None:
        await check_stamp(conn, schema)
        items = [decode(r) for r in batch]
        wanted = {iid for event, *_ in items if event is not None and (iid := instance_id_of(event))}
        instances = await load_instances(conn, schema, wanted)
        await apply_ops(conn, schema, project_batch(items, instances))

    async def poisoned(self, conn: asyncpg.Connection, schema: str, record: StreamRecord, exc: Exception) -> None:
        """Postgres refused this event's rows (a duplicate slug, a value out of range): log it as failed."""
        event, meta, headers, _ = decode(record)
        message = f"refused by Postgres: {type(exc).__name__}: {exc}"
        if event is not None:
            try:
                async with conn.transaction():
                    row = action_log_row(event, meta, status="failed", instance_id=instance_id_of(event),
                                         error_code=PROJECTION_ERROR, error_message=message)  # fmt: skip
                    await apply_ops(conn, schema, [InsertIfAbsent("action_logs", row)])
                return
            except DATA_ERRORS:
                pass  # the event's own fields are what Postgres refuses: log only where it was
        await apply_ops(conn, schema, project_unreadable(meta, headers, message, PROJECTION_ERROR))
