"""The agent when things go wrong: bad config, an engine that cannot start, NATS down, SIGKILL."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import nats
import pytest

from .conftest import (REPO, AgentProcess, NatsServer, child_env, free_port, get_json, is_ready, pid_alive,
                       subscribe_heartbeats, wait_for_exit)
from tests.helpers import wait_until

BASE = ["--model", "mock-echo-model", "--org-id", "org-x", "--instance-id", "inst-x", "--engine", "fake"]


def _processes_mentioning(needle: str) -> list[int]:
    """PIDs whose command line contains ``needle`` (read-only scan of /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _run_agent(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent.main", *args], cwd=REPO, env=child_env(**env),
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _bad_config_cases(tmp_path: Path, busy: int) -> list[tuple[list[str], dict, str]]:
    garbage_creds = tmp_path / "not.creds"
    garbage_creds.write_text("hello")
    garbage_seed = tmp_path / "not.nk"
    garbage_seed.write_text("SUAGARBAGE")
    ports = ["--engine-port", str(free_port()), "--agent-port", str(free_port())]
    base = BASE + ports
    return [
        (base + ["--engine", "tgi"], {}, "--engine / INVENTIV_ENGINE must be one of fake, vllm"),
        ([a for a in base if a not in ("--model", "mock-echo-model")], {}, "INVENTIV_MODEL is required"),
        (base, {"INVENTIV_NATS_CREDS_FILE": str(tmp_path / "missing.creds")}, "cannot read"),
        (base, {"INVENTIV_NATS_CREDS_FILE": str(garbage_creds)}, "not a NATS .creds file"),
        (base, {"INVENTIV_NATS_NKEY_SEED_FILE": str(tmp_path / "missing.nk")}, "cannot read"),
        (base, {"INVENTIV_NATS_NKEY_SEED_FILE": str(garbage_seed)}, "does not hold a NATS user nkey seed"),
        (base + ["--fake-args=--port 1"], {}, "may not be overridden"),
        (base + ["--log-file", str(tmp_path / "no-such-dir" / "agent.jsonl")], {}, "--log-file"),
        (BASE + ["--engine-port", str(free_port()), "--agent-port", str(busy)], {}, "--agent-port"),
        (BASE + ["--engine-port", str(busy), "--agent-port", str(free_port())], {}, "--engine-port"),
        (base + ["--engine", "vllm", "--vllm-bin", "/nonexistent/vllm"], {}, "not found on PATH"),
        (base + ["--bind-host", "0.0.0.0"], {}, "wildcard"),
    ]


def test_bad_config_exits_2_with_one_line_before_starting_anything(tmp_path, busy_port):
    for args, env, needle in _bad_config_cases(tmp_path, busy_port):
        result = _run_agent(args, **env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2, (args, result.stderr)
        assert len(lines) == 1 and needle in lines[0], (args, result.stderr)
        assert lines[0].startswith("inventiv-agent: config error: ")
        assert result.stdout == ""
        port = args[args.index("--engine-port") + 1]
        assert not _processes_mentioning(f"agent.engines.fake_server --host 127.0.0.1 --port {port} ")


async def test_an_engine_that_keeps_crashing_is_reported_failed(agent_nats, nats_conn, tmp_path, http):
    false = shutil.which("false")
    agent = AgentProcess(tmp_path, nats_url=agent_nats.url, engine="vllm", instance_id="inst-crashy",
                         extra_args=("--vllm-bin", false, "--max-restarts", "2", "--restart-backoff-s", "0.05"))
    beats = await subscribe_heartbeats(nats_conn, agent.subject)
    agent.start()
    try:
        failed = await beats.wait_for("failed", timeout_s=15)
        assert failed.reason == "engine_gave_up"
        assert "ready" not in beats.statuses()
        # The agent stays up to say so, and says it everywhere.
        assert (await get_json(http, agent.url + "/healthz"))[0] == 200
        status, body = await get_json(http, agent.url + "/readyz")
        assert (status, body["status"], body["reason"]) == (503, "failed", "engine_gave_up")
        _, info = await get_json(http, agent.url + "/info")
        assert info["engine_state"] == "failed" and info["engine_restarts"] == 2 and info["engine_pid"] is None
        agent.signal(signal.SIGTERM)
        assert await wait_for_exit(agent.proc) == 0, agent.log()
        assert beats.statuses()[-1] == "failed"
    finally:
        agent.cleanup()


async def test_the_engine_serves_while_nats_is_down_and_heartbeats_start_when_it_comes_up(tmp_path, http):
    nats_port = free_port()
    agent = AgentProcess(tmp_path, nats_url=f"nats://127.0.0.1:{nats_port}", instance_id="inst-offline")
    agent.start()
    server = None
    try:
        await wait_until(lambda: is_ready(http, agent), timeout_s=15, message="readyz with NATS down")

        async def metrics():
            async with http.get(agent.url + "/metrics") as resp:
                return await resp.text()

        text = await metrics()
        assert "inventiv_agent_nats_connected 0.0" in text
        dropped = re.search(r'^inventiv_agent_heartbeat_publish_errors_total\{reason="disconnected"\} (\S+)$',
                            text, re.M)
        assert dropped and float(dropped.group(1)) > 0  # heartbeats were dropped, not queued

        server = NatsServer(tmp_path / "late-nats", port=nats_port).start()
        nc = await nats.connect(server.url)
        try:
            beats = await subscribe_heartbeats(nc, agent.subject)
            beat = await beats.wait_for("ready", timeout_s=15)
            assert agent.model in beat.engine.models
            assert "inventiv_agent_nats_connected 1.0" in await metrics()
        finally:
            await nc.close()
        agent.signal(signal.SIGTERM)
        assert await wait_for_exit(agent.proc) == 0, agent.log()
    finally:
        agent.cleanup()
        if server is not None:
            server.stop()


async def test_a_killed_agent_takes_the_fake_engine_with_it(agent_nats, tmp_path, http):
    # With an engine API key, so this also shows the agent's probes present it (readyz needs them).
    agent = AgentProcess(tmp_path, nats_url=agent_nats.url, instance_id="inst-killed",
                         extra_args=("--engine-api-key", "k-123"))
    agent.start()
    try:
        await wait_until(lambda: is_ready(http, agent), timeout_s=15, message="readyz")
        async with http.get(agent.engine_url + "/v1/models") as resp:
            assert resp.status == 401
        async with http.get(agent.engine_url + "/v1/models", headers={"Authorization": "Bearer k-123"}) as resp:
            assert resp.status == 200
        pid = (await get_json(http, agent.url + "/info"))[1]["engine_pid"]
        agent.engine_pids.add(pid)
        agent.signal(signal.SIGKILL)  # no cleanup code runs in the agent
        await wait_for_exit(agent.proc)
        await wait_until(lambda: not pid_alive(pid), timeout_s=10, message="the orphaned engine to exit")
    finally:
        agent.cleanup()
