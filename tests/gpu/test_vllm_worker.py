"""The agent with real vLLM on a real GPU: a tiny random-weight Llama built here (no downloads),
served through ``inventiv-agent --engine vllm``, checked through the agent's endpoints, its
heartbeats, the engine directly and the control plane's OpenAI proxy. Then a drain.

Functional only: throughput is measured by ``benchmarks/gpu/bench_worker_tokens.py``.
Tests run in file order and share one worker (vLLM takes a while to start).
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import pytest_asyncio

pytest.importorskip("vllm")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.helpers import wait_until  # noqa: E402

from .stack import SERVED_NAME, GpuWorkerStack  # noqa: E402
from .tiny_model import build_tiny_llama  # noqa: E402

pytestmark = pytest.mark.gpu
CHAT = {"model": SERVED_NAME, "messages": [{"role": "user", "content": "hello world please answer briefly"}],
        "max_tokens": 16, "ignore_eos": True, "temperature": 0}


@pytest_asyncio.fixture(scope="module")
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield session


@pytest_asyncio.fixture(scope="module")
async def stack(tmp_path_factory, http):
    model_dir = await asyncio.to_thread(build_tiny_llama, tmp_path_factory.mktemp("model") / "tiny-llama")
    worker = GpuWorkerStack(tmp_path_factory.mktemp("stack"), model_dir)
    try:
        await worker.start()
        await worker.wait_ready(http)
        yield worker
    finally:
        await worker.stop()


async def get_json(http, url: str) -> tuple[int, dict]:
    async with http.get(url) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_readyz_after_a_real_warm_up(stack, http):
    status, body = await get_json(http, stack.agent_url + "/readyz")
    assert (status, body["status"]) == (200, "ready")
    _, info = await get_json(http, stack.agent_url + "/info")
    assert (info["engine"], info["model"], info["engine_state"]) == ("vllm", SERVED_NAME, "running")
    assert info["gpu_sampler"] in ("nvml", "nvidia-smi")
    # vLLM is bound where the agent put it, serving the model under its served name.
    async with http.get(stack.engine_url + "/v1/models") as resp:
        assert [m["id"] for m in (await resp.json())["data"]] == [SERVED_NAME]


async def test_heartbeats_carry_vllm_load_and_gpu_readings(stack):
    # The heartbeat announcing ready may carry the load read just before the warm-up; wait for a later one.
    beat = await wait_until(
        lambda: next((h for h in reversed(stack.heartbeats)
                      if h.status == "ready" and (h.engine.generation_tokens_total or 0) >= 1), None),
        timeout_s=30, message="a ready heartbeat that has seen the warm-up")
    engine = beat.engine
    assert engine.models == (SERVED_NAME,)
    assert engine.kv_cache_usage is not None and 0.0 <= engine.kv_cache_usage <= 1.0
    # The warm-up request went through the real engine and its counters.
    assert engine.prompt_tokens_total and engine.prompt_tokens_total >= 1
    assert engine.generation_tokens_total and engine.generation_tokens_total >= 1
    assert beat.gpus, "a GPU machine must report its GPUs"
    gpu = beat.gpus[0]
    assert gpu.name and gpu.memory_total_mib and gpu.memory_total_mib > 0
    assert gpu.memory_used_mib and gpu.memory_used_mib > 0  # vLLM holds its KV cache
    assert gpu.utilization_pct is not None
    assert beat.system is not None and beat.system.memory_total_bytes


async def test_a_chat_completion_directly_and_through_the_proxy(stack, http):
    async with http.post(stack.engine_url + "/v1/chat/completions", json=CHAT) as resp:
        assert resp.status == 200, await resp.text()
        direct = await resp.json()
    assert direct["usage"]["completion_tokens"] == 16
    await stack.wait_routable(http)
    async with http.post(stack.proxy_url + "/v1/chat/completions", json=CHAT, headers=stack.auth) as resp:
        assert resp.status == 200, await resp.text()
        proxied = await resp.json()
    assert proxied["model"] == SERVED_NAME and proxied["usage"]["completion_tokens"] == 16
    assert isinstance(proxied["choices"][0]["message"]["content"], str)

    chunks, usage = [], None
    streamed = dict(CHAT, stream=True, stream_options={"include_usage": True})
    async with http.post(stack.proxy_url + "/v1/chat/completions", json=streamed, headers=stack.auth) as resp:
        assert resp.status == 200
        async for raw in resp.content:
            line = raw.decode().strip()
            if line.startswith("data: {"):
                doc = json.loads(line[6:])
                usage = doc.get("usage") or usage
                chunks.append(doc)
            elif line == "data: [DONE]":
                chunks.append("DONE")
    assert chunks[-1] == "DONE" and usage and usage["completion_tokens"] == 16


async def test_engine_load_shows_in_heartbeats_while_requests_run(stack, http):
    before = stack.heartbeats[-1].engine.generation_tokens_total or 0
    seen = len(stack.heartbeats)
    body = dict(CHAT, max_tokens=400)
    done = asyncio.Event()
    generated: list[int] = []

    async def client() -> None:
        # Keeps requests coming until a heartbeat has seen them: a tiny model is fast.
        while not done.is_set():
            async with http.post(stack.engine_url + "/v1/chat/completions", json=body) as resp:
                generated.append((await resp.json())["usage"]["completion_tokens"])

    clients = [asyncio.create_task(client()) for _ in range(32)]
    try:
        busy = await wait_until(
            lambda: next((h for h in stack.heartbeats[seen:] if h.engine.requests_running >= 1), None),
            timeout_s=120, message="a heartbeat with requests running")
        assert busy.status == "ready"  # tokens are moving: not stalled
    finally:
        done.set()
        await asyncio.gather(*clients)
    await wait_until(lambda: (stack.heartbeats[-1].engine.generation_tokens_total or 0) >= before + sum(generated),
                     timeout_s=60, message="the generation counter to count every token")
    assert stack.heartbeats[-1].status == "ready"


async def test_sigterm_drains_stops_vllm_and_exits_0(stack):
    seen = len(stack.heartbeats)
    code = await stack.stop_agent()
    assert code == 0, stack.log_tail()
    assert "draining" in [h.status for h in stack.heartbeats[seen:]]
    assert '"event": "drained"' in stack.agent_log.read_text() or '"event":"drained"' in stack.agent_log.read_text()
