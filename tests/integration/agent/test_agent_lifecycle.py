"""One real ``inventiv-agent --engine fake`` against a real nats-server, through its whole life:
starting -> ready, every endpoint, an engine crash and restart, then SIGTERM with a request in
flight -> draining, the request completes, exit 0, engine gone. Tests run in file order and
share the agent (starting it once keeps the suite fast)."""

from __future__ import annotations

import json
import os
import re
import signal
from urllib.parse import quote

import openai
import pytest_asyncio

from agent.identity import package_sha256

from .conftest import AgentProcess, get_json, pid_alive, port_accepts, subscribe_heartbeats, wait_for_exit
from tests.helpers import wait_until

@pytest_asyncio.fixture(scope="module")
async def agent(agent_nats, nats_conn, tmp_path_factory):
    # 100 tokens/s: fast enough for quick tests, slow enough to keep a stream in flight during the drain.
    # The engine cuts in-flight requests off the moment it gets SIGTERM (as an engine without a
    # graceful shutdown does), so a request that finishes during the drain proves the agent waited.
    log_dir = tmp_path_factory.mktemp("agent")
    proc = AgentProcess(log_dir, nats_url=agent_nats.url, instance_id="inst-life",
                        extra_args=("--fake-tokens-per-s", "100", "--restart-backoff-s", "0.2",
                                    "--probe-timeout-s", "0.3", "--fake-args=--shutdown-timeout-s 0",
                                    "--log-file", str(log_dir / "events.jsonl")))
    # Subscribe before the agent starts, so its very first heartbeat is seen.
    beats = await subscribe_heartbeats(nats_conn, proc.subject)
    proc.beats = beats
    proc.start()
    yield proc
    proc.cleanup()
    assert not beats.errors, beats.errors


async def test_heartbeats_go_from_starting_to_ready_with_the_model(agent):
    ready = await agent.beats.wait_for("ready", timeout_s=20)
    statuses = agent.beats.statuses()
    assert statuses[0] == "starting", statuses
    assert set(statuses[: statuses.index("ready")]) == {"starting"}
    assert agent.model in ready.engine.models
    assert ready.model == agent.model and ready.reason is None
    assert ready.agent_sha256 == package_sha256() and re.fullmatch(r"[0-9a-f]{64}", ready.agent_sha256)
    assert ready.interval_s == 0.3 and ready.agent_version
    assert ready.gpus == ()  # no GPU on this machine: nothing invented
    assert ready.system is not None and ready.system.memory_total_bytes > 0


async def test_healthz_and_readyz(agent, http):
    assert await get_json(http, agent.url + "/healthz") == (200, {"status": "alive"})
    status, body = await get_json(http, agent.url + "/readyz")
    assert (status, body["status"]) == (200, "ready")


async def test_info_describes_the_build_and_the_engine(agent, http):
    status, info = await get_json(http, agent.url + "/info")
    assert status == 200
    assert info["agent_sha256"] == package_sha256()
    assert (info["engine"], info["model"], info["instance_id"]) == ("fake", agent.model, "inst-life")
    assert info["uptime_s"] > 0 and info["agent_version"]
    assert pid_alive(info["engine_pid"])
    agent.engine_pids.add(info["engine_pid"])


async def test_engine_answers_the_openai_client_and_the_agent_mirrors_its_load(agent, http):
    async with openai.AsyncOpenAI(base_url=agent.engine_url + "/v1", api_key="x", max_retries=0) as client:
        reply = await client.chat.completions.create(model=agent.model, max_tokens=4,
                                                     messages=[{"role": "user", "content": "ping pong"}])
        assert reply.choices[0].message.content == "ping pong ping pong"

    async def mirrored():
        async with http.get(agent.url + "/metrics") as resp:
            text = await resp.text()
        match = re.search(r"^inventiv_agent_engine_generation_tokens (\S+)$", text, re.M)
        return text if match and float(match.group(1)) >= 5 else None  # warm-up token + these 4

    text = await wait_until(mirrored, timeout_s=10, message="the engine's token counter mirrored")
    assert 'inventiv_agent_status{status="ready"} 1.0' in text
    assert "inventiv_agent_heartbeats_published_total" in text
    assert re.search(r'^inventiv_agent_heartbeat_publish_errors_total\{reason="error"\} 0\.0$', text, re.M)
    assert "inventiv_agent_nats_connected 1.0" in text
    # The machine's readings, as sampled for heartbeats; no GPU here, so no GPU series at all.
    assert re.search(r"^inventiv_agent_system_memory_total_bytes [1-9]", text, re.M)
    assert re.search(r"^inventiv_agent_system_cpu_pct \d", text, re.M)
    assert not re.search(r"^inventiv_agent_gpu_\w+\{", text, re.M)


async def test_logs_returns_recent_structured_events(agent, http):
    status, body = await get_json(http, agent.url + "/logs?tail=5")
    assert status == 200 and body["returned"] == len(body["events"]) <= 5
    assert all("event" in e and "timestamp" in e for e in body["events"])
    status, everything = await get_json(http, agent.url + "/logs?tail=1000")
    events = [e["event"] for e in everything["events"]]
    assert "agent_starting" in events and "engine_output" in events and "status_changed" in events
    assert (await get_json(http, agent.url + "/logs?tail=abc"))[0] == 400
    # since: only events stamped at or after it (the middle event's own timestamp included).
    middle = everything["events"][len(everything["events"]) // 2]["timestamp"]
    status, recent = await get_json(http, agent.url + "/logs?tail=1000&since=" + quote(middle))
    assert status == 200 and 0 < recent["returned"] < everything["returned"] + 5
    assert all(e["timestamp"] >= middle for e in recent["events"])
    assert (await get_json(http, agent.url + "/logs?since=" + quote("2999-01-01T00:00:00Z")))[1]["returned"] == 0
    assert (await get_json(http, agent.url + "/logs?since=last-tuesday"))[0] == 400
    # The same structured events go to the rotated file on disk, one JSON object per line.
    on_disk = [json.loads(line) for line in (agent.log_path.parent / "events.jsonl").read_text().splitlines()]
    assert {"agent_starting", "status_changed"} <= {e["event"] for e in on_disk}


async def test_an_engine_that_stops_answering_is_reported_unhealthy_until_it_answers_again(agent, http):
    _, info = await get_json(http, agent.url + "/info")
    pid = info["engine_pid"]
    seen = len(agent.beats.items)
    os.kill(pid, signal.SIGSTOP)  # alive but silent: the way a wedged engine looks from outside
    try:
        stalled = await agent.beats.wait_for("unhealthy", after=seen, timeout_s=10)
        assert stalled.reason == "engine_not_responding"
        assert (await get_json(http, agent.url + "/readyz"))[0] == 503
    finally:
        os.kill(pid, signal.SIGCONT)
    await agent.beats.wait_for("ready", after=agent.beats.items.index(stalled), timeout_s=10)
    assert (await get_json(http, agent.url + "/info"))[1]["engine_pid"] == pid  # same process, not restarted


async def test_a_crashed_engine_is_restarted_and_reported_unhealthy_meanwhile(agent, http):
    _, info = await get_json(http, agent.url + "/info")
    old_pid = info["engine_pid"]
    seen = len(agent.beats.items)
    os.kill(old_pid, signal.SIGKILL)
    unhealthy = await agent.beats.wait_for("unhealthy", after=seen, timeout_s=10)
    assert unhealthy.reason in ("engine_restarting", "engine_not_responding", "engine_loading", "warming_up")
    after_crash = agent.beats.items.index(unhealthy)
    await agent.beats.wait_for("ready", after=after_crash, timeout_s=15)
    _, info = await get_json(http, agent.url + "/info")
    assert info["engine_pid"] != old_pid and info["engine_restarts"] == 1 and info["engine_incarnation"] == 2
    agent.engine_pids.add(info["engine_pid"])
    assert not pid_alive(old_pid)


async def test_sigterm_drains_in_flight_requests_then_stops_the_engine_and_exits_0(agent, http):
    _, info = await get_json(http, agent.url + "/info")
    engine_pid = info["engine_pid"]
    seen = len(agent.beats.items)
    async with openai.AsyncOpenAI(base_url=agent.engine_url + "/v1", api_key="x", max_retries=0) as client:
        stream = await client.chat.completions.create(model=agent.model, max_tokens=60, stream=True,
                                                      messages=[{"role": "user", "content": "drain me"}])
        tokens = 0
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                tokens += 1
                if tokens == 1:
                    agent.signal(signal.SIGTERM)
                    # draining is announced while the request is still streaming (60 tokens = 0.6 s)
                    await agent.beats.wait_for("draining", after=seen, timeout_s=5)
                    status, body = await get_json(http, agent.url + "/readyz")
                    assert (status, body["status"]) == (503, "draining")
        assert tokens == 60  # the in-flight request was allowed to finish
    assert await wait_for_exit(agent.proc, 20) == 0, agent.log()
    assert not pid_alive(engine_pid)
    assert not port_accepts(agent.engine_port) and not port_accepts(agent.agent_port)
    statuses = agent.beats.statuses()[seen:]
    assert statuses and all(s in ("ready", "draining") for s in statuses) and statuses[-1] == "draining"
    assert '"event": "drained"' in agent.log() or '"event":"drained"' in agent.log()

