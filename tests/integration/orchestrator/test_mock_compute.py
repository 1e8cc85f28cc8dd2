"""The mock provider: real processes as servers, a ledger that survives restarts, injected faults,
and (when the agent package is there) the whole path with a real agent and its fake engine."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone

import aiohttp
import pytest

from contracts.events import InstanceReady
from contracts.ids import new_id
from services.orchestrator.adapters.mock_compute import MockCompute, stop_all_servers
from services.orchestrator.bootstrap import mock_state_dir
from services.orchestrator.ports import NotFound, Transient
from tests.helpers import wait_until, wait_until_sync
from tests.unit.orchestrator.factories import placement, provision, terminate

from .conftest import running_orchestrator

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def state_dir(tmp_path):
    path = mock_state_dir(tmp_path)
    yield path
    stop_all_servers(path, grace_s=1.0)  # never leave processes behind, whatever the test did


def test_a_restarted_provider_finds_servers_by_tag_and_deletes_them(state_dir):
    before = MockCompute(state_dir, nats_url="nats://127.0.0.1:1", agent_command=SLEEPER)
    info = before.create_server("inst-a", "org1", placement(), None, ["inv", "inv:instance=inst-a"])
    assert info.state == "running" and info.upstream_url.startswith("http://127.0.0.1:")
    ledger = json.loads((state_dir / "servers.json").read_text())
    assert ledger[info.server_id]["instance_id"] == "inst-a"

    after = MockCompute(state_dir, nats_url="nats://127.0.0.1:1", agent_command=SLEEPER)  # a new orchestrator
    assert [s.server_id for s in after.find_servers_by_tag("inst-a", "local-1")] == [info.server_id]
    assert after.find_servers_by_tag("inst-b", "local-1") == []
    assert after.get_server(info.server_id, "local-1").state == "running"
    assert [s.server_id for s in after.list_servers("local-1")] == [info.server_id]

    after.delete_server(info.server_id, "local-1")
    assert not after.process_alive(info.server_id)
    with pytest.raises(NotFound):
        after.get_server(info.server_id, "local-1")
    with pytest.raises(NotFound):
        after.delete_server(info.server_id, "local-1")
    assert before.find_servers_by_tag("inst-a", "local-1") == []


def test_stop_all_servers_stops_every_process(state_dir):
    compute = MockCompute(state_dir, nats_url="nats://127.0.0.1:1", agent_command=SLEEPER)
    ids = [compute.create_server(f"inst-{n}", "org1", placement(), None, []).server_id for n in range(2)]
    assert all(compute.process_alive(server_id) for server_id in ids)
    assert stop_all_servers(state_dir, grace_s=2.0) == 2
    assert not any(compute.process_alive(server_id) for server_id in ids)
    assert compute.list_servers("local-1") == []
    assert stop_all_servers(state_dir) == 0


def test_injected_faults(state_dir):
    flaky = MockCompute(state_dir, nats_url="nats://127.0.0.1:1", agent_command=SLEEPER, failure_rate=1.0)
    with pytest.raises(Transient):
        flaky.find_servers_by_tag("inst-a", "local-1")
    with pytest.raises(Transient):
        flaky.create_server("inst-a", "org1", placement(), None, [])
    assert flaky.live_servers() == []

    ambiguous = MockCompute(state_dir, nats_url="nats://127.0.0.1:1", agent_command=SLEEPER,
                            ambiguous_create_rate=1.0)
    with pytest.raises(Transient):
        ambiguous.create_server("inst-a", "org1", placement(), None, [])
    assert len(ambiguous.find_servers_by_tag("inst-a", "local-1")) == 1  # it exists all the same


def test_agent_environment_carries_identity_only(state_dir, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://secret")
    monkeypatch.setenv("INVENTIV_PROVIDER", "mock")
    compute = MockCompute(state_dir, nats_url="nats://127.0.0.1:4222", heartbeat_interval_s=0.5)
    env = compute._agent_env("srv", "inst-a", "org1", "m/1", 8001, 8002)
    assert env["INVENTIV_INSTANCE_ID"] == "inst-a" and env["INVENTIV_ORG_ID"] == "org1"
    assert env["INVENTIV_MODEL"] == "m/1" and env["NATS_URL"] == "nats://127.0.0.1:4222"
    assert (env["INVENTIV_ENGINE_PORT"], env["INVENTIV_AGENT_PORT"]) == ("8001", "8002")
    assert env["INVENTIV_HEARTBEAT_INTERVAL_S"] == "0.5"
    assert "DATABASE_URL" not in env and "INVENTIV_PROVIDER" not in env


async def test_real_agent_end_to_end(nats_client, nats_server, state_dir):
    """ProvisionInstance → a real agent process heartbeats → ready → terminate → the process is gone."""
    compute = MockCompute(state_dir, nats_url=nats_server.url, heartbeat_interval_s=0.3)
    org, instance = "org-e2e", new_id()
    model = "fake/model-1"
    async with running_orchestrator(nats_client, compute) as orchestrator:
        started = datetime.now(timezone.utc)
        await orchestrator.publish(provision(instance, org=org, model=model))

        async def ready():
            for event in await orchestrator.events(org, instance):
                if isinstance(event, InstanceReady):
                    return event
            return None

        event = await wait_until(ready, timeout_s=20, message="instance ready with a real agent")
        [server] = compute.live_servers()
        assert event.upstream_url == f"http://127.0.0.1:{server['engine_port']}" and event.model_name == model
        assert compute.process_alive(server["server_id"])
        async with aiohttp.ClientSession() as http:
            async with http.get(event.upstream_url + "/v1/models") as resp:
                assert model in [m["id"] for m in (await resp.json())["data"]]
        assert (datetime.now(timezone.utc) - started).total_seconds() < 20

        await orchestrator.publish(terminate(instance, org=org))
        await wait_until(lambda: _terminated(orchestrator, org, instance), timeout_s=15, message="terminated")
        assert not compute.process_alive(server["server_id"])
        assert compute.live_servers() == []


async def _terminated(orchestrator, org, instance) -> bool:
    return "instance.terminated" in await orchestrator.tags(org, instance)


def test_reinstalling_a_worker_replaces_its_process_once_per_generation(state_dir):
    compute = MockCompute(state_dir, nats_url="nats://127.0.0.1:1", agent_command=SLEEPER, stop_grace_s=1.0)
    info = compute.create_server("inst-a", "org1", placement(), None, [])
    [before] = compute.live_servers()
    assert compute.worker_status(info.server_id)[:2] == (0, True)
    compute.reinstall_worker(info.server_id, 1)
    [after] = compute.live_servers()
    assert after["pid"] != before["pid"] and compute.worker_status(info.server_id)[:2] == (1, True)
    compute.reinstall_worker(info.server_id, 1)  # the same generation again: nothing changes
    assert compute.live_servers()[0]["pid"] == after["pid"]
    compute.delete_server(info.server_id, "local-1")
    with pytest.raises(NotFound):
        compute.reinstall_worker(info.server_id, 2)


async def test_the_mock_provider_goes_through_install_reinstall_and_recovery(nats_client, nats_server, state_dir):
    """The dev stack's lifecycle: install phases, a manual reinstall, and an automatic one after the worker died."""
    import os
    import signal

    from contracts.events import InstanceInstallPhaseReached, InstanceReinstallRequested
    from services.orchestrator.adapters.mock_install_driver import MockInstallDriver
    from services.orchestrator.domain.backoff import Backoff
    from services.orchestrator.domain.decision import Policy
    from services.orchestrator.handlers import HandlerConfig
    from tests.unit.orchestrator.factories import reinstall

    compute = MockCompute(state_dir, nats_url=nats_server.url, heartbeat_interval_s=0.3, stop_grace_s=2.0)
    config = HandlerConfig(provider_timeout_s=20.0, check_backoff=Backoff(base_s=0.1, cap_s=0.5),
                           policy=Policy(install=True, watch_interval_s=0.3, unavailable_limit_s=0.0,
                                         unavailable_action="reinstall"))
    org, instance = "org-mock", new_id()
    async with running_orchestrator(nats_client, compute, config=config,
                                    installer=MockInstallDriver(compute)) as orchestrator:
        await orchestrator.publish(provision(instance, org=org, model="fake/model-1"))
        await wait_until(lambda: _count(orchestrator, org, instance, "instance.ready", 1), timeout_s=30,
                         message="ready")
        phases = [e.phase for e in await orchestrator.events(org, instance) if isinstance(e, InstanceInstallPhaseReached)]
        assert phases == ["ssh_ready", "installing", "engine_starting", "agent_started"]

        await orchestrator.publish(reinstall(instance, org=org))
        await wait_until(lambda: _count(orchestrator, org, instance, "instance.ready", 2), timeout_s=30,
                         message="ready after a manual reinstall")
        [server] = compute.live_servers()
        assert server["generation"] == 1

        os.killpg(server["pid"], signal.SIGKILL)  # the worker dies: heartbeats stop
        await wait_until(lambda: _count(orchestrator, org, instance, "instance.ready", 3), timeout_s=60,
                         message="reinstalled automatically and ready again")
        events = await orchestrator.events(org, instance)
        automatic = [e for e in events if isinstance(e, InstanceReinstallRequested)][-1]
        assert (automatic.generation, automatic.reason_code) == (2, "UNAVAILABLE_TOO_LONG")

        await orchestrator.publish(terminate(instance, org=org))
        await wait_until(lambda: _terminated(orchestrator, org, instance), timeout_s=20, message="terminated")
        assert compute.live_servers() == []


async def _count(orchestrator, org, instance, tag, n) -> bool:
    return (await orchestrator.tags(org, instance)).count(tag) >= n


def test_powering_on_a_mock_server_restarts_its_dead_worker(state_dir):
    import os
    import signal

    compute = MockCompute(state_dir, nats_url="nats://127.0.0.1:1", agent_command=SLEEPER, stop_grace_s=1.0)
    info = compute.create_server("inst-a", "org1", placement(), None, [])
    compute.power_on(info.server_id, "local-1")  # running: nothing to do
    [running] = compute.live_servers()
    os.killpg(running["pid"], signal.SIGKILL)
    wait_until_sync(lambda: compute.get_server(info.server_id, "local-1").state == "stopped", timeout_s=10)
    compute.power_on(info.server_id, "local-1")
    assert compute.get_server(info.server_id, "local-1").state == "running"
    assert compute.worker_status(info.server_id)[:2] == (0, True)
