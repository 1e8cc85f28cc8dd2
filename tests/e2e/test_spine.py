"""The spine end to end: deploy a model, chat with it, see its cost, tear it down, rebuild.

Everything goes through HTTP against `inventiv up`: the REST API, SSE, and the official
`openai` client against the OpenAI-compatible proxy.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from decimal import Decimal

import httpx
import openai

from services.runtime.settings import stack_env
from tests.helpers import wait_until, wait_until_sync

from .conftest import ADMIN_EMAIL, ADMIN_PASSWORD

MODEL = "mock-echo-model"


async def _collect_sse(client: httpx.AsyncClient, url: str, sink: list[dict], headers=None) -> None:
    async with client.stream("GET", url, headers=headers or {}, timeout=None) as resp:
        assert resp.status_code == 200, await resp.aread()
        event: dict = {}
        async for line in resp.aiter_lines():
            if line == "":
                if "data" in event:
                    sink.append(event)
                event = {}
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(":")
                event[field] = value.lstrip(" ")


def _port_open(url: str) -> bool:
    host, port = url.split("//")[1].split(":")
    try:
        with socket.create_connection((host, int(port.split("/")[0])), timeout=0.2):
            return True
    except OSError:
        return False


async def test_deploy_chat_cost_terminate_rebuild(stack):
    api = stack.api_url
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        # Log in as the bootstrap admin; the session cookie and a Bearer API key both work.
        login = await _login(http)
        assert login.status_code == 200, login.text
        key_resp = await http.post("/api_keys", json={"name": "e2e"})
        assert key_resp.status_code in (200, 201), key_resp.text
        api_key = key_resp.json()["key"]
        auth = {"Authorization": f"Bearer {api_key}"}

        # The catalog is seeded.
        models = (await http.get("/models", headers=auth)).json()
        assert any(m["model_id"] == MODEL for m in models)

        events: list[dict] = []
        # From the start of the org's history (Last-Event-ID 0): whenever the stream connects, nothing is missed.
        sse_task = asyncio.create_task(_collect_sse(http, "/events/stream", events, {**auth, "Last-Event-ID": "0"}))

        deploy = await http.post("/deployments", headers=auth,
                                 json={"model": MODEL, "instance_type": "mock-local-small", "zone": "local"})
        assert deploy.status_code == 202, deploy.text
        instance_id = deploy.json()["instance_id"]

        async def instance():
            r = await http.get(f"/instances/{instance_id}", headers=auth)
            return r.json() if r.status_code == 200 else None

        ready = await wait_until(lambda: _status_is(instance, "ready"), timeout_s=60, message="instance ready")
        assert ready["progress_percent"] == 100
        assert ready["upstream_url"].startswith("http://127.0.0.1:")
        # `inventiv up` keyed the worker: its engine refuses /v1 without the instance's own key (the
        # proxy below presents it), with the secret generated once, 0600, under the data dir.
        assert (await http.get(ready["upstream_url"] + "/v1/models")).status_code == 401
        assert os.stat(stack.data_dir / "engine-key-secret").st_mode & 0o777 == 0o600

        # Chat through the OpenAI-compatible endpoint with the official client.
        sync_client = openai.OpenAI(base_url=f"{api}/v1", api_key=api_key)
        listed = await asyncio.to_thread(lambda: [m.id for m in sync_client.models.list()])
        assert MODEL in listed
        aclient = openai.AsyncOpenAI(base_url=f"{api}/v1", api_key=api_key)
        chat = await aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hello world"}],
                                                     max_tokens=8)
        assert chat.choices[0].message.content
        assert chat.usage.completion_tokens > 0
        streamed = []
        stream = await aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                       max_tokens=8, stream=True,
                                                       stream_options={"include_usage": True})
        usage = None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                streamed.append(chunk.choices[0].delta.content)
            if chunk.usage:
                usage = chunk.usage
        assert streamed and usage is not None and usage.completion_tokens == len(streamed)
        completion = await aclient.completions.create(model=MODEL, prompt="once upon", max_tokens=4)
        assert completion.choices[0].text
        embedding = await aclient.embeddings.create(model=MODEL, input="vector please")
        assert len(embedding.data[0].embedding) > 0

        # FinOps: the burn rate is the instance's hourly price; tokens are attributed to the key.
        async def cost_seen():
            current = (await http.get("/finops/cost/current", headers=auth)).json()
            return current if Decimal(str(current["burn_rate_eur_per_hour"])) == Decimal("0.36") else None

        await wait_until(cost_seen, timeout_s=30, message="burn rate of the running instance")

        async def tokens_per_key():
            summary = (await http.get("/finops/dashboard/costs/summary", headers=auth)).json()
            rows = summary.get("tokens_by_api_key", [])
            requests = sum(int(r["to_date"]["requests"]) for r in rows)
            return summary if requests >= 4 else None

        summary = await wait_until(tokens_per_key, timeout_s=30, message="usage folded into token totals")
        (key_row,) = summary["tokens_by_api_key"]
        assert key_row["api_key_id"] == key_resp.json()["id"]
        assert key_row["to_date"]["requests"] == 4
        assert key_row["to_date"]["total_tokens"] > 0

        # Tear it down: terminating -> terminated, the agent process is gone.
        gone = await http.delete(f"/instances/{instance_id}", headers=auth)
        assert gone.status_code == 202, gone.text
        terminated = await wait_until(lambda: _status_is(instance, "terminated"), timeout_s=60,
                                      message="instance terminated")
        assert not _port_open(ready["upstream_url"])

        logs = (await http.get("/action_logs", params={"instance_id": instance_id}, headers=auth)).json()
        types = [row["action_type"] for row in logs]
        assert "INSTANCE_READY" in types and "INSTANCE_TERMINATED" in types

        # The live stream showed the lifecycle as it happened, in order, with stream sequences as ids.
        def seen_types():
            return [json.loads(e["data"]).get("type") for e in events]

        await wait_until(lambda: "instance.terminated" in seen_types(), timeout_s=10, message="SSE terminated")
        sse_task.cancel()
        order = [t for t in seen_types() if t in ("instance.requested", "instance.ready", "instance.terminated")]
        assert order == ["instance.requested", "instance.ready", "instance.terminated"]
        seqs = [int(e["id"]) for e in events]
        assert seqs == sorted(seqs)

        before = (await http.get("/instances", headers=auth)).json()

    # Rebuild the read models from the log: same rows.
    rebuild = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "services.cli", "projector", "rebuild"],
        env=_service_env(stack), capture_output=True, text=True, timeout=120,
    )
    assert rebuild.returncode == 0, rebuild.stderr[-3000:]
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:
        await _login(http)
        after = (await http.get("/instances")).json()
    assert _comparable(after) == _comparable(before)
    assert terminated["status"] == "terminated"

    # Stopping the stack stops every process it started.
    os.killpg(stack.proc.pid, signal.SIGTERM)
    assert stack.proc.wait(timeout=40) == 0
    wait_until_sync(lambda: not _port_open(stack.api_url), timeout_s=10, message="API port closed")
    assert not _port_open(stack.nats_url.replace("nats://", "http://"))


async def _login(http: httpx.AsyncClient) -> httpx.Response:
    async def attempt():
        # The admin user becomes visible once the projector has folded its events.
        r = await http.post("/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        return r if r.status_code == 200 else None

    return await wait_until(attempt, timeout_s=30, message="admin login")


async def _status_is(instance, status):
    row = await instance()
    return row if row and row["status"] == status else None


def _service_env(stack) -> dict:
    env = dict(stack.env)
    env.update(stack_env(stack.data_dir))
    assert env["NATS_URL"] == stack.nats_url
    return env


def _comparable(rows: list[dict]) -> list[dict]:
    # Heartbeat telemetry is not part of the event-sourced read model.
    drop = {"last_heartbeat_at", "worker_status", "last_heartbeat"}
    return sorted(({k: v for k, v in r.items() if k not in drop} for r in rows), key=lambda r: r["id"])
