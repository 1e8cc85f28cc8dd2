"""Postgres side of FinOps: the schema (create, version check, swap) and the row writes the
projections and the minute closer share. Adapter: no cost rules here (see ``costing``)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Iterable, Literal

import asyncpg

from .metering import BillingInterval

SQL_PATH = Path(__file__).with_name("sql") / "finops.sql"
DEFAULT_SCHEMA = "finops"
# Fixed key for pg_advisory_lock: one finops process creates or rebuilds the schema at a time.
SCHEMA_LOCK_KEY = 0x0F1_0C05
_SCHEMA_RE = re.compile(r"^[a-z_][a-z0-9_]{0,50}$")

SchemaState = Literal["missing", "current", "stale", "foreign"]


def checked_schema(schema: str) -> str:
    """Schema names are interpolated into SQL: only plain lower-case identifiers pass."""
    if not _SCHEMA_RE.match(schema):
        raise ValueError(f"invalid schema name: {schema!r}")
    return schema


def ddl_text() -> str:
    return SQL_PATH.read_text()


def ddl_sha256() -> str:
    return hashlib.sha256(ddl_text().encode()).hexdigest()


def ddl(schema: str) -> str:
    return ddl_text().replace("{schema}", checked_schema(schema))


async def schema_state(conn: asyncpg.Connection, schema: str) -> SchemaState:
    exists = await conn.fetchval(
        "SELECT to_regclass($1) IS NOT NULL", f"{checked_schema(schema)}.meta"
    )
    if not exists:
        # A schema of that name holding tables we did not create (e.g. the original system's
        # `finops`) is never dropped or written into.
        foreign = await conn.fetchval(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
            schema,
        )
        return "foreign" if foreign else "missing"
    digest = await conn.fetchval(f"SELECT ddl_sha256 FROM {schema}.meta ORDER BY built_at DESC LIMIT 1")
    return "current" if digest == ddl_sha256() else "stale"


async def create_schema(conn: asyncpg.Connection, schema: str) -> None:
    """Create every table if missing and record the DDL hash. Idempotent."""
    async with conn.transaction():
        await conn.execute(ddl(schema))
        has_meta = await conn.fetchval(f"SELECT count(*) FROM {schema}.meta")
        if not has_meta:
            await conn.execute(f"INSERT INTO {schema}.meta (ddl_sha256) VALUES ($1)", ddl_sha256())


async def drop_schema(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {checked_schema(schema)} CASCADE")


async def swap_schema(conn: asyncpg.Connection, *, live: str, built: str) -> None:
    """Replace ``live`` with ``built`` in one transaction (readers see one or the other)."""
    checked_schema(live), checked_schema(built)
    async with conn.transaction():
        await conn.execute(f"DROP SCHEMA IF EXISTS {live} CASCADE")
        await conn.execute(f"ALTER SCHEMA {built} RENAME TO {live}")


# --- billing intervals --------------------------------------------------------------------

INTERVAL_COLUMNS = (
    "instance_id, started_at, org_id, model_name, provider_code, instance_type_code, "
    "hourly_price_eur, stopped_at, start_event_id, stop_event_id"
)


def interval_from_row(row: asyncpg.Record) -> BillingInterval:
    return BillingInterval(
        instance_id=row["instance_id"],
        org_id=row["org_id"],
        model_name=row["model_name"],
        provider_code=row["provider_code"],
        instance_type_code=row["instance_type_code"],
        hourly_price_eur=row["hourly_price_eur"],
        started_at=row["started_at"],
        stopped_at=row["stopped_at"],
        start_event_id=row["start_event_id"],
        stop_event_id=row["stop_event_id"],
    )


@dataclass(frozen=True, slots=True)
class StoredInterval:
    interval: BillingInterval
    minutes_written_until: datetime | None


async def lock_instances(conn: asyncpg.Connection, instance_ids: Iterable[str]) -> None:
    """Serialise writers of the same instances (two replicas on one batch) for this transaction.
    Sorted, so two writers never wait on each other in a cycle."""
    await conn.execute(
        """SELECT pg_advisory_xact_lock(hashtextextended('finops:' || id, 0))
           FROM (SELECT DISTINCT id FROM unnest($1::text[]) AS u(id) ORDER BY id) AS ordered""",
        sorted(set(instance_ids)),
    )


async def load_intervals_for_update(
    conn: asyncpg.Connection, schema: str, instance_ids: list[str]
) -> dict[str, list[StoredInterval]]:
    rows = await conn.fetch(
        f"""SELECT {INTERVAL_COLUMNS}, minutes_written_until FROM {schema}.billing_intervals
            WHERE instance_id = ANY($1::text[]) ORDER BY instance_id, started_at FOR UPDATE""",
        instance_ids,
    )
    out: dict[str, list[StoredInterval]] = {}
    for row in rows:
        out.setdefault(row["instance_id"], []).append(StoredInterval(interval_from_row(row), row["minutes_written_until"]))
    return out


async def insert_interval(conn: asyncpg.Connection, schema: str, iv: BillingInterval, *, start_seq: int) -> None:
    await conn.execute(
        f"""INSERT INTO {schema}.billing_intervals
              (instance_id, started_at, org_id, model_name, provider_code, instance_type_code,
               hourly_price_eur, start_event_id, start_seq)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (instance_id, started_at) DO NOTHING""",
        iv.instance_id, iv.started_at, iv.org_id, iv.model_name, iv.provider_code, iv.instance_type_code,
        iv.hourly_price_eur, iv.start_event_id, start_seq,
    )


async def close_interval(
    conn: asyncpg.Connection, schema: str, iv: BillingInterval, *, stop_seq: int, amount_eur: Decimal,
    minutes_written_until: datetime | None,
) -> None:
    await conn.execute(
        f"""UPDATE {schema}.billing_intervals
            SET stopped_at = $3, stop_event_id = $4, stop_seq = $5, amount_eur = $6, minutes_written_until = $7
            WHERE instance_id = $1 AND started_at = $2""",
        iv.instance_id, iv.started_at, iv.stopped_at, iv.stop_event_id, stop_seq, amount_eur, minutes_written_until,
    )


# --- per-minute cost rows -----------------------------------------------------------------

MinuteRow = tuple[BillingInterval, datetime, Decimal]  # (interval, bucket_minute, amount_eur)


async def upsert_minute_rows(conn: asyncpg.Connection, schema: str, rows: list[MinuteRow]) -> int:
    """Write per-minute cost rows; an existing row is only touched when its amount differs."""
    if not rows:
        return 0
    cols: tuple[list, ...] = ([], [], [], [], [], [], [], [])
    for iv, bucket, amount in rows:
        for col, value in zip(cols, (iv.instance_id, iv.started_at, bucket, iv.org_id, iv.model_name,
                                      iv.provider_code, iv.instance_type_code, amount)):
            col.append(value)
    await conn.execute(
        f"""INSERT INTO {schema}.cost_actual_minute AS m
              (instance_id, interval_started_at, bucket_minute, org_id, model_name, provider_code,
               instance_type_code, amount_eur)
            SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[], $5::text[],
                                 $6::text[], $7::text[], $8::numeric[])
            ON CONFLICT (instance_id, interval_started_at, bucket_minute)
            DO UPDATE SET amount_eur = EXCLUDED.amount_eur
            WHERE m.amount_eur IS DISTINCT FROM EXCLUDED.amount_eur""",
        *cols,
    )
    return len(rows)


async def delete_minute_rows_after(
    conn: asyncpg.Connection, schema: str, iv: BillingInterval, last_bucket: datetime | None
) -> None:
    """Remove rows an interval no longer covers (written while it looked open; ``None``: all)."""
    if last_bucket is None:
        await conn.execute(
            f"DELETE FROM {schema}.cost_actual_minute WHERE instance_id = $1 AND interval_started_at = $2",
            iv.instance_id, iv.started_at,
        )
    else:
        await conn.execute(
            f"""DELETE FROM {schema}.cost_actual_minute
                WHERE instance_id = $1 AND interval_started_at = $2 AND bucket_minute > $3""",
            iv.instance_id, iv.started_at, last_bucket,
        )
