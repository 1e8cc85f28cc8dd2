"""Billing projection, minute closer and cost queries against real NATS and Postgres."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from decimal import Decimal

import pytest

from services.finops import queries, store
from services.finops.closer import close_minutes
from services.finops.costing import floor_minute
from services.finops.money import AMOUNT_QUANTUM, format_eur, sum_amounts
from services.finops.projection import BillingProjection
from services.finops.rebuild import build_by_replay, ensure_schema
from services.projector.runner import catch_up
from tests.unit.finops.lifecycles import (
    ORGS,
    T0,
    Lifecycle,
    Run,
    events_for,
    exact_cost,
    interleave,
    started,
    stopped,
)

from .helpers import append_all, dump

A, B, C = ("00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b",
           "00000000-0000-4000-8000-00000000000c")
ORG, OTHER = ORGS[0], ORGS[1]


async def test_stopped_instance_is_billed_to_the_microsecond_with_its_last_partial_minute(nats_client, pool, schema):
    js = nats_client.jetstream()
    start = T0 + timedelta(seconds=15)
    stop = T0 + timedelta(minutes=2, seconds=30)
    await append_all(js, [started(A, start, "3.6", org_id=ORG), stopped(A, stop, org_id=ORG)])
    await catch_up(nats_client, pool, BillingProjection(), schema=schema)
    async with pool.acquire() as conn:
        row = await conn.fetchrow(f"SELECT * FROM {schema}.billing_intervals")
        minutes = await conn.fetch(
            f"SELECT bucket_minute, amount_eur FROM {schema}.cost_actual_minute ORDER BY bucket_minute")
    assert row["stopped_at"] == stop and row["amount_eur"] == Decimal("0.135")
    assert [(m["bucket_minute"], m["amount_eur"]) for m in minutes] == [
        (T0, Decimal("0.045")), (T0 + timedelta(minutes=1), Decimal("0.060")),
        (T0 + timedelta(minutes=2), Decimal("0.030")),
    ]


async def test_duplicate_events_in_the_log_do_not_double_bill(nats_client, pool, schema):
    js = nats_client.jetstream()
    s, e = started(A, T0, "2", org_id=ORG), stopped(A, T0 + timedelta(hours=1), org_id=ORG)
    again = started(A, T0 + timedelta(minutes=10), "50", org_id=ORG)  # re-decided while running
    await append_all(js, [s, again, e, stopped(A, T0 + timedelta(hours=2), org_id=ORG)])
    # the same events once more, with new message ids (beyond the duplicate window)
    from contracts import codec, headers

    for ev in (s, e):
        hdrs = headers.envelope_headers(ev)
        hdrs[headers.MSG_ID] = hdrs[headers.MSG_ID] + "-redelivered"
        await js.publish(codec.event_subject_for(ev), codec.encode(ev), headers=hdrs)
    await catch_up(nats_client, pool, BillingProjection(), schema=schema)
    async with pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT hourly_price_eur, amount_eur FROM {schema}.billing_intervals")
        total = await conn.fetchval(f"SELECT sum(amount_eur) FROM {schema}.cost_actual_minute")
    assert [(r["hourly_price_eur"], r["amount_eur"]) for r in rows] == [(Decimal("2"), Decimal("2"))]
    assert total == Decimal("2")


async def test_minute_closer_writes_open_minutes_and_a_late_stop_corrects_them(nats_client, pool, schema):
    js = nats_client.jetstream()
    await append_all(js, [started(A, T0 + timedelta(seconds=30), "3.6", org_id=ORG)])
    await catch_up(nats_client, pool, BillingProjection(), schema=schema)
    async with pool.acquire() as conn:
        first = await close_minutes(conn, schema, T0 + timedelta(minutes=5, seconds=2))
        again = await close_minutes(conn, schema, T0 + timedelta(minutes=5, seconds=40))
        rows = await conn.fetch(f"SELECT bucket_minute, amount_eur FROM {schema}.cost_actual_minute ORDER BY 1")
    assert (first.intervals, first.rows, again.rows) == (1, 5, 0)
    assert rows[0]["amount_eur"] == Decimal("0.030") and all(r["amount_eur"] == Decimal("0.060") for r in rows[1:])

    # the stop was stamped at 00:02:10 but is projected only now: minutes 3 and 4 must go
    await append_all(js, [stopped(A, T0 + timedelta(minutes=2, seconds=10), org_id=ORG)])
    await catch_up(nats_client, pool, BillingProjection(), schema=schema)
    async with pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT bucket_minute, amount_eur FROM {schema}.cost_actual_minute ORDER BY 1")
        amount = await conn.fetchval(f"SELECT amount_eur FROM {schema}.billing_intervals")
        after = await close_minutes(conn, schema, T0 + timedelta(minutes=9))
    assert [r["bucket_minute"] for r in rows] == [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]
    assert rows[-1]["amount_eur"] == Decimal("0.010")
    assert sum_amounts(r["amount_eur"] for r in rows) == amount == Decimal("0.100")
    assert after.intervals == 0


async def test_two_closers_at_once_write_the_same_rows_as_one(nats_client, pool, schema):
    js = nats_client.jetstream()
    await append_all(js, [started(iid, T0 + timedelta(seconds=i), "1.7", org_id=ORG) for i, iid in enumerate((A, B, C))])
    await catch_up(nats_client, pool, BillingProjection(), schema=schema)
    now = T0 + timedelta(hours=3, seconds=1)

    async def close():
        async with pool.acquire() as conn:
            return await close_minutes(conn, schema, now)

    results = await asyncio.gather(close(), close(), close())
    async with pool.acquire() as conn:
        tables = await dump(conn, schema)
        await close()
        assert await dump(conn, schema) == tables
    assert sum(r.intervals for r in results) == 3  # each interval was closed by exactly one of them
    assert len(tables["cost_actual_minute"]) == 3 * 180
    for iid in (A, B, C):
        got = sum_amounts(r[-1] for r in tables["cost_actual_minute"] if r[0] == iid)
        i = (A, B, C).index(iid)
        expected = Decimal("1.7") * (Decimal(3 * 3600 - i) / 3600)
        assert abs(got - expected) <= AMOUNT_QUANTUM


def _random_lifecycles(rng: random.Random, n: int) -> list[Lifecycle]:
    out = []
    for i in range(n):
        t = T0 + timedelta(microseconds=rng.randint(0, 3_600_000_000))
        runs = []
        for k in range(rng.randint(1, 3)):
            stop = t + timedelta(microseconds=rng.randint(0, 5 * 3_600_000_000))
            if k == 2 or rng.random() < 0.3:
                runs.append(Run(t, None if rng.random() < 0.5 else stop))
                break
            runs.append(Run(t, stop))
            t = stop + timedelta(microseconds=rng.randint(1, 600_000_000))
        out.append(Lifecycle(instance_id=f"00000000-0000-4000-8000-{i:012d}", org_id=ORGS[i % 2],
                             model=("m-a", "m-b", "m-c")[i % 3], price=Decimal(rng.randint(0, 400_000)) / 10_000,
                             runs=tuple(runs)))
    return out


async def test_f19_replaying_the_log_twice_gives_identical_costs_equal_to_an_independent_calculation(
    nats_client, pool
):
    rng = random.Random(19)
    lcs = _random_lifecycles(rng, 12)
    js = nats_client.jetstream()
    await append_all(js, interleave([events_for(lc, rng=rng, duplicates=True) for lc in lcs], rng))
    now = T0 + timedelta(hours=20, seconds=17)

    await build_by_replay(nats_client, pool, "finops_a", now=now)
    await build_by_replay(nats_client, pool, "finops_b", now=now)
    async with pool.acquire() as conn:
        a, b = await dump(conn, "finops_a"), await dump(conn, "finops_b")
        assert a == b
        assert a["billing_intervals"] and a["cost_actual_minute"]
        for org in (ORGS[0], ORGS[1]):
            current = await queries.current_cost(conn, org_id=org, now=now, schema="finops_a")
            truth = sum_amounts(exact_cost(lc, now) for lc in lcs if lc.org_id == org)
            assert current.cumulative_amount_eur == format_eur(truth)
            running = sum_amounts(lc.price for lc in lcs if lc.org_id == org and lc.runs[-1].stop is None)
            assert current.burn_rate_eur_per_hour == format_eur(running)
            # the stored per-minute rows agree with the intervals up to the last closed minute
            minute_sum = await conn.fetchval(
                "SELECT coalesce(sum(amount_eur), 0) FROM finops_a.cost_actual_minute WHERE org_id = $1", org)
            at_minute = sum_amounts(exact_cost(lc, floor_minute(now)) for lc in lcs if lc.org_id == org)
            n_intervals = sum(len(lc.runs) for lc in lcs if lc.org_id == org)
            assert abs(minute_sum - at_minute) <= AMOUNT_QUANTUM * n_intervals


async def test_schema_is_created_once_and_rebuilt_by_replay_when_its_ddl_changes(nats_client, pool):
    js = nats_client.jetstream()
    await append_all(js, [started(A, T0, "1", org_id=ORG), stopped(A, T0 + timedelta(hours=2), org_id=ORG)])
    assert await ensure_schema(nats_client, pool) == "created"
    assert await ensure_schema(nats_client, pool) == "current"
    await catch_up(nats_client, pool, BillingProjection(), schema="finops")
    async with pool.acquire() as conn:
        before = await dump(conn, "finops")
        await conn.execute("UPDATE finops.meta SET ddl_sha256 = 'old'")
    assert await ensure_schema(nats_client, pool, clock=lambda: T0 + timedelta(days=1)) == "rebuilt"
    async with pool.acquire() as conn:
        after = await dump(conn, "finops")
        assert await store.schema_state(conn, "finops") == "current"
        assert await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'finops_next'") == 0
    assert after["billing_intervals"] == before["billing_intervals"]
    assert after["cost_actual_minute"] == before["cost_actual_minute"]


async def test_cost_queries_are_scoped_to_the_org_and_match_the_intervals(nats_client, pool, schema):
    js = nats_client.jetstream()
    await append_all(js, [
        started(A, T0, "2.5", org_id=ORG, model="llama"),
        started(B, T0 + timedelta(minutes=30), "1.5", org_id=ORG, model="mistral"),
        stopped(B, T0 + timedelta(minutes=90), org_id=ORG),
        started(C, T0, "100", org_id=OTHER, model="llama"),
    ])
    await catch_up(nats_client, pool, BillingProjection(), schema=schema)
    now = T0 + timedelta(hours=2)
    async with pool.acquire() as conn:
        current = await queries.current_cost(conn, org_id=ORG, now=now)
        summary = await queries.costs_summary(conn, org_id=ORG, now=now)
        everyone = await queries.current_cost(conn, org_id=None, now=now)
        await close_minutes(conn, schema, now)
        series = await queries.actual_cost_minutes(conn, org_id=ORG, now=now, minutes=120)
    assert current.burn_rate_eur_per_hour == "2.500000"
    assert current.running_instances == 1
    assert current.forecast_eur_per_month_30d == "1800.000000"
    assert current.cumulative_amount_eur == "6.500000"  # 2 h × 2.5 + 1 h × 1.5
    assert everyone.cumulative_amount_eur == "206.500000"
    assert summary.spend_eur.hour == "3.250000"  # A 1 h × 2.5 + B 30 min × 1.5
    assert summary.spend_eur.minute == "0.041667"
    assert [i.instance_id for i in summary.by_instance] == [A, B]
    assert summary.by_instance[1].is_running is False and summary.by_instance[1].cumulative_amount_eur == "1.500000"
    assert [(m.model_name, m.cumulative_amount_eur) for m in summary.by_model] == [
        ("llama", "5.000000"), ("mistral", "1.500000")]
    assert [o.org_id for o in summary.by_org] == [ORG]
    assert len(series.points) == 120
    # each point is shown rounded to 6 decimals
    assert abs(sum_amounts(Decimal(p.amount_eur) for p in series.points) - Decimal("6.5")) <= Decimal("0.0000005") * 120


async def test_an_undecodable_or_mispriced_event_never_stops_the_projection(nats_client, pool, schema):
    js = nats_client.jetstream()
    await js.publish(f"evt.{ORG}.instance.{A}.billing_started", b'{"not": "an event"}')
    await append_all(js, [started(B, T0, "-3", org_id=ORG), stopped(B, T0 + timedelta(hours=1), org_id=ORG),
                          started(C, T0, "1", org_id=ORG), stopped(C, T0 + timedelta(hours=1), org_id=ORG)])
    await catch_up(nats_client, pool, BillingProjection(), schema=schema)
    async with pool.acquire() as conn:
        rows = await conn.fetch(f"SELECT instance_id, amount_eur FROM {schema}.billing_intervals ORDER BY 1")
    assert [(r["instance_id"], r["amount_eur"]) for r in rows] == [(B, Decimal(0)), (C, Decimal(1))]


async def test_a_foreign_schema_of_the_same_name_is_left_alone(nats_client, pool):
    async with pool.acquire() as conn:
        await conn.execute("CREATE SCHEMA finops; CREATE TABLE finops.cost_forecast_minute (x int)")
    with pytest.raises(RuntimeError, match="not created by finops"):
        await ensure_schema(nats_client, pool)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT to_regclass('finops.cost_forecast_minute') IS NOT NULL")
