"""The GPU tests' harness (tests/gpu/stack.py) on CPU, with the fake engine in vLLM's place.

The GPU tests only run where there is a GPU; this keeps their plumbing honest everywhere else:
the agent comes up ready, its heartbeats arrive, the proxy is fed through NATS and routes a
chat completion to the worker with the API key, and the stack stops cleanly.
"""

from __future__ import annotations

import aiohttp

from tests.gpu.stack import SERVED_NAME, GpuWorkerStack


async def test_the_gpu_stack_serves_through_the_proxy_with_the_fake_engine(tmp_path):
    stack = GpuWorkerStack(tmp_path / "stack", None, engine="fake", heartbeat_interval_s=0.3)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            await stack.start()
            await stack.wait_ready(http, timeout_s=30)
            await stack.wait_routable(http, timeout_s=30)
            body = {"model": SERVED_NAME, "max_tokens": 5, "messages": [{"role": "user", "content": "hi there"}]}
            async with http.post(stack.proxy_url + "/v1/chat/completions", json=body, headers=stack.auth) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["usage"]["completion_tokens"] == 5
            async with http.post(stack.proxy_url + "/v1/chat/completions", json=body) as resp:
                assert resp.status == 401  # the key is what opens the proxy
        assert any(h.status == "ready" and h.model == SERVED_NAME for h in stack.heartbeats)
        assert await stack.stop_agent() == 0, stack.log_tail()
    finally:
        await stack.stop()
