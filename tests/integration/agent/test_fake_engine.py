"""The fake engine, as its own process, through the official ``openai`` client and raw HTTP."""

from __future__ import annotations

import subprocess
import sys
import time

import openai
import pytest
import pytest_asyncio

from agent.engines import echo
from agent.metrics_parser import engine_load, parse_prometheus_text

from .conftest import REPO, child_env, free_port, port_accepts, wait_for_exit
from tests.helpers import wait_until_sync

MODEL = "mock-echo-model"


@pytest.fixture(scope="module")
def fake_engine(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("fake") / "fake.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "agent.engines.fake_server", "--host", "127.0.0.1",
                                 "--port", str(port), "--model", MODEL], cwd=REPO, env=child_env(),
                                stdout=out, stderr=subprocess.STDOUT)
    wait_until_sync(lambda: proc.poll() is not None or port_accepts(port), timeout_s=10,
                    message="the fake engine to listen")
    assert proc.poll() is None, log.read_text()
    yield f"http://127.0.0.1:{port}", proc
    proc.terminate()
    proc.wait(timeout=10)


@pytest_asyncio.fixture(scope="module")
async def client(fake_engine):
    url, _ = fake_engine
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


MESSAGES = [{"role": "system", "content": "you echo"}, {"role": "user", "content": "the quick brown fox"}]


async def test_models_lists_the_one_model(client):
    models = await client.models.list()
    assert [m.id for m in models.data] == [MODEL]


async def test_chat_completion_is_deterministic_with_usage(client):
    first = await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6)
    again = await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6)
    assert first.choices[0].message.content == "the quick brown fox the quick"
    assert again.choices[0].message.content == first.choices[0].message.content
    assert first.choices[0].message.role == "assistant"
    assert first.choices[0].finish_reason == "length"
    assert (first.usage.prompt_tokens, first.usage.completion_tokens, first.usage.total_tokens) == (6, 6, 12)
    default = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert default.usage.completion_tokens == echo.DEFAULT_MAX_TOKENS


async def test_chat_stream_matches_the_non_stream_answer_and_ends_with_usage(client):
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=6, stream=True,
                                                  stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content) == 6  # one chunk per token
    assert "".join(content) == "the quick brown fox the quick"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 6
    assert chunks[-1].usage.prompt_tokens == 6


async def test_chat_stream_without_usage_option_has_no_usage_chunk(client):
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


async def test_completions_stream_and_non_stream(client):
    done = await client.completions.create(model=MODEL, prompt="one two", max_tokens=3)
    assert done.choices[0].text == "one two one"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (2, 3)
    stream = await client.completions.create(model=MODEL, prompt="one two", max_tokens=3, stream=True,
                                             stream_options={"include_usage": True})
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "one two one"
    assert chunks[-1].usage.total_tokens == 5


async def test_embeddings_float_and_base64_agree(client):
    # The openai client asks for base64 by default and decodes it; float must give the same numbers.
    by_default = await client.embeddings.create(model=MODEL, input=["hello world", "bye"])
    as_float = await client.embeddings.create(model=MODEL, input=["hello world", "bye"], encoding_format="float")
    assert [d.index for d in by_default.data] == [0, 1]
    assert len(by_default.data[0].embedding) == echo.EMBEDDING_DIM
    assert by_default.data[0].embedding == pytest.approx(as_float.data[0].embedding)
    assert as_float.data[0].embedding == pytest.approx(list(echo.embedding_vector("hello world")))
    assert by_default.usage.prompt_tokens == 3 and by_default.usage.total_tokens == 3


async def test_errors_use_the_openai_shape(client, fake_engine, http):
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert info.value.body["type"] == "NotFoundError"  # the client unwraps {"error": {...}}
    url, _ = fake_engine
    async with http.post(url + "/v1/chat/completions", data=b'{"model": "mock-echo',
                         headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        error = (await resp.json())["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["code"] == 400
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model=MODEL, messages=[], max_tokens=1)


async def test_health_and_metrics_reflect_real_counters(fake_engine, http, client):
    url, _ = fake_engine
    async with http.get(url + "/health") as resp:
        assert resp.status == 200

    async def load():
        async with http.get(url + "/metrics") as resp:
            assert resp.status == 200
            parsed = parse_prometheus_text(await resp.text())
            assert parsed.garbage_lines == 0
            return engine_load(parsed, (), MODEL)

    before = await load()
    await client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=5)
    after = await load()
    assert after.generation_tokens_total - before.generation_tokens_total == 5
    assert after.prompt_tokens_total - before.prompt_tokens_total == 6
    assert after.requests_running == 0 and after.kv_cache_usage == 0.0


async def test_tokens_per_s_and_first_token_delay_pace_the_stream(tmp_path, http):
    port = free_port()
    with open(tmp_path / "slow.log", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "agent.engines.fake_server", "--port", str(port),
                                 "--model", MODEL, "--tokens-per-s", "50", "--delay-first-token-ms", "150",
                                 "--exit-on-stdin-eof"],
                                cwd=REPO, env=child_env(), stdin=subprocess.PIPE, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_until_sync(lambda: port_accepts(port), timeout_s=10, message="the slow engine to listen")
        url = f"http://127.0.0.1:{port}"
        async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as c:
            started = time.monotonic()
            stream = await c.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=10, stream=True)
            seen = 0
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    seen += 1
                    if seen == 1:
                        assert time.monotonic() - started >= 0.15  # --delay-first-token-ms
                if seen == 2:
                    # Mid-stream the engine reports one running request and a non-empty KV cache.
                    async with http.get(url + "/metrics") as resp:
                        mid = engine_load(parse_prometheus_text(await resp.text()), (), MODEL)
                    assert mid.requests_running == 1 and mid.kv_cache_usage > 0
            assert seen == 10
            assert time.monotonic() - started >= 0.15 + 9 / 50  # then one token every 1/50 s
        # Closing stdin (what happens when the agent dies) stops the engine.
        proc.stdin.close()
        assert await wait_for_exit(proc, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
