"""The proxy over real HTTP (uvicorn) with its routing table and keys fed through real NATS."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from tests.helpers import wait_until

MSG = [{"role": "user", "content": "say something nice"}]


async def _ready_proxy(harness, model="m1", **kw):
    await harness.start_proxy(**kw)
    engine = await harness.engine(model)
    iid = await harness.ready(engine.url, model)
    raw, key_id = await harness.api_key()
    await harness.wait_routable(model)
    return engine, iid, raw, key_id


CLIENTS = pytest.mark.parametrize("client", ["native", "aiohttp"])


@CLIENTS
async def test_official_openai_client_async_and_sync_stream_and_not(harness, client):
    engine, iid, raw, key_id = await _ready_proxy(harness, upstream_client=client)
    client = openai.AsyncOpenAI(base_url=harness.base_url, api_key=raw, max_retries=0)

    r = await client.chat.completions.create(model="m1", messages=MSG, max_tokens=8)
    assert r.choices[0].message.content == "".join(engine.sent_tokens())
    assert r.usage.prompt_tokens == 3 and r.usage.completion_tokens == 8

    stream = await client.chat.completions.create(model="m1", messages=MSG, stream=True)
    deltas = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
    assert deltas == engine.sent_tokens()

    comp = await client.completions.create(model="m1", prompt="one two", max_tokens=8)
    assert comp.choices[0].text == "".join(engine.sent_tokens()) and comp.usage.prompt_tokens == 2

    cstream = await client.completions.create(model="m1", prompt="one two", stream=True,
                                              stream_options={"include_usage": True})
    chunks = [c async for c in cstream]
    assert [c.choices[0].text for c in chunks if c.choices] == engine.sent_tokens()
    assert chunks[-1].usage.completion_tokens == 8 and chunks[-1].choices == []

    emb = await client.embeddings.create(model="m1", input=["a b c", "d"])
    assert len(emb.data) == 2 and emb.usage.prompt_tokens == 4

    models = await client.models.list()
    assert [m.id for m in models.data] == ["m1"]

    def sync_calls():
        sync = openai.OpenAI(base_url=harness.base_url, api_key=raw, max_retries=0)
        a = sync.chat.completions.create(model="m1", messages=MSG)
        b = [c.choices[0].delta.content for c in sync.chat.completions.create(model="m1", messages=MSG, stream=True)
             if c.choices and c.choices[0].delta.content]
        return a.choices[0].message.content, b

    text, sync_deltas = await asyncio.to_thread(sync_calls)
    assert text == "".join(engine.sent_tokens()) and sync_deltas == engine.sent_tokens()

    # Upstream got usage asked for every stream, and never the client's credentials.
    for body in engine.bodies:
        if body.get("stream"):
            assert body["stream_options"]["include_usage"] is True
    for headers in engine.headers:
        assert raw not in str(headers)

    # One usage record per request, all on this org's subject, with the engine's token counts.
    records = await harness.usage_records(expect=7)
    assert len(records) == 7
    assert {r.instance_id for r in records} == {iid}
    assert all(r.api_key_id == key_id and r.status_code == 200 for r in records)
    by_endpoint = sorted((r.endpoint, r.stream, r.prompt_tokens, r.completion_tokens) for r in records)
    assert by_endpoint == sorted([
        ("chat.completions", False, 3, 8), ("chat.completions", True, 3, 8), ("completions", False, 2, 8),
        ("completions", True, 2, 8), ("embeddings", False, 4, 0), ("chat.completions", False, 3, 8),
        ("chat.completions", True, 3, 8),
    ])
    assert all(r.ttft_ms is not None for r in records if r.stream)
    assert len({r.id for r in records}) == 7


@pytest.mark.parametrize("bypass_litestar", [False, True], ids=["litestar-mount", "wrap_asgi"])
async def test_fake_engine_token_sequences_pass_through_unchanged(harness, bypass_litestar):
    """Against the agent's fake engine (vLLM's chunk shapes): what the client reads is what it sent."""
    from agent.engines import echo

    await harness.start_proxy(bypass_litestar=bypass_litestar)
    url = await harness.fake_engine("echo-model")
    iid = await harness.ready(url, "echo-model")
    raw, _ = await harness.api_key()
    await harness.wait_routable("echo-model")
    client = openai.AsyncOpenAI(base_url=harness.base_url, api_key=raw, max_retries=0)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "alpha beta gamma"}]
    expected = echo.completion_tokens(["alpha", "beta", "gamma"], 11)

    stream = await client.chat.completions.create(model="echo-model", messages=messages, max_tokens=11, stream=True)
    chunks = [c async for c in stream]
    assert [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content] == expected
    assert all(c.usage is None for c in chunks)  # the usage event the proxy asked for is not forwarded

    stream = await client.chat.completions.create(model="echo-model", messages=messages, max_tokens=11, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert chunks[-1].usage.prompt_tokens == 5 and chunks[-1].usage.completion_tokens == 11

    r = await client.chat.completions.create(model="echo-model", messages=messages, max_tokens=11)
    assert r.choices[0].message.content == "".join(expected)
    comp = await client.completions.create(model="echo-model", prompt="one two", max_tokens=3, stream=True)
    assert [c.choices[0].text async for c in comp] == echo.completion_tokens(["one", "two"], 3)
    emb = await client.embeddings.create(model="echo-model", input="a b")
    assert emb.data[0].embedding == pytest.approx(list(echo.embedding_vector("a b")), rel=1e-6)

    records = await harness.usage_records(expect=5)
    assert sorted((r.endpoint, r.stream, r.prompt_tokens, r.completion_tokens) for r in records) == sorted([
        ("chat.completions", True, 5, 11), ("chat.completions", True, 5, 11), ("chat.completions", False, 5, 11),
        ("completions", True, 2, 3), ("embeddings", False, 2, 0)])
    assert {r.instance_id for r in records} == {iid}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{harness.port}") as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}  # the rest still reaches Litestar


async def test_usage_chunk_forwarded_only_when_the_client_asks(harness):
    engine, _, raw, _ = await _ready_proxy(harness)
    body = {"model": "m1", "messages": MSG, "stream": True}
    async with httpx.AsyncClient(base_url=harness.base_url, headers={"Authorization": f"Bearer {raw}"}) as http:
        plain = await http.post("/chat/completions", json=body)
        asked = await http.post("/chat/completions", json={**body, "stream_options": {"include_usage": True}})
        not_asked = await http.post("/chat/completions", json={**body, "stream_options": {"include_usage": False}})
    assert plain.headers["content-type"].startswith("text/event-stream")
    assert '"usage":{' not in plain.text and plain.text.endswith("data: [DONE]\n\n")
    assert '"usage":{' in asked.text
    assert '"usage":{' not in not_asked.text
    assert engine.bodies[2]["stream_options"] == {"include_usage": True}
    request_ids = {plain.headers["x-request-id"], asked.headers["x-request-id"], not_asked.headers["x-request-id"]}
    records = await harness.usage_records(expect=3)
    assert {r.id for r in records} == request_ids
    assert all(r.completion_tokens == 8 for r in records)


async def test_streams_are_relayed_as_they_come_not_buffered(harness):
    await harness.start_proxy()
    engine = await harness.engine("slow", tokens=5, delay_s=0.3)
    await harness.ready(engine.url, "slow")
    raw, _ = await harness.api_key()
    await harness.wait_routable("slow")
    client = openai.AsyncOpenAI(base_url=harness.base_url, api_key=raw, max_retries=0)
    t0 = time.monotonic()
    stream = await client.chat.completions.create(model="slow", messages=MSG, stream=True)
    first_at = None
    tokens = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first_at = first_at or time.monotonic() - t0
            tokens.append(chunk.choices[0].delta.content)
    total = time.monotonic() - t0
    assert tokens == engine.sent_tokens()
    # The first token arrives after ~1 engine delay, well before the whole 7 x 0.3 s stream has been produced.
    assert first_at < 1.0 and total > 1.5


@CLIENTS
@pytest.mark.parametrize("failure", ["500", "refused"])
async def test_failing_worker_is_retried_on_another_and_penalised(harness, failure, client):
    await harness.start_proxy(upstream_client=client)
    good = await harness.engine("m1")
    if failure == "500":
        bad = await harness.engine("m1", mode="500")
        bad_url = bad.url
    else:
        bad = None
        from services.runtime.embedded import free_port

        bad_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    good_id = await harness.ready(good.url, "m1")
    bad_id = await harness.ready(bad_url, "m1")
    raw, _ = await harness.api_key()
    await harness.wait_routable("m1", 2)
    client = openai.AsyncOpenAI(base_url=harness.base_url, api_key=raw, max_retries=0)
    for i in range(6):
        if i % 2:
            r = await client.chat.completions.create(model="m1", messages=MSG)
            assert r.choices[0].message.content
        else:
            s = await client.chat.completions.create(model="m1", messages=MSG, stream=True)
            assert [c.choices[0].delta.content async for c in s if c.choices and c.choices[0].delta.content]
    if bad is not None:
        assert bad.calls == 1  # tried once, then penalised for the rest of the test
    assert good.calls == 6
    records = await harness.usage_records(expect=6)
    assert all(r.status_code == 200 and r.instance_id == good_id for r in records)
    assert sum("retry=1" in r.routing_reason for r in records) == 1
    assert bad_id not in {r.instance_id for r in records}


async def test_all_workers_failing_gives_502_without_retry_storm(harness):
    await harness.start_proxy(max_attempts=3)
    bad1 = await harness.engine("m1", mode="500")
    bad2 = await harness.engine("m1", mode="500")
    await harness.ready(bad1.url, "m1")
    await harness.ready(bad2.url, "m1")
    raw, _ = await harness.api_key()
    await harness.wait_routable("m1", 2)
    async with httpx.AsyncClient(base_url=harness.base_url, headers={"Authorization": f"Bearer {raw}"}) as http:
        r = await http.post("/chat/completions", json={"model": "m1", "messages": MSG})
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_error"
    assert bad1.calls + bad2.calls == 2
    records = await harness.usage_records(expect=1)
    assert records[0].status_code == 502


async def test_a_lone_worker_that_failed_once_is_still_used_as_last_resort(harness):
    await harness.start_proxy(penalty_s=60)
    engine = await harness.engine("m1", fail_first=1)
    await harness.ready(engine.url, "m1")
    raw, _ = await harness.api_key()
    await harness.wait_routable("m1")
    async with httpx.AsyncClient(base_url=harness.base_url, headers={"Authorization": f"Bearer {raw}"}) as http:
        first = await http.post("/chat/completions", json={"model": "m1", "messages": MSG})
        assert first.status_code == 502  # no other worker to retry on
        second = await http.post("/chat/completions", json={"model": "m1", "messages": MSG})
        assert second.status_code == 200  # penalised, but the only one: not a 503 for 60 s
    records = await harness.usage_records(expect=2)
    assert sorted(r.routing_reason for r in records) == ["last_resort", "least_outstanding"]


async def test_revoked_key_is_refused_within_one_second(harness):
    engine, _, raw, key_id = await _ready_proxy(harness)
    other_raw, _ = await harness.api_key()
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        ok = await http.post("/chat/completions", json={"model": "m1", "messages": MSG},
                             headers={"Authorization": f"Bearer {raw}"})
        assert ok.status_code == 200
        await harness.revoke(key_id)
        t0 = time.monotonic()

        async def refused():
            r = await http.get("/models", headers={"Authorization": f"Bearer {raw}"})
            return r.status_code == 401

        await wait_until(refused, timeout_s=1.0, interval_s=0.01, message="revocation applied")
        assert time.monotonic() - t0 < 1.0
        r = await http.post("/chat/completions", json={"model": "m1", "messages": MSG},
                            headers={"Authorization": f"Bearer {raw}"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        still = await http.post("/chat/completions", json={"model": "m1", "messages": MSG},
                                headers={"Authorization": f"Bearer {other_raw}"})
        assert still.status_code == 200


async def test_bad_requests_get_openai_shaped_4xx_and_never_reach_a_worker(harness):
    engine, _, raw, _ = await _ready_proxy(harness, max_body_bytes=4096)
    no_scope, _ = await harness.api_key(scopes=("manage",))
    auth = {"Authorization": f"Bearer {raw}"}
    cases = [
        ("POST", "/chat/completions", {}, b'{"model":"m1"', 401, "invalid_api_key"),
        ("POST", "/chat/completions", {"Authorization": "Bearer sk-inv-" + "0" * 64}, b"{}", 401, "invalid_api_key"),
        ("POST", "/chat/completions", {"Authorization": "Basic abc"}, b"{}", 401, "invalid_api_key"),
        ("POST", "/chat/completions", {"Authorization": f"Bearer {no_scope}"}, b"{}", 403, "insufficient_scope"),
        ("POST", "/chat/completions", auth, b'{"model": "m1", "messages": [', 400, "invalid_json"),
        ("POST", "/chat/completions", auth, b"", 400, "invalid_json"),
        ("POST", "/chat/completions", auth, b'["model"]', 400, "invalid_value"),
        ("POST", "/chat/completions", auth, b'{"messages": []}', 400, "missing_model"),
        ("POST", "/chat/completions", auth, b'{"model": 12}', 400, "missing_model"),
        ("POST", "/chat/completions", auth, b'{"model": "m1", "stream": "yes"}', 400, "invalid_value"),
        ("POST", "/chat/completions", auth, b'{"model": "nope", "messages": []}', 404, "model_not_found"),
        ("POST", "/embeddings", auth, b'{"model": "m1", "input": "' + b"x" * 5000 + b'"}', 413, "request_too_large"),
        ("GET", "/chat/completions", auth, None, 405, "method_not_allowed"),
        ("POST", "/files", auth, b"{}", 404, "unknown_url"),
        ("GET", "/models/nope", auth, None, 404, "model_not_found"),
    ]
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        for method, path, headers, body, status, code in cases:
            r = await http.request(method, path, headers={"Content-Type": "application/json", **headers},
                                   content=body)
            assert r.status_code == status, (path, body, r.text)
            err = r.json()["error"]
            assert err["code"] == code and set(err) == {"message", "type", "param", "code"}, r.text
            assert raw not in r.text
        # A body that is streamed in without Content-Length is also bounded.

        async def chunks():
            for _ in range(10):
                yield b"x" * 1000

        r = await http.post("/chat/completions", headers=auth, content=chunks())
        assert r.status_code == 413
    assert engine.calls == 0


async def test_client_cannot_choose_the_upstream(harness):
    engine, _, raw, _ = await _ready_proxy(harness)
    body = {"model": "m1", "messages": MSG, "api_base": "http://169.254.42.42/", "base_url": "http://evil/"}
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        r = await http.post("/chat/completions?upstream=http://evil", json=body,
                            headers={"Authorization": f"Bearer {raw}", "Host": "evil.example",
                                     "X-Forwarded-Host": "evil.example"})
    assert r.status_code == 200 and engine.calls == 1
    assert engine.headers[0]["Host"] == f"127.0.0.1:{engine.port}"


async def test_no_ready_worker_is_503_and_unknown_model_404(harness):
    await harness.start_proxy(worker_stale_s=30)
    engine = await harness.engine("m1")
    iid = await harness.ready(engine.url, "m1", heartbeat="draining")
    raw, _ = await harness.api_key()
    await wait_until(lambda: "m1" in harness.proxy.table.snapshot.workers and
                     harness.proxy.table.snapshot.workers["m1"][0].hb_status == "draining")
    async with httpx.AsyncClient(base_url=harness.base_url, headers={"Authorization": f"Bearer {raw}"}) as http:
        r = await http.post("/chat/completions", json={"model": "m1", "messages": MSG})
        assert r.status_code == 503 and r.json()["error"]["code"] == "no_ready_worker"
        assert (await http.get("/models")).json() == {"object": "list", "data": []}
        await harness.heartbeat(iid, "m1")
        await harness.wait_routable("m1")
        assert (await http.post("/chat/completions", json={"model": "m1", "messages": MSG})).status_code == 200
        await harness.terminated(iid)
        await wait_until(lambda: "m1" not in harness.proxy.table.snapshot.workers)
        r = await http.post("/chat/completions", json={"model": "m1", "messages": MSG})
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    records = await harness.usage_records(expect=3)
    assert sorted(r.status_code for r in records) == [200, 404, 503]


async def test_workers_of_another_org_are_invisible(harness):
    engine, _, raw, _ = await _ready_proxy(harness)
    from contracts import ids

    other_org = ids.new_id()
    other_raw, _ = await harness.api_key(org=other_org)
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        r = await http.post("/chat/completions", json={"model": "m1", "messages": MSG},
                            headers={"Authorization": f"Bearer {other_raw}"})
        assert r.status_code == 404
        models = await http.get("/models", headers={"Authorization": f"Bearer {other_raw}"})
        assert models.json()["data"] == []
    assert engine.calls == 0
    records = await harness.usage_records(other_org, expect=1)
    assert records[0].org_id == other_org and records[0].status_code == 404


@CLIENTS
async def test_failure_after_first_byte_ends_stream_with_error_event(harness, client):
    await harness.start_proxy(upstream_client=client)
    engine = await harness.engine("m1", mode="die_mid_stream")
    await harness.ready(engine.url, "m1")
    raw, _ = await harness.api_key()
    await harness.wait_routable("m1")
    client = openai.AsyncOpenAI(base_url=harness.base_url, api_key=raw, max_retries=0)
    stream = await client.chat.completions.create(model="m1", messages=MSG, stream=True)
    got = []
    with pytest.raises(openai.APIError):
        async for chunk in stream:
            got.append(chunk)
    assert got  # the first events were relayed before the failure
    assert engine.calls == 1  # no retry once bytes went out
    records = await harness.usage_records(expect=1)
    assert records[0].status_code == 502 and records[0].stream


@CLIENTS
async def test_client_disconnect_cancels_the_upstream_request(harness, client):
    await harness.start_proxy(upstream_client=client)
    engine = await harness.engine("m1", tokens=50, delay_s=0.1)
    await harness.ready(engine.url, "m1")
    raw, _ = await harness.api_key()
    await harness.wait_routable("m1")
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        async with http.stream("POST", "/chat/completions", json={"model": "m1", "messages": MSG, "stream": True},
                               headers={"Authorization": f"Bearer {raw}"}) as r:
            async for line in r.aiter_lines():
                if "t1 " in line:
                    break  # leave after two tokens: closing the response closes the connection
    await wait_until(lambda: engine.aborted == 1, timeout_s=5, message="engine saw the abort")
    assert engine.completed == 0
    records = await harness.usage_records(expect=1)
    assert records[0].status_code == 499 and 1 <= records[0].completion_tokens < 50
    assert harness.proxy._outstanding == {}


async def test_session_header_pins_a_conversation(harness):
    await harness.start_proxy()
    engines = [await harness.engine("m1") for _ in range(3)]
    for e in engines:
        await harness.ready(e.url, "m1")
    raw, _ = await harness.api_key()
    await harness.wait_routable("m1", 3)
    async with httpx.AsyncClient(base_url=harness.base_url, headers={"Authorization": f"Bearer {raw}"}) as http:
        for _ in range(6):
            r = await http.post("/chat/completions", json={"model": "m1", "messages": MSG},
                                headers={"X-Inventiv-Session": "conv-42"})
            assert r.status_code == 200
        for _ in range(6):
            assert (await http.post("/chat/completions", json={"model": "m1", "messages": MSG})).status_code == 200
    calls = sorted(e.calls for e in engines)
    assert calls[-1] >= 6 and sum(calls) == 12
    records = await harness.usage_records(expect=12)
    assert sum(r.routing_reason == "session_affinity" for r in records) == 6
