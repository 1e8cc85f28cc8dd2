"""The two FinOps projections, run by the projector's generic runner
(``services.projector.runner``): billing (EVENTS → intervals and their per-minute costs) and
usage (USAGE → token totals).

The runner applies a batch and advances ``{schema}.checkpoints`` in one transaction, so a
batch is applied exactly once. Each ``apply`` is idempotent on top of that: the billing fold
ignores events it has already recorded (``metering``), usage records dedupe by id, and the
per-minute rows are upserts of deterministic values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, Sequence

import asyncpg
import msgspec
import structlog

from contracts import codec, subjects
from contracts.events import InstanceBillingStarted, InstanceBillingStopped
from contracts.usage import UsageRecord

from . import metrics, store
from .costing import MINUTE, cost_of_interval, floor_minute, last_bucket, minute_costs
from .metering import BillingInterval, apply_billing_event, is_billing_event, utc
from .money import is_clean_price
from .usage import NO_API_KEY, bucket_usage

log = structlog.get_logger(__name__)

EVENTS_STREAM = "EVENTS"
USAGE_STREAM = "USAGE"


class StreamRecordLike(Protocol):
    """What a projection reads from the runner's ``StreamRecord``."""

    seq: int
    subject: str
    data: bytes


@dataclass(frozen=True, slots=True)
class _Pending:
    interval: BillingInterval
    is_new: bool
    start_seq: int
    stop_seq: int | None
    minutes_written_until: datetime | None  # as loaded (None for an interval new in this batch)


class BillingProjection:
    """Billing intervals and per-minute actual costs from ``instance.billing_*`` events."""

    name = "finops_billing"
    stream = EVENTS_STREAM
    # Whole-token wildcards only: every instance event; apply() keeps the two billing types.
    filter_subject = "evt.*.instance.*.*"

    async def apply(self, conn: asyncpg.Connection, schema: str, batch: Sequence[StreamRecordLike]) -> None:
        events: list[tuple[int, InstanceBillingStarted | InstanceBillingStopped]] = []
        for record in batch:
            if not record.subject.endswith((".billing_started", ".billing_stopped")):
                continue
            try:
                event = codec.decode_event(record.data)
            except codec.DecodeError as exc:
                metrics.EVENTS_SKIPPED.labels(self.name).inc()
                log.error("finops.billing.undecodable", seq=record.seq, subject=record.subject, error=str(exc))
                continue
            if is_billing_event(event):
                events.append((record.seq, event))  # type: ignore[arg-type]
        if not events:
            return
        instance_ids = sorted({event.instance_id for _, event in events})
        await store.lock_instances(conn, instance_ids)
        loaded = await store.load_intervals_for_update(conn, schema, instance_ids)

        state: dict[str, tuple[BillingInterval, ...]] = {
            iid: tuple(s.interval for s in stored) for iid, stored in loaded.items()
        }
        written_until = {(s.interval.instance_id, s.interval.started_at): s.minutes_written_until
                         for stored in loaded.values() for s in stored}
        pending: dict[tuple[str, object], _Pending] = {}
        for seq, event in events:
            tag = "billing_started" if isinstance(event, InstanceBillingStarted) else "billing_stopped"
            before = state.get(event.instance_id, ())
            after = apply_billing_event(before, event)
            if after == before:
                metrics.BILLING_EVENTS.labels(tag, "ignored").inc()
                log.info("finops.billing.ignored", seq=seq, event_id=event.id, instance_id=event.instance_id, type=tag)
                continue
            metrics.BILLING_EVENTS.labels(tag, "applied").inc()
            state[event.instance_id] = after
            changed = after[-1]
            key = (changed.instance_id, changed.started_at)
            if isinstance(event, InstanceBillingStarted):
                if not is_clean_price(event.hourly_price_eur):
                    metrics.INVALID_PRICES.inc()
                    log.warning("finops.billing.invalid_price", seq=seq, instance_id=event.instance_id,
                                price=str(event.hourly_price_eur))
                pending[key] = _Pending(changed, True, seq, None, None)
            else:
                prior = pending.get(key)
                pending[key] = _Pending(
                    changed,
                    prior.is_new if prior else False,
                    prior.start_seq if prior else 0,
                    seq,
                    written_until.get(key),
                )

        for item in pending.values():
            iv = item.interval
            if item.is_new:
                await store.insert_interval(conn, schema, iv, start_seq=item.start_seq)
            if item.stop_seq is not None:
                await self._write_closed(conn, schema, item)

    async def _write_closed(self, conn: asyncpg.Connection, schema: str, item: _Pending) -> None:
        """Final state of a stopped interval: its cost, and per-minute rows up to its stop
        (the last partial minute included), replacing rows the closer wrote while it was open."""
        iv = item.interval
        assert iv.stopped_at is not None
        amount = cost_of_interval(iv, iv.stopped_at)
        last = last_bucket(iv)
        written = item.minutes_written_until
        # Rows before min(written, stop minute) are whole minutes inside the interval, already
        # written by the closer with the same values; rewrite from there on.
        from_bucket = None if written is None else min(written, floor_minute(iv.stopped_at))
        rows = [(iv, bucket, value) for bucket, value in minute_costs(iv, until=iv.stopped_at, from_bucket=from_bucket)]
        await store.delete_minute_rows_after(conn, schema, iv, last)
        metrics.MINUTE_ROWS.labels("projection").inc(await store.upsert_minute_rows(conn, schema, rows))
        end_marker = None if last is None else last + MINUTE
        await store.close_interval(conn, schema, iv, stop_seq=item.stop_seq or 0, amount_eur=amount,
                                   minutes_written_until=end_marker)
        metrics.COST_CLOSED.inc(float(amount))


class UsageProjection:
    """Token totals per org / API key / model, per minute and per UTC day."""

    name = "finops_usage"
    stream = USAGE_STREAM
    filter_subject = "usage.>"

    async def apply(self, conn: asyncpg.Connection, schema: str, batch: Sequence[StreamRecordLike]) -> None:
        by_id: dict[str, tuple[int, UsageRecord]] = {}
        for record in batch:
            try:
                rec = codec.decode_usage(record.data)
            except codec.DecodeError as exc:
                metrics.EVENTS_SKIPPED.labels(self.name).inc()
                log.error("finops.usage.undecodable", seq=record.seq, subject=record.subject, error=str(exc))
                continue
            if rec.occurred_at.tzinfo is None:
                rec = msgspec.structs.replace(rec, occurred_at=utc(rec.occurred_at))
            org = _org_from_usage_subject(record.subject)
            if org is not None and org != rec.org_id:
                # The subject is what the publisher was allowed to write: it names the tenant.
                log.warning("finops.usage.org_mismatch", seq=record.seq, subject_org=org, payload_org=rec.org_id)
                rec = msgspec.structs.replace(rec, org_id=org)
            by_id.setdefault(rec.id, (record.seq, rec))
        if not by_id:
            return
        items = list(by_id.values())
        inserted = set(
            await conn.fetchval(
                f"""WITH ins AS (
                      INSERT INTO {schema}.usage_records
                        (id, seq, org_id, api_key_id, user_id, model, instance_id, endpoint, prompt_tokens,
                         completion_tokens, status_code, stream, duration_ms, ttft_ms, occurred_at)
                      SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
                                           $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::int[],
                                           $12::bool[], $13::float8[], $14::float8[], $15::timestamptz[])
                      ON CONFLICT (id) DO NOTHING
                      RETURNING id)
                    SELECT coalesce(array_agg(id), '{{}}') FROM ins""",
                [r.id for _, r in items],
                [seq for seq, _ in items],
                [r.org_id for _, r in items],
                [r.api_key_id or NO_API_KEY for _, r in items],
                [r.user_id for _, r in items],
                [r.model for _, r in items],
                [r.instance_id for _, r in items],
                [r.endpoint for _, r in items],
                [max(0, r.prompt_tokens) for _, r in items],
                [max(0, r.completion_tokens) for _, r in items],
                [r.status_code for _, r in items],
                [r.stream for _, r in items],
                [float(r.duration_ms) for _, r in items],
                [None if r.ttft_ms is None else float(r.ttft_ms) for _, r in items],
                [r.occurred_at for _, r in items],
            )
        )
        fresh = [r for _, r in items if r.id in inserted]
        metrics.USAGE_RECORDS.labels("applied").inc(len(fresh))
        metrics.USAGE_RECORDS.labels("duplicate").inc(len(items) - len(fresh))
        if not fresh:
            return
        for grain, table, column in (("minute", "usage_minute", "bucket_minute"), ("day", "usage_daily", "day")):
            totals = bucket_usage(fresh, grain)  # type: ignore[arg-type]
            keys = list(totals)
            bucket_type = "timestamptz" if grain == "minute" else "date"
            await conn.execute(
                f"""INSERT INTO {schema}.{table} AS t
                      (org_id, {column}, api_key_id, model, requests, error_requests, prompt_tokens, completion_tokens)
                    SELECT * FROM unnest($1::text[], $2::{bucket_type}[], $3::text[], $4::text[], $5::bigint[],
                                         $6::bigint[], $7::bigint[], $8::bigint[])
                    ON CONFLICT (org_id, {column}, api_key_id, model) DO UPDATE SET
                      requests = t.requests + EXCLUDED.requests,
                      error_requests = t.error_requests + EXCLUDED.error_requests,
                      prompt_tokens = t.prompt_tokens + EXCLUDED.prompt_tokens,
                      completion_tokens = t.completion_tokens + EXCLUDED.completion_tokens""",
                [k[1] for k in keys],
                [k[0] if grain == "minute" else k[0].date() for k in keys],
                [k[2] for k in keys],
                [k[3] for k in keys],
                [totals[k].requests for k in keys],
                [totals[k].error_requests for k in keys],
                [totals[k].prompt_tokens for k in keys],
                [totals[k].completion_tokens for k in keys],
            )
        metrics.TOKENS.labels("prompt").inc(sum(max(0, r.prompt_tokens) for r in fresh))
        metrics.TOKENS.labels("completion").inc(sum(max(0, r.completion_tokens) for r in fresh))


def _org_from_usage_subject(subject: str) -> str | None:
    parts = subject.split(".")
    if len(parts) != 2 or parts[0] != subjects.USAGE_PREFIX:
        return None
    try:
        return subjects.token(parts[1])
    except subjects.UnsafeSubjectToken:
        return None


PROJECTIONS = (BillingProjection, UsageProjection)
