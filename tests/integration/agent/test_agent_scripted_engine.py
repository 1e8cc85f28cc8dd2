"""The agent against a fake engine whose behaviour the test scripts (``POST /fake/control``):
heartbeat contents from scripted /metrics values, garbage on /metrics, stall detection from a
frozen token counter and from a real hang, and a drain whose in-flight request never finishes.
Tests run in file order and share one agent; the last one stops it."""

from __future__ import annotations

import asyncio
import re
import signal
from datetime import timedelta

import pytest_asyncio

from .conftest import AgentProcess, get_json, pid_alive, script_engine, subscribe_heartbeats, wait_for_exit
from tests.helpers import wait_until

STALL_AFTER_S = 1.0
SCRIPT = dict(running=3.0, waiting=2.0, kv_cache_usage=0.5, prompt_tokens_total=1000.0,
              generation_tokens_total=2000.0)
GARBAGE = 'not a metric line\nvllm:num_requests_running{model_name="x" 3\nvllm:generation_tokens_total NaNx\n'


@pytest_asyncio.fixture(scope="module")
async def agent(agent_nats, nats_conn, tmp_path_factory):
    proc = AgentProcess(tmp_path_factory.mktemp("agent"), nats_url=agent_nats.url, instance_id="inst-scripted",
                        heartbeat_interval_s=0.2,
                        extra_args=("--stall-after-s", str(STALL_AFTER_S), "--drain-timeout-s", "1",
                                    "--probe-timeout-s", "0.5",
                                    "--fake-args=--control-routes --shutdown-timeout-s 0"))
    proc.beats = await subscribe_heartbeats(nats_conn, proc.subject)
    proc.start()
    await proc.beats.wait_for("ready", timeout_s=20)
    yield proc
    proc.cleanup()
    assert not proc.beats.errors, proc.beats.errors


async def agent_metric(http, agent: AgentProcess, name: str) -> float | None:
    async with http.get(agent.url + "/metrics") as resp:
        text = await resp.text()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


async def test_heartbeats_carry_the_engine_load_the_engine_reports(agent, http):
    seen = len(agent.beats.items)
    await script_engine(http, agent, metrics=SCRIPT, metrics_extra=GARBAGE)

    def scripted():
        return next((h for h in agent.beats.items[seen:] if h.engine.generation_tokens_total == 2000.0), None)

    beat = await wait_until(scripted, timeout_s=10, message="a heartbeat with the scripted load")
    load = beat.engine
    assert (load.requests_running, load.requests_waiting, load.kv_cache_usage) == (3.0, 2.0, 0.5)
    assert (load.prompt_tokens_total, load.generation_tokens_total) == (1000.0, 2000.0)
    assert load.models == (agent.model,)
    # The garbage lines were counted and skipped; the heartbeat loop kept going.
    assert (await agent_metric(http, agent, "inventiv_agent_engine_metrics_garbage_lines_total") or 0) >= 3
    assert await agent_metric(http, agent, "inventiv_agent_engine_requests_running") == 3.0
    count = len(agent.beats.items)
    await wait_until(lambda: len(agent.beats.items) > count + 2, timeout_s=10, message="more heartbeats")


async def test_running_requests_with_a_frozen_token_counter_are_reported_stalled(agent, http):
    # The scripted load above has 3 requests running and a counter that never moves.
    stalled = await agent.beats.wait_for("unhealthy", reason="stalled", timeout_s=10)
    assert stalled.engine.requests_running == 3.0
    status, body = await get_json(http, agent.url + "/readyz")
    assert (status, body["status"], body["reason"]) == (503, "unhealthy", "stalled")
    assert await agent_metric(http, agent, "inventiv_agent_engine_stalled") == 1.0

    # Tokens move again: ready.
    moved = len(agent.beats.items)
    await script_engine(http, agent, metrics=dict(SCRIPT, generation_tokens_total=2500.0))
    await agent.beats.wait_for("ready", after=moved, timeout_s=10)
    assert await agent_metric(http, agent, "inventiv_agent_engine_stalled") == 0.0

    # Nothing running and a frozen counter is an idle engine, not a stalled one: it stays ready
    # through heartbeats spanning well over STALL_AFTER_S.
    idle_from = len(agent.beats.items)
    await script_engine(http, agent, metrics=dict(SCRIPT, running=0.0, generation_tokens_total=2500.0))
    first_idle = await wait_until(
        lambda: next((h for h in agent.beats.items[idle_from:] if h.engine.requests_running == 0.0), None),
        timeout_s=10, message="a heartbeat showing nothing running")
    later = first_idle.sent_at + timedelta(seconds=3 * STALL_AFTER_S)
    await wait_until(lambda: agent.beats.items[-1].sent_at >= later, timeout_s=15,
                     message="heartbeats spanning three stall periods")
    idle = [h for h in agent.beats.items if h.sent_at >= first_idle.sent_at]
    assert {h.status for h in idle} == {"ready"}, [(h.status, h.reason) for h in idle]
    await script_engine(http, agent, metrics=None, metrics_extra="")


async def test_an_engine_that_hangs_mid_request_is_stalled_until_it_resumes(agent, http):
    pid = (await get_json(http, agent.url + "/info"))[1]["engine_pid"]
    agent.engine_pids.add(pid)
    await script_engine(http, agent, hang=True)
    seen = len(agent.beats.items)

    async def chat() -> dict:
        body = {"model": agent.model, "max_tokens": 5, "messages": [{"role": "user", "content": "are you there"}]}
        async with http.post(agent.engine_url + "/v1/chat/completions", json=body) as resp:
            return await resp.json()

    request = asyncio.create_task(chat())
    try:
        stalled = await agent.beats.wait_for("unhealthy", reason="stalled", after=seen, timeout_s=10)
        assert stalled.engine.requests_running == 1.0
        assert not request.done()
        await script_engine(http, agent, hang=False)
        reply = await asyncio.wait_for(request, timeout=10)
        assert reply["usage"]["completion_tokens"] == 5
        await agent.beats.wait_for("ready", after=agent.beats.items.index(stalled), timeout_s=10)
    finally:
        await script_engine(http, agent, hang=False)
        request.cancel()
    # Stalled is reported, not acted on: the same engine process served throughout.
    assert (await get_json(http, agent.url + "/info"))[1]["engine_pid"] == pid


async def test_a_drain_gives_up_on_a_request_that_never_finishes_at_the_deadline(agent, http):
    pid = (await get_json(http, agent.url + "/info"))[1]["engine_pid"]
    await script_engine(http, agent, hang=True)
    seen = len(agent.beats.items)
    outcome: dict = {}

    async def stream() -> None:
        body = {"model": agent.model, "max_tokens": 5, "stream": True,
                "messages": [{"role": "user", "content": "never mind"}]}
        try:
            async with http.post(agent.engine_url + "/v1/chat/completions", json=body) as resp:
                outcome["body"] = await resp.read()
        except Exception as exc:  # the engine cuts the stream when it is stopped
            outcome["error"] = exc

    request = asyncio.create_task(stream())
    await wait_until(lambda: agent.beats.items[-1].engine.requests_running == 1.0, timeout_s=10,
                     message="the request to be running")
    agent.signal(signal.SIGTERM)
    await agent.beats.wait_for("draining", after=seen, timeout_s=5)
    assert await wait_for_exit(agent.proc, 20) == 0, agent.log()
    await asyncio.wait_for(request, timeout=10)
    assert "error" in outcome or b"[DONE]" not in outcome.get("body", b"")  # it never completed
    log = agent.log()
    assert re.search(r'"event": ?"drain_timeout"', log) and not re.search(r'"event": ?"drained"', log)
    assert not pid_alive(pid)
