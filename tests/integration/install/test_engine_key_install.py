"""The engine key over a real SSH install: the worker's engine refuses /v1 without its own key, the key
sits only in the 0600 env file (never in an agent's or engine's argv, a log, or a stored event), and the
orchestrator's probe, presenting the same derived key, still brings the instance to ``ready``."""

from __future__ import annotations

import getpass
import os
import stat
from pathlib import Path

import aiohttp
import asyncssh
import pytest_asyncio

from contracts.events import InstanceReady
from contracts.ids import new_id
from services.orchestrator.adapters.engine_probe import HttpEngineProbe
from services.orchestrator.adapters.loopback_sshd import LoopbackSshd
from services.orchestrator.adapters.ssh_install_driver import SshInstallDriver, WorkerTemplate
from services.orchestrator.domain.backoff import Backoff
from services.orchestrator.domain.decision import Policy
from services.orchestrator.handlers import HandlerConfig
from services.orchestrator.install.installer import SshInstaller
from services.runtime import natsio
from services.runtime.embedded import free_port
from services.runtime.engine_keys import EngineKeySecret, generate_secret
from tests.helpers import wait_until
from tests.integration.orchestrator.conftest import running_orchestrator
from tests.integration.orchestrator.test_orchestrator_nats import _find
from tests.integration.orchestrator.test_ssh_bring_up import PinnedFakeCompute
from tests.unit.orchestrator.factories import provision

from .agent_user import make_reachable
from .conftest import cmdline, finished, marked_pids, stop_install, wait_status

MODEL = "mock-echo-model"
ORG = "org-it"  # what _find reads


async def _status(url: str, key: str | None, path: str = "/v1/models") -> int:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with aiohttp.ClientSession() as http:
        async with http.get(url + path, headers=headers) as resp:
            return resp.status


async def _engine_answers(url: str) -> bool:
    try:
        return await _status(url, None, "/health") == 200
    except aiohttp.ClientError:
        return False


def assert_key_only_in_the_env_file(base_dir: str, key: str) -> None:
    env_file = Path(base_dir) / "etc" / "agent.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert f"INVENTIV_ENGINE_API_KEY={key}" in env_file.read_text().replace("'", "")
    pids = marked_pids(base_dir)
    lines = {pid: cmdline(pid) for pid in pids}
    assert any("inventiv-agent" in line for line in lines.values()), lines
    assert any("fake_server" in line for line in lines.values()), lines  # the engine itself
    for pid in pids:
        assert key.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes(), f"key in argv of {lines[pid]}"
    logs = [path for path in (Path(base_dir) / "logs").rglob("*") if path.is_file()]
    assert any(path.name == "agent.log" for path in logs), logs  # the agent's own rotated log is checked too
    for log in logs:
        assert key not in log.read_text(errors="replace"), f"key in {log.name}"
    assert not list((Path(base_dir) / "state").glob("bootstrap.*")), "the script (which holds the key) is deleted"


async def test_the_installed_engine_requires_its_own_key(installer, target, make_spec):
    secret = EngineKeySecret.parse(generate_secret())
    spec = make_spec(engine_api_key=secret.key_for("inst-1"))
    await installer.start(target, spec)
    done = await wait_status(installer, target, spec.base_dir, finished(1))
    assert done.state == "succeeded", done.log_tail
    url = f"http://127.0.0.1:{spec.engine_port}"
    await wait_until(lambda: _engine_answers(url), timeout_s=60, message="the engine listening")

    key = secret.key_for("inst-1")
    assert await _status(url, None) == 401
    assert await _status(url, secret.key_for("inst-2")) == 401  # another worker's key
    assert await _status(url, key) == 200
    assert_key_only_in_the_env_file(spec.base_dir, key)
    assert key not in done.log_tail


@pytest_asyncio.fixture
async def keyed_ssh_stack(nats_client, nats_server, tmp_path, agent_runtime):
    secret = EngineKeySecret.parse(generate_secret())
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
           "PIP_NO_INDEX": "1"}
    engine_port, agent_port = free_port(), free_port()
    base_dir = str(tmp_path / "worker")
    if agent_runtime.switches:
        make_reachable(tmp_path)
    async with LoopbackSshd([client_key], cwd=home, env=env) as sshd:
        compute = PinnedFakeCompute(upstream_url_for=lambda instance_id: f"http://127.0.0.1:{engine_port}")
        compute.fingerprint = sshd.host_key_fingerprint
        template = WorkerTemplate(
            engine="fake", nats_url=nats_server.url, heartbeat_interval_s=0.5, agent_port=agent_port,
            engine_port=engine_port, agent_install=f"preinstalled:{agent_runtime.agent}", base_dir=base_dir,
            ssh_port=sshd.port, ssh_username=getpass.getuser(), engine_key_secret=secret, run_as=agent_runtime.run_as,
        )
        driver = SshInstallDriver(compute, SshInstaller(client_key, connect_timeout_s=20), template)
        config = HandlerConfig(provider_timeout_s=20.0, check_backoff=Backoff(base_s=0.1, cap_s=0.5),
                               policy=Policy(install=True, watch_interval_s=0.5, unavailable_action="none"))
        try:
            async with running_orchestrator(nats_client, compute, config=config, installer=driver,
                                            probe=HttpEngineProbe(engine_keys=secret)) as running:
                yield running, base_dir, secret, f"http://127.0.0.1:{engine_port}"
        finally:
            stop_install(base_dir)
            assert not marked_pids(base_dir), "worker processes survived teardown"


async def test_the_orchestrator_installs_a_keyed_worker_and_reaches_ready(keyed_ssh_stack, nats_client):
    running, base_dir, secret, url = keyed_ssh_stack
    instance = new_id()
    await running.publish(provision(instance, org=ORG, model=MODEL))
    await wait_until(lambda: _find(running, instance, InstanceReady), timeout_s=90, message="ready over SSH")

    key = secret.key_for(instance)
    assert await _status(url, None) == 401 and await _status(url, key) == 200
    assert_key_only_in_the_env_file(base_dir, key)
    stored = await natsio.read_subject(nats_client.jetstream(), "EVENTS", f"evt.{ORG}.>")
    assert stored and all(key.encode() not in m.data and key not in repr(m.headers) for m in stored)
