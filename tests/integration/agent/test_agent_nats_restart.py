"""NATS goes away under a running agent and comes back (same port, same store directory): the
engine keeps serving throughout, heartbeats are dropped (counted) while disconnected, and they
land in the HEARTBEATS stream again once the agent has reconnected, with no agent restart."""

from __future__ import annotations

import re
import signal
from datetime import UTC, datetime

import nats

from contracts.codec import decode_heartbeat
from services.runtime import natsio
from services.runtime.embedded import EmbeddedNats

from .conftest import AgentProcess, get_json, is_ready, pid_alive, subscribe_heartbeats, wait_for_exit
from tests.helpers import wait_until


async def agent_metric(http, agent: AgentProcess, pattern: str) -> float | None:
    async with http.get(agent.url + "/metrics") as resp:
        match = re.search(pattern, await resp.text(), re.M)
    return float(match.group(1)) if match else None


async def stored_heartbeat(nc, subject: str):
    msg = await natsio.last_message(nc.jetstream(), "HEARTBEATS", subject)
    return decode_heartbeat(msg.data) if msg is not None else None


async def test_the_agent_reconnects_and_resumes_heartbeats_after_a_nats_server_restart(tmp_path, http):
    server = EmbeddedNats(tmp_path / "nats").start()
    agent = AgentProcess(tmp_path, nats_url=server.url, instance_id="inst-restart")
    nc = await nats.connect(server.url, name="restart-test")
    try:
        await natsio.apply_nats_config(nc.jetstream())
        agent.start()

        async def ready_stored():
            beat = await stored_heartbeat(nc, agent.subject)
            return beat is not None and beat.status == "ready"

        await wait_until(ready_stored, timeout_s=20, message="a ready heartbeat in HEARTBEATS")
        engine_pid = (await get_json(http, agent.url + "/info"))[1]["engine_pid"]
        agent.engine_pids.add(engine_pid)
        await nc.close()

        server.stop()
        dropped = r'^inventiv_agent_heartbeat_publish_errors_total\{reason="disconnected"\} (\S+)$'
        await wait_until(lambda: _equals(agent_metric(http, agent, r"^inventiv_agent_nats_connected (\S+)$"), 0.0),
                         timeout_s=15, message="the agent to notice NATS is gone")
        before = await agent_metric(http, agent, dropped) or 0.0
        await wait_until(lambda: _above(agent_metric(http, agent, dropped), before), timeout_s=10,
                         message="heartbeats dropped while disconnected")
        # The engine is untouched by the outage: still ready, same process.
        assert await is_ready(http, agent)
        assert (await get_json(http, agent.url + "/info"))[1]["engine_pid"] == engine_pid and pid_alive(engine_pid)

        restarted_at = datetime.now(UTC)
        server.start()  # same port and store directory as before
        nc = await nats.connect(server.url, name="restart-test")
        # Live subscribers (the proxy's routing table, the orchestrator's watch) hear it again ...
        beats = await subscribe_heartbeats(nc, agent.subject)
        live = await beats.wait_for("ready", timeout_s=20)
        assert live.sent_at >= restarted_at
        # ... and so does the stream. A single nats-server does not keep a memory stream across a
        # restart (HEARTBEATS is one), so the config is applied again, as `inventiv nats apply` does.
        await natsio.apply_nats_config(nc.jetstream())

        async def fresh_ready():
            beat = await stored_heartbeat(nc, agent.subject)
            return beat is not None and beat.status == "ready" and beat.sent_at >= restarted_at

        await wait_until(fresh_ready, timeout_s=20, message="heartbeats in HEARTBEATS after the restart")
        assert await agent_metric(http, agent, r"^inventiv_agent_nats_connected (\S+)$") == 1.0
        assert (await get_json(http, agent.url + "/info"))[1]["engine_pid"] == engine_pid
        assert re.search(r'"event": ?"nats_reconnected"', agent.log())
        agent.signal(signal.SIGTERM)
        assert await wait_for_exit(agent.proc) == 0, agent.log()
    finally:
        agent.cleanup()
        if not nc.is_closed:
            await nc.close()
        server.stop()


async def _equals(value, expected: float) -> bool:
    return (await value) == expected


async def _above(value, floor: float) -> bool:
    current = await value
    return current is not None and current > floor
