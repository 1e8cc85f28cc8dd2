"""UsagePublisher against real JetStream: every record stored exactly once, in both publish modes."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from contracts import codec, ids
from contracts.usage import UsageRecord
from services.api.proxy.usage import UsagePublisher
from services.runtime import natsio


def record(org: str) -> UsageRecord:
    return UsageRecord(id=ids.new_id(), org_id=org, occurred_at=datetime.now(timezone.utc),
                       endpoint="chat.completions", model="m", prompt_tokens=3, completion_tokens=5)


async def set_atomic(js, enabled: bool) -> None:
    # nats/streams/usage.json enables atomic batches; the fallback path is tested with them off.
    info = await js.stream_info("USAGE")
    cfg = info.config
    cfg.allow_atomic = enabled
    await js.update_stream(cfg)


async def allow_atomic(js) -> None:
    await set_atomic(js, True)


@pytest.mark.parametrize("atomic", [False, True])
async def test_every_record_is_stored_once_and_stop_flushes(nats_client, atomic):
    js = nats_client.jetstream()
    await set_atomic(js, atomic)
    pub = UsagePublisher(nats_client)
    await pub.start()
    assert pub.atomic is atomic
    orgs = [ids.new_id(), ids.new_id()]
    sent = [record(orgs[i % 2]) for i in range(1200)]
    for r in sent:
        assert pub.submit(r)
    await pub.stop()  # must flush everything before returning
    got = []
    for org in orgs:
        got += [codec.decode_usage(m.data) for m in await natsio.read_subject(js, "USAGE", f"usage.{org}")]
    assert sorted(r.id for r in got) == sorted(r.id for r in sent)
    assert pub.published == 1200


async def test_a_retried_atomic_batch_that_was_stored_counts_as_done(nats_client):
    js = nats_client.jetstream()
    await allow_atomic(js)
    pub = UsagePublisher(nats_client)
    await pub.start()
    org = ids.new_id()
    items = [(f"usage.{org}", codec.encode(r), r.id) for r in (record(org) for _ in range(10))]
    assert await pub._publish_atomic(items) == []
    assert await pub._publish_atomic(items) == []  # the ack was "lost": same records again
    stored = await natsio.read_subject(js, "USAGE", f"usage.{org}")
    assert len(stored) == 10
    await pub.stop()


async def test_full_queue_drops_and_counts_instead_of_blocking(nats_client):
    pub = UsagePublisher(nats_client, maxsize=3)
    org = ids.new_id()
    results = [pub.submit(record(org)) for _ in range(5)]
    assert results == [True, True, True, False, False] and pub.dropped == 2
    await pub.start()
    await pub.stop()
    assert len(await natsio.read_subject(nats_client.jetstream(), "USAGE", f"usage.{org}")) == 3


@pytest.mark.parametrize("linger_s, rounds", [(0.5, "one"), (0.0, "several")])
async def test_the_linger_gathers_a_trickle_of_records_into_one_batch(nats_client, linger_s, rounds):
    """At low rates the linger decides how many batches (hence fsyncs) a trickle of requests costs."""
    import asyncio

    await allow_atomic(nats_client.jetstream())
    pub = UsagePublisher(nats_client, linger_s=linger_s)
    await pub.start()
    for _ in range(5):
        pub.submit(record(ids.new_id()))
        await asyncio.sleep(0.05)  # requests arriving 50 ms apart (pacing the input, not waiting for a result)
    await pub.stop()
    assert pub.published == 5
    if rounds == "one":
        assert pub.batches == 1  # all five arrived within the first one's linger
    else:
        assert pub.batches >= 2  # each was on its way before the next arrived
