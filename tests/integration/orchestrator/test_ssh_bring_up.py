"""Bring-up through SSH, end to end: the orchestrator installs a real agent over a real SSH server.

Only the cloud is faked (a FakeCompute that says the server runs on 127.0.0.1 and publishes the
loopback sshd's host-key fingerprint). Everything else is real: the orchestrator on a real
nats-server, asyncssh with the host key pinned, the rendered install script run by bash, the
``inventiv-agent`` it starts with the fake engine, its heartbeats, the engine probe.
"""

from __future__ import annotations

import getpass
import os

import asyncssh
import pytest_asyncio

from contracts.events import InstanceInstallPhaseReached, InstanceReady
from contracts.ids import new_id
from services.orchestrator.adapters.loopback_sshd import LoopbackSshd
from services.orchestrator.adapters.memory import FakeCompute
from services.orchestrator.adapters.ssh_install_driver import SshInstallDriver, WorkerTemplate
from services.orchestrator.domain.backoff import Backoff
from services.orchestrator.domain.decision import Policy
from services.orchestrator.handlers import HandlerConfig
from services.orchestrator.install.installer import SshInstaller
from services.runtime.embedded import free_port
from tests.helpers import wait_until
from tests.integration.install.conftest import AGENT, marked_pids, stop_install
from tests.unit.orchestrator.factories import provision, reinstall, terminate

from .conftest import running_orchestrator
from .test_orchestrator_nats import ORG, _find, _has

MODEL = "mock-echo-model"  # what the fake engine serves


class PinnedFakeCompute(FakeCompute):
    """A provider whose every server is the loopback sshd and publishes its host key."""

    fingerprint: str = ""

    def host_key_fingerprints(self, server_id: str, zone: str) -> tuple[str, ...]:
        super().host_key_fingerprints(server_id, zone)  # NotFound for a deleted server
        return (self.fingerprint,)


@pytest_asyncio.fixture
async def ssh_stack(nats_client, nats_server, tmp_path):
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
           "PIP_NO_INDEX": "1"}
    engine_port, agent_port = free_port(), free_port()
    base_dir = str(tmp_path / "worker")
    async with LoopbackSshd([client_key], cwd=home, env=env) as sshd:
        compute = PinnedFakeCompute(upstream_url_for=lambda instance_id: f"http://127.0.0.1:{engine_port}")
        compute.fingerprint = sshd.host_key_fingerprint
        template = WorkerTemplate(
            engine="fake", nats_url=nats_server.url, heartbeat_interval_s=0.5, agent_port=agent_port,
            engine_port=engine_port, agent_install=f"preinstalled:{AGENT}", base_dir=base_dir,
            ssh_port=sshd.port, ssh_username=getpass.getuser(),
            # The switch to an unprivileged user is covered by tests/integration/install/test_install_run_as.py;
            # here the agent is this repo's, whose interpreter may sit in a home only root can enter.
            run_as=None,
        )
        driver = SshInstallDriver(compute, SshInstaller(client_key, connect_timeout_s=20), template)
        config = HandlerConfig(provider_timeout_s=20.0, check_backoff=Backoff(base_s=0.1, cap_s=0.5),
                               policy=Policy(install=True, watch_interval_s=0.5, unavailable_action="none"))
        try:
            async with running_orchestrator(nats_client, compute, config=config, installer=driver) as running:
                yield running, base_dir
        finally:
            stop_install(base_dir)
            assert not marked_pids(base_dir), "worker processes survived teardown"


async def test_an_instance_is_installed_over_ssh_then_reinstalled(ssh_stack):
    running, base_dir = ssh_stack
    instance = new_id()
    await running.publish(provision(instance, org=ORG, model=MODEL))
    ready = await wait_until(lambda: _find(running, instance, InstanceReady), timeout_s=90, message="ready over SSH")
    assert ready.model_name == MODEL
    events = await running.events(ORG, instance)
    phases = [(e.phase, e.generation) for e in events if isinstance(e, InstanceInstallPhaseReached)]
    assert phases == [("ssh_ready", 0), ("installing", 0), ("engine_starting", 0), ("agent_started", 0)]

    await running.publish(reinstall(instance, org=ORG))
    await wait_until(lambda: _ready_twice(running, instance), timeout_s=90, message="ready after reinstall")
    events = await running.events(ORG, instance)
    assert [(e.phase, e.generation) for e in events if isinstance(e, InstanceInstallPhaseReached)][4:] == [
        ("ssh_ready", 1), ("installing", 1), ("engine_starting", 1), ("agent_started", 1)]

    await running.publish(terminate(instance, org=ORG))
    await wait_until(lambda: _has(running, instance, "instance.terminated"), timeout_s=30, message="terminated")


async def _ready_twice(running, instance) -> bool:
    return (await running.tags(ORG, instance)).count("instance.ready") >= 2
