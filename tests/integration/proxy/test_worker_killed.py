"""A worker SIGKILLed in the middle of a burst of concurrent requests (official ``openai`` client).

Two engine processes behind the proxy. While requests are in flight on both, one engine is
killed. Expected: whatever had not sent its first byte to the client is retried on the other
worker and succeeds (no 5xx while another worker is ready); streams already started on the dead
worker end with an error event; requests arriving afterwards, while the dead worker is still in
the routing table, are retried too; and the usage records match the requests one to one.
"""

from __future__ import annotations

import asyncio
import time

import openai

from tests.helpers import wait_until

from .processes import start_engine

MSG = [{"role": "user", "content": "tell me a long story"}]
TOKENS = 40
EXPECTED = "".join(f"t{i} " for i in range(TOKENS))


class Outcome:
    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.request_id: str | None = None
        self.started = False  # the first chunk arrived
        self.text = ""
        self.error: BaseException | None = None


async def _call(client: openai.AsyncOpenAI, out: Outcome) -> Outcome:
    try:
        raw = await client.chat.completions.with_raw_response.create(model="m1", messages=MSG, stream=out.stream)
        out.request_id = raw.headers.get("x-request-id")
        if not out.stream:
            out.text = raw.parse().choices[0].message.content
            return out
        async for chunk in raw.parse():
            out.started = True
            if chunk.choices and chunk.choices[0].delta.content:
                out.text += chunk.choices[0].delta.content
    except Exception as exc:  # noqa: BLE001 - recorded and asserted on below
        out.error = exc
    return out


async def test_worker_killed_mid_load(harness, tmp_path):
    engines = [start_engine("m1", tmp_path / f"engine{i}.log", tokens=TOKENS, delay_s=0.05, unary_delay_s=1.0)
               for i in range(2)]
    try:
        await asyncio.gather(*(e.wait_listening() for e in engines))
        await harness.start_proxy(penalty_s=0.3, connect_timeout_s=2.0, read_timeout_s=20.0)
        victim, survivor = engines
        victim_id = await harness.ready(victim.url, "m1")
        survivor_id = await harness.ready(survivor.url, "m1")
        raw_key, _ = await harness.api_key()
        await harness.wait_routable("m1", 2)
        client = openai.AsyncOpenAI(base_url=harness.base_url, api_key=raw_key, max_retries=0, timeout=60)
        outstanding = harness.proxy.forwarder.outstanding

        # 1. A burst, half streams, half not (in pairs, so that both kinds land on both workers: equal
        #    workers take turns), spread over both workers by the policy.
        first = [Outcome(stream=i % 4 < 2) for i in range(24)]
        tasks = [asyncio.create_task(_call(client, o)) for o in first]
        await wait_until(lambda: outstanding.get(victim_id, 0) >= 8 and sum(o.started for o in first) >= 8,
                         timeout_s=30, message="requests in flight on the victim, streams started")
        victim.kill()
        t_kill = time.time()

        # 2. More requests once the victim's penalty ran out: it is still in the routing table (its
        #    heartbeat is fresh), so some are sent to it, refused at connect, and retried.
        penalised = harness.proxy.forwarder.penalised
        await wait_until(lambda: outstanding.get(victim_id, 0) == 0 and victim_id in penalised,
                         message="the proxy saw the victim fail")
        await wait_until(lambda: penalised[victim_id] <= time.time(), message="the victim's penalty over")
        second = [Outcome(stream=i % 4 < 2) for i in range(16)]
        tasks += [asyncio.create_task(_call(client, o)) for o in second]
        done = await asyncio.gather(*tasks)
    finally:
        for e in engines:
            e.stop()

    # Every request got an answer (no 5xx before the first byte: that would have raised here, without an id).
    assert all(o.request_id for o in done), [repr(o.error) for o in done if not o.request_id]
    records = {r.id: r for r in await harness.usage_records(expect=len(done))}
    assert len(records) == len(done) == 40
    assert {o.request_id for o in done} == set(records)  # one record per request, and only those

    broken = [o for o in done if o.error is not None]
    for o in done:
        rec = records[o.request_id]
        if o.error is None:
            assert o.text == EXPECTED and rec.status_code == 200, (o.stream, rec)
        else:
            # Only streams that had started on the dead worker may fail, with the error event.
            assert o.stream and o.started and isinstance(o.error, openai.APIError), (repr(o.error), o.started, o.text)
            assert "failed mid-stream" in str(o.error)
            assert rec.status_code == 502 and rec.instance_id == victim_id
            assert rec.occurred_at.timestamp() < t_kill
    assert broken, "no stream was cut: the kill came too late to test anything"
    assert all(records[o.request_id].status_code < 500 for o in done if o.error is None)

    retried = [r for r in records.values() if ";retry=" in r.routing_reason]
    assert retried, "nothing was retried"
    assert all(r.status_code == 200 and r.instance_id == survivor_id for r in retried)
    # Non-streamed requests in flight on the victim were among them (sent, no answer yet: retried).
    assert any(not r.stream and r.occurred_at.timestamp() < t_kill for r in retried), retried
    # Requests of the second wave that were sent to the dead worker were refused at connect and retried.
    assert any(r.occurred_at.timestamp() > t_kill for r in retried), retried
    assert outstanding == {}
