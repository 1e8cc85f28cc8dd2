"""The mock provider with per-worker engine keys: the worker's fake engine requires its instance's key,
the orchestrator's probe presents it and the instance goes ready; a reinstall keeps the key; the key is in
no argv and no stored event."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from contracts.events import InstanceReady
from contracts.ids import new_id
from services.orchestrator.adapters.engine_probe import HttpEngineProbe
from services.orchestrator.adapters.mock_compute import MockCompute, stop_all_servers
from services.orchestrator.adapters.mock_install_driver import MockInstallDriver
from services.orchestrator.adapters.mock_processes import _marked_pids
from services.orchestrator.bootstrap import mock_state_dir
from services.orchestrator.domain.backoff import Backoff
from services.orchestrator.domain.decision import Policy
from services.orchestrator.handlers import HandlerConfig
from services.runtime import natsio
from services.runtime.engine_keys import EngineKeySecret, generate_secret
from tests.helpers import wait_until
from tests.unit.orchestrator.factories import provision, reinstall

from .conftest import running_orchestrator

ORG = "org-keyed-mock"
MODEL = "fake/model-1"


@pytest.fixture
def state_dir(tmp_path):
    path = mock_state_dir(tmp_path)
    yield path
    stop_all_servers(path, grace_s=1.0)


async def _status(url: str, key: str | None) -> int:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/v1/models", headers=headers) as resp:
            return resp.status


async def _ready_count(orchestrator, instance) -> int:
    return (await orchestrator.tags(ORG, instance)).count("instance.ready")


async def test_a_keyed_mock_worker_goes_ready_and_refuses_requests_without_its_key(nats_client, nats_server,
                                                                                   state_dir):
    secret = EngineKeySecret.parse(generate_secret())
    compute = MockCompute(state_dir, nats_url=nats_server.url, heartbeat_interval_s=0.3, stop_grace_s=2.0,
                          engine_keys=secret)
    config = HandlerConfig(provider_timeout_s=20.0, check_backoff=Backoff(base_s=0.1, cap_s=0.5),
                           policy=Policy(install=True, watch_interval_s=0.3, unavailable_action="none"))
    instance = new_id()
    key = secret.key_for(instance)
    async with running_orchestrator(nats_client, compute, config=config, installer=MockInstallDriver(compute),
                                    probe=HttpEngineProbe(engine_keys=secret)) as orchestrator:
        await orchestrator.publish(provision(instance, org=ORG, model=MODEL))
        await wait_until(lambda: _ready_count(orchestrator, instance), timeout_s=30, message="ready")
        ready = [e for e in await orchestrator.events(ORG, instance) if isinstance(e, InstanceReady)][0]
        assert await _status(ready.upstream_url, None) == 401
        assert await _status(ready.upstream_url, secret.key_for("another-instance")) == 401
        assert await _status(ready.upstream_url, key) == 200

        [server] = compute.live_servers()
        pids = _marked_pids(server["server_id"])
        argv = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in pids]
        assert any(b"agent.main" in a for a in argv) and any(b"fake_server" in a for a in argv), argv
        assert all(key.encode() not in a for a in argv)

        await orchestrator.publish(reinstall(instance, org=ORG))  # the new worker process gets the same key
        await wait_until(lambda: _twice(orchestrator, instance),
                         timeout_s=30, message="ready after a reinstall")
        assert await _status(ready.upstream_url, None) == 401 and await _status(ready.upstream_url, key) == 200

        stored = await natsio.read_subject(nats_client.jetstream(), "EVENTS", f"evt.{ORG}.>")
        assert stored and all(key.encode() not in m.data for m in stored)
        assert key not in Path(server["log"]).read_text(errors="replace")
        assert key not in (state_dir / "servers.json").read_text()


async def _twice(orchestrator, instance) -> bool:
    return await _ready_count(orchestrator, instance) >= 2
