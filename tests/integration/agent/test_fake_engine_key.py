"""The fake engine requires its key the way vLLM does with VLLM_API_KEY: every /v1/* path, health stays open."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import wait_until_sync

from .conftest import REPO, child_env, free_port, port_accepts

MODEL = "mock-echo-model"
KEY = "k-0123456789abcdef0123456789abcdef"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.fixture
def keyed_engine(tmp_path):
    port = free_port()
    log = tmp_path / "fake.log"
    with open(log, "wb") as out:  # the key by environment, as the agent passes it: never on the command line
        proc = subprocess.Popen([sys.executable, "-m", "agent.engines.fake_server", "--host", "127.0.0.1",
                                 "--port", str(port), "--model", MODEL], cwd=REPO,
                                env=child_env(VLLM_API_KEY=KEY), stdout=out, stderr=subprocess.STDOUT)
    wait_until_sync(lambda: proc.poll() is not None or port_accepts(port), timeout_s=10,
                    message="the fake engine to listen")
    assert proc.poll() is None, log.read_text()
    yield f"http://127.0.0.1:{port}", proc, log
    proc.terminate()
    proc.wait(timeout=10)


async def test_v1_needs_the_key_and_health_does_not(keyed_engine):
    url, proc, log = keyed_engine
    assert KEY.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    good = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY},
                        {"Authorization": f"Bearer {KEY}x"}):
            async with http.get(f"{url}/v1/models", headers=headers) as resp:
                assert resp.status == 401
                body = await resp.json()
                assert body["error"]["code"] == 401 and KEY not in await resp.text()
            async with http.post(f"{url}/v1/chat/completions", json=CHAT, headers=headers) as resp:
                assert resp.status == 401
            async with http.post(f"{url}/v1/no-such-route", json={}, headers=headers) as resp:
                assert resp.status == 401  # like vLLM: the key is checked before routing
        for path in ("/health", "/version", "/metrics"):
            async with http.get(url + path) as resp:
                assert resp.status == 200, path
        async with http.get(f"{url}/v1/models", headers=good) as resp:
            assert resp.status == 200 and (await resp.json())["data"][0]["id"] == MODEL
        for endpoint, body in (("chat/completions", CHAT), ("completions", {"model": MODEL, "prompt": "a"}),
                               ("embeddings", {"model": MODEL, "input": "a"})):
            async with http.post(f"{url}/v1/{endpoint}", json=body, headers=good) as resp:
                assert resp.status == 200, endpoint
        async with http.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": True}, headers=good) as resp:
            assert resp.status == 200 and b"[DONE]" in await resp.read()
    assert KEY not in log.read_text()


async def test_without_a_key_everything_stays_open(tmp_path):
    from aiohttp import web

    from agent.engines.fake_server import FakeEngine

    runner = web.AppRunner(FakeEngine(MODEL).app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/v1/models") as resp:
                assert resp.status == 200
            async with http.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=CHAT) as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()
