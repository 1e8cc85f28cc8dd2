"""Per-worker engine keys through the real proxy: each keyed fake engine is reached with its own key,
and refuses any other worker's key (and none) with 401. Both upstream clients."""

from __future__ import annotations

import aiohttp
import openai
import pytest

from contracts import ids
from services.runtime.engine_keys import EngineKeySecret, generate_secret

MSG = [{"role": "user", "content": "hello there"}]
CLIENTS = pytest.mark.parametrize("client", ["native", "aiohttp"])


async def _status(url: str, key: str | None, method: str = "GET", path: str = "/v1/models") -> int:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    body = {"model": "x", "messages": MSG} if method == "POST" else None
    async with aiohttp.ClientSession() as http:
        async with http.request(method, url + path, json=body, headers=headers) as resp:
            return resp.status


async def _keyed_worker(harness, secret: EngineKeySecret, model: str) -> tuple[str, str]:
    iid = ids.new_id()
    url = await harness.fake_engine(model, api_key=secret.key_for(iid))
    await harness.ready(url, model, instance_id=iid)
    return iid, url


@CLIENTS
async def test_the_proxy_reaches_each_worker_with_its_own_key(harness, client):
    secret = EngineKeySecret.parse(generate_secret())
    await harness.start_proxy(upstream_client=client, engine_key_secret=secret)
    iid_a, url_a = await _keyed_worker(harness, secret, "model-a")
    iid_b, url_b = await _keyed_worker(harness, secret, "model-b")
    raw, _ = await harness.api_key()
    await harness.wait_routable("model-a")
    await harness.wait_routable("model-b")

    api = openai.AsyncOpenAI(base_url=harness.base_url, api_key=raw, max_retries=0)
    for model in ("model-a", "model-b"):
        unary = await api.chat.completions.create(model=model, messages=MSG, max_tokens=4)
        assert unary.choices[0].message.content and unary.model == model
        stream = await api.chat.completions.create(model=model, messages=MSG, max_tokens=4, stream=True)
        assert [c async for c in stream]
        assert (await api.embeddings.create(model=model, input="abc")).data
    records = await harness.usage_records(expect=6)
    assert {r.instance_id for r in records} == {iid_a, iid_b} and {r.status_code for r in records} == {200}

    # Worker A's engine takes only A's key: B's key (what a compromised B knows) and no key get 401.
    key_a, key_b = secret.key_for(iid_a), secret.key_for(iid_b)
    for method in ("GET", "POST"):
        path = "/v1/models" if method == "GET" else "/v1/chat/completions"
        assert await _status(url_a, None, method, path) == 401
        assert await _status(url_a, key_b, method, path) == 401
        assert await _status(url_b, key_a, method, path) == 401
    assert await _status(url_a, key_a) == 200 and await _status(url_b, key_b) == 200
    assert await _status(url_a, None, path="/health") == 200


FLEET_KEY = "fleet-wide-key-0123456789"


@CLIENTS
async def test_the_fleet_key_is_the_fallback_when_no_secret_is_set(harness, client):
    fleet_url = await harness.fake_engine("fleet-model", api_key=FLEET_KEY)
    await harness.start_proxy(upstream_client=client, upstream_api_key=FLEET_KEY)
    await harness.ready(fleet_url, "fleet-model")
    raw, _ = await harness.api_key()
    await harness.wait_routable("fleet-model")
    api = openai.AsyncOpenAI(base_url=harness.base_url, api_key=raw, max_retries=0)
    assert (await api.chat.completions.create(model="fleet-model", messages=MSG, max_tokens=2)).choices


@CLIENTS
async def test_the_secret_wins_when_both_are_set(harness, client):
    secret = EngineKeySecret.parse(generate_secret())
    await harness.start_proxy(upstream_client=client, engine_key_secret=secret, upstream_api_key=FLEET_KEY)
    await _keyed_worker(harness, secret, "keyed-model")
    raw, _ = await harness.api_key()
    await harness.wait_routable("keyed-model")
    api = openai.AsyncOpenAI(base_url=harness.base_url, api_key=raw, max_retries=0)
    assert (await api.chat.completions.create(model="keyed-model", messages=MSG, max_tokens=2)).choices


@CLIENTS
async def test_an_engine_refusing_the_proxys_key_is_a_502_not_the_clients_401(harness, client):
    """The client's key is fine: an engine's 401 is the control plane's misconfiguration, not the client's."""
    secret = EngineKeySecret.parse(generate_secret())
    await harness.start_proxy(upstream_client=client)  # no secret, no fleet key: the keyed worker refuses
    await _keyed_worker(harness, secret, "model-a")
    raw, _ = await harness.api_key()
    await harness.wait_routable("model-a")
    api = openai.AsyncOpenAI(base_url=harness.base_url, api_key=raw, max_retries=0)
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as refused:
            await api.chat.completions.create(model="model-a", messages=MSG, max_tokens=2, stream=stream)
        assert refused.value.status_code == 502
        assert refused.value.body["code"] == "upstream_error"


@CLIENTS
async def test_a_worker_with_a_foreign_key_is_skipped_for_one_that_accepts_the_proxy(harness, client):
    """A worker installed with another secret refuses the proxy's key: its requests go to the other worker."""
    secret = EngineKeySecret.parse(generate_secret())
    other = EngineKeySecret.parse(generate_secret())
    await harness.start_proxy(upstream_client=client, engine_key_secret=secret)
    stray, _ = await _keyed_worker(harness, other, "shared-model")
    good, _ = await _keyed_worker(harness, secret, "shared-model")
    raw, _ = await harness.api_key()
    await harness.wait_routable("shared-model", n=2)
    api = openai.AsyncOpenAI(base_url=harness.base_url, api_key=raw, max_retries=0)
    for _ in range(6):
        answer = await api.chat.completions.create(model="shared-model", messages=MSG, max_tokens=2)
        assert answer.choices
    records = await harness.usage_records(expect=6)
    assert {r.instance_id for r in records} == {good} and {r.status_code for r in records} == {200}
    assert stray not in {r.instance_id for r in records}
