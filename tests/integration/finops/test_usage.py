"""Usage projection and token queries against real NATS and Postgres."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from contracts.usage import UsageRecord
from services.finops import queries
from services.finops.costing import WINDOWS
from services.finops.projection import UsageProjection
from services.finops.usage import NO_API_KEY, TokenTotals, total_usage
from services.projector.runner import catch_up
from tests.unit.finops.lifecycles import ORGS, T0

from .helpers import dump, publish_usage

ORG, OTHER = ORGS[0], ORGS[1]
NOW = T0 + timedelta(days=40, hours=5, minutes=7, seconds=31, microseconds=250_000)
KEYS = ("key-1", "key-2", None)
MODELS = ("llama", "mistral")


def _records(rng: random.Random, n: int) -> list[UsageRecord]:
    spans = [timedelta(seconds=50), timedelta(minutes=50), timedelta(hours=20), timedelta(days=29), timedelta(days=39)]
    out = []
    for i in range(n):
        ago = timedelta(microseconds=rng.randint(1, int(rng.choice(spans) / timedelta(microseconds=1))))
        out.append(UsageRecord(
            id=str(uuid.UUID(int=rng.getrandbits(128))), org_id=ORG if i % 5 else OTHER, occurred_at=NOW - ago,
            endpoint="/v1/chat/completions", model=rng.choice(MODELS), api_key_id=rng.choice(KEYS),
            prompt_tokens=rng.randint(0, 500), completion_tokens=rng.randint(0, 900),
            status_code=200 if rng.random() < 0.9 else 502,
        ))
    return out


async def test_token_totals_per_key_and_model_match_an_independent_calculation(nats_client, pool, schema):
    rng = random.Random(7)
    records = _records(rng, 300)
    js = nats_client.jetstream()
    # a few records published twice (the API retried the publish after a lost ack)
    await publish_usage(js, records + records[:10])
    await catch_up(nats_client, pool, UsageProjection(), schema=schema)

    mine = [r for r in records if r.org_id == ORG]
    async with pool.acquire() as conn:
        assert await conn.fetchval(f"SELECT count(*) FROM {schema}.usage_records") == len(records)
        daily = await conn.fetchrow(
            f"SELECT sum(requests) AS n, sum(prompt_tokens + completion_tokens) AS t FROM {schema}.usage_daily "
            "WHERE org_id = $1", ORG)
        minute = await conn.fetchval(f"SELECT sum(requests) FROM {schema}.usage_minute WHERE org_id = $1", ORG)
        by_key, by_model = await queries.token_summary(conn, org_id=ORG, now=NOW, schema=schema)

    assert daily["n"] == minute == len(mine)
    assert daily["t"] == sum(r.total_tokens for r in mine)
    for name, width in WINDOWS.items():
        inside = [r for r in mine if NOW - width <= r.occurred_at < NOW]
        expect_key = total_usage(inside, by="api_key")
        expect_model = total_usage(inside, by="model")
        for row in by_key:
            counts = getattr(row.tokens, name)
            want = expect_key.get(row.api_key_id or NO_API_KEY, TokenTotals())
            assert (counts.requests, counts.error_requests, counts.prompt_tokens, counts.completion_tokens) == (
                want.requests, want.error_requests, want.prompt_tokens, want.completion_tokens), (name, row.api_key_id)
        for row in by_model:
            counts = getattr(row.tokens, name)
            want = expect_model.get(row.model, TokenTotals())
            assert (counts.requests, counts.total_tokens) == (want.requests, want.total_tokens), (name, row.model)
    assert {row.api_key_id for row in by_key} == {"key-1", "key-2", None}
    to_date = total_usage(mine, by="model")
    assert {row.model: row.to_date.total_tokens for row in by_model} == {m: t.total_tokens for m, t in to_date.items()}


async def test_usage_replay_is_identical_and_redelivery_is_harmless(nats_client, pool, schema):
    rng = random.Random(11)
    records = _records(rng, 80)
    js = nats_client.jetstream()
    await publish_usage(js, records)
    projection = UsageProjection()
    await catch_up(nats_client, pool, projection, schema=schema)
    async with pool.acquire() as conn:
        first = await dump(conn, schema)
        # the whole stream once more through apply, as a rival replica without the checkpoint would
        msgs = []
        for seq in range(1, (await js.stream_info("USAGE")).state.last_seq + 1):
            raw = await js.get_msg("USAGE", seq)
            msgs.append(type("R", (), {"seq": raw.seq, "subject": raw.subject, "data": raw.data})())
        async with conn.transaction():
            await projection.apply(conn, schema, msgs)
        assert await dump(conn, schema) == first
