"""The finops service loops (projections + minute closer) and the HTTP controller, end to end."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from litestar import Litestar, Response
from litestar.datastructures import State
from litestar.di import Provide
from litestar.testing import AsyncTestClient

from contracts.usage import UsageRecord
from services.api.errors import ReadModelUnavailable
from services.api.routes.finops import FinOpsController, route_handlers
from services.finops.main import run_finops
from services.finops.money import sum_amounts
from services.finops.projection import BillingProjection, UsageProjection
from services.projector.runner import catch_up, wait_for_seq
from services.runtime import pg
from tests.helpers import wait_until
from tests.unit.finops.lifecycles import ORGS, started, stopped

from .helpers import append_all, publish_usage

A, B = "00000000-0000-4000-8000-0000000000a1", "00000000-0000-4000-8000-0000000000b2"
ORG, OTHER = ORGS[0], ORGS[1]


def _now() -> datetime:
    return datetime.now(timezone.utc)


async def test_service_projects_closes_minutes_and_bills_the_final_partial_minute(nats_client, pool):
    js = nats_client.jetstream()
    began = _now() - timedelta(minutes=5, seconds=20)
    await append_all(js, [started(A, began, "3.6", org_id=ORG)])
    stop = asyncio.Event()
    task = asyncio.create_task(run_finops(nats_client, pool, stop, closer_delay_s=0.2))
    try:
        async def minute_rows() -> int:
            async with pool.acquire() as conn:
                if not await conn.fetchval("SELECT to_regclass('finops.cost_actual_minute') IS NOT NULL"):
                    return 0
                return await conn.fetchval("SELECT count(*) FROM finops.cost_actual_minute WHERE instance_id = $1", A)

        # the first closer pass (at start) writes every complete minute since the start: 5 or 6
        await wait_until(lambda: _at_least(minute_rows, 5), message="minute rows of the open interval")

        ended = _now()
        seq = await append_all(js, [stopped(A, ended, org_id=ORG)])
        await wait_for_seq(pool, seq, schema="finops", name="finops_billing")
        async with pool.acquire() as conn:
            amount = await conn.fetchval("SELECT amount_eur FROM finops.billing_intervals WHERE instance_id = $1", A)
            rows = await conn.fetch("SELECT amount_eur FROM finops.cost_actual_minute WHERE instance_id = $1", A)
        exact = Decimal("3.6") * Decimal((ended - began) // timedelta(microseconds=1)) / Decimal(3_600_000_000)
        assert abs(amount - exact) <= Decimal("1e-9")
        assert sum_amounts(r["amount_eur"] for r in rows) == amount
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _at_least(probe, n: int) -> bool:
    return (await probe()) >= n


def _app(database_url: str, org_id: str) -> Litestar:
    """A tiny app providing what the API's app provides: ``org_id`` and ``pg_pool``. The test
    client runs the app on its own event loop, so the pool is opened there, at startup."""

    async def open_pool(app: Litestar) -> None:
        app.state.pool = await pg.create_pool(database_url, min_size=1, max_size=2)

    async def close_pool(app: Litestar) -> None:
        await app.state.pool.close()

    async def provide_org() -> str:
        return org_id

    async def provide_pool(state: State):
        return state.pool

    return Litestar(
        route_handlers=route_handlers,
        dependencies={"org_id": Provide(provide_org), "pg_pool": Provide(provide_pool)},
        on_startup=[open_pool],
        on_shutdown=[close_pool],
        exception_handlers={ReadModelUnavailable: lambda request, exc: Response({"detail": "unavailable"},
                                                                                  status_code=503)},
    )


async def test_controller_routes_shapes_and_tenancy(nats_client, pool, schema, database_url):
    js = nats_client.jetstream()
    now = _now()
    await append_all(js, [
        started(A, now - timedelta(hours=2), "2.5", org_id=ORG, model="llama"),
        started(B, now - timedelta(hours=1), "100", org_id=OTHER, model="llama"),
    ])
    await publish_usage(js, [
        UsageRecord(id=str(uuid.uuid4()), org_id=ORG, occurred_at=now - timedelta(seconds=20), endpoint="/v1/chat",
                    model="llama", api_key_id="key-1", prompt_tokens=7, completion_tokens=3),
        UsageRecord(id=str(uuid.uuid4()), org_id=OTHER, occurred_at=now - timedelta(seconds=20), endpoint="/v1/chat",
                    model="llama", api_key_id="key-9", prompt_tokens=1000, completion_tokens=1000),
    ])
    await catch_up(nats_client, pool, BillingProjection(), schema=schema)
    await catch_up(nats_client, pool, UsageProjection(), schema=schema)

    assert FinOpsController.path == "/finops"
    async with AsyncTestClient(app=_app(database_url, ORG)) as client:
        current = (await client.get("/finops/cost/current")).json()
        assert set(current) == {
            "org_id", "as_of", "running_instances", "burn_rate_eur_per_hour", "forecast_eur_per_minute",
            "forecast_eur_per_hour", "forecast_eur_per_day", "forecast_eur_per_month_30d",
            "forecast_eur_per_year_365d", "cumulative_amount_eur"}
        assert current["org_id"] == ORG and current["running_instances"] == 1
        assert current["burn_rate_eur_per_hour"] == "2.500000"
        assert current["forecast_eur_per_day"] == "60.000000"
        assert Decimal("5") <= Decimal(current["cumulative_amount_eur"]) < Decimal("5.1")

        response = await client.get("/finops/dashboard/costs/summary", params={"limit_instances": 10})
        assert response.status_code == 200
        summary = response.json()
        assert [i["instance_id"] for i in summary["by_instance"]] == [A]  # not the other org's B
        assert [o["org_id"] for o in summary["by_org"]] == [ORG]
        assert set(summary["spend_eur"]) == {"minute", "hour", "day", "month_30d"}
        assert summary["spend_eur"]["hour"] == "2.500000"
        assert summary["by_model"][0]["model_name"] == "llama"
        (key,) = summary["tokens_by_api_key"]
        assert key["api_key_id"] == "key-1"
        assert key["tokens"]["minute"] == {"requests": 1, "error_requests": 0, "prompt_tokens": 7,
                                           "completion_tokens": 3, "total_tokens": 10}
        assert summary["tokens_by_model"][0]["to_date"]["total_tokens"] == 10

        series = (await client.get("/finops/cost/actual/minute", params={"minutes": 5})).json()
        assert series["points"] == []  # the closer has not run: no minute rows yet

        assert (await client.get("/finops/dashboard/costs/summary", params={"limit_instances": 5000})).status_code == 400
        assert (await client.get("/finops/cost/actual/minute", params={"minutes": 0})).status_code == 400


async def test_controller_answers_503_before_finops_created_its_tables(database_url):
    async with AsyncTestClient(app=_app(database_url, ORG)) as client:
        assert (await client.get("/finops/cost/current")).status_code == 503
