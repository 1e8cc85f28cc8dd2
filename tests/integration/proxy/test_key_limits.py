"""Per-key limits over real HTTP: 429 + Retry-After, nothing sent upstream, slots given back."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from tests.helpers import wait_until

MSG = [{"role": "user", "content": "hi"}]


async def test_requests_per_minute_gives_429_with_a_correct_retry_after(harness):
    await harness.start_proxy(key_rpm=3, key_concurrency=0)
    engine = await harness.engine("m1")
    await harness.ready(engine.url, "m1")
    raw, key_id = await harness.api_key()
    other, _ = await harness.api_key()
    await harness.wait_routable("m1")
    client = openai.AsyncOpenAI(base_url=harness.base_url, api_key=raw, max_retries=0)
    t0 = time.monotonic()
    for _ in range(3):
        await client.chat.completions.create(model="m1", messages=MSG)
    with pytest.raises(openai.RateLimitError) as exc:
        await client.chat.completions.create(model="m1", messages=MSG)
    elapsed = time.monotonic() - t0
    r = exc.value.response
    assert r.json()["error"]["code"] == "rate_limit_exceeded" and r.json()["error"]["type"] == "requests"
    # 3 a minute = one every 20 s; the first of the three went out `elapsed` seconds ago.
    retry_after = int(r.headers["retry-after"])
    assert 20 - elapsed - 1 <= retry_after <= 20
    assert engine.calls == 3
    # Another key is not affected; the limited one stays refused (nothing was consumed by the refusal).
    other_client = openai.AsyncOpenAI(base_url=harness.base_url, api_key=other, max_retries=0)
    await other_client.chat.completions.create(model="m1", messages=MSG)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="m1", messages=MSG, stream=True)
    assert engine.calls == 4
    records = await harness.usage_records(expect=6)
    mine = sorted(r.status_code for r in records if r.api_key_id == key_id)
    assert mine == [200, 200, 200, 429, 429]


async def test_concurrent_limit_is_released_after_completion_and_after_a_client_cancel(harness):
    await harness.start_proxy(key_rpm=0, key_concurrency=2)
    engine = await harness.engine("slow", tokens=40, delay_s=0.05)
    await harness.ready(engine.url, "slow")
    raw, key_id = await harness.api_key()
    await harness.wait_routable("slow")
    admission = harness.proxy.admission
    client = openai.AsyncOpenAI(base_url=harness.base_url, api_key=raw, max_retries=0)

    async def full_stream():
        s = await client.chat.completions.create(model="slow", messages=MSG, stream=True)
        return [c async for c in s]

    first = asyncio.create_task(full_stream())
    async with httpx.AsyncClient(base_url=harness.base_url, headers={"Authorization": f"Bearer {raw}"}) as http:
        async with http.stream("POST", "/chat/completions",
                               json={"model": "slow", "messages": MSG, "stream": True}) as cancelled:
            await wait_until(lambda: admission.concurrency.in_flight(key_id) == 2, message="two in flight")
            third = await http.post("/chat/completions", json={"model": "slow", "messages": MSG})
            assert third.status_code == 429 and third.headers["retry-after"] == "1"
            assert third.json()["error"]["code"] == "concurrency_limit_exceeded"
            async for line in cancelled.aiter_lines():
                if "t1 " in line:
                    break  # the client goes away mid-stream
        await wait_until(lambda: admission.concurrency.in_flight(key_id) == 1, timeout_s=5,
                         message="the cancelled request's slot given back")
        assert (await http.post("/chat/completions", json={"model": "slow", "messages": MSG})).status_code == 200
        assert len(await first) > 40  # ran to the end, while the others came and went
        await wait_until(lambda: admission.concurrency.in_flight(key_id) == 0, message="every slot given back")
        assert len(admission.concurrency) == 0
    assert engine.calls == 3  # the refused one never reached the engine
    records = await harness.usage_records(expect=4)
    assert sorted(r.status_code for r in records) == [200, 200, 429, 499]
