"""Each worker gets its own engine key: in its 0600 env file (SSH) or process environment (mock), never argv."""

from __future__ import annotations

import pytest
import structlog

from agent.engine_command import engine_command
from agent.settings import parse_settings
from services.orchestrator.adapters.engine_probe import HttpEngineProbe
from services.orchestrator.adapters.memory import FakeCompute, inline
from services.orchestrator.adapters.mock_compute import MockCompute
from services.orchestrator.adapters.ssh_install_driver import SshInstallDriver, WorkerTemplate
from services.orchestrator.domain.effects import DriveInstall
from services.orchestrator.install.model import InvalidInstall
from services.orchestrator.install.script import render_bootstrap, render_env_file, render_launch_command
from services.orchestrator.install_settings import worker_template_from_env
from services.runtime.engine_keys import SECRET_ENV, EngineKeySecret, generate_secret
from tests.unit.orchestrator.test_install_model import spec
from tests.unit.orchestrator.test_install_script import source_env_file
from tests.unit.orchestrator.test_ssh_install_driver import FINGERPRINT, RecordingInstaller

from .factories import placement

RAW = generate_secret()
SECRET = EngineKeySecret.parse(RAW)
KEY = SECRET.key_for("inst-1")


def test_the_env_file_gives_the_agent_the_key_and_the_agent_gives_it_to_the_engine_by_env(tmp_path):
    for engine, extra in (("vllm", {}), ("fake", {"engine_args": ()})):
        s = spec(engine=engine, engine_api_key=KEY, **extra)
        settings_ = parse_settings([], source_env_file(render_env_file(s), tmp_path))
        assert settings_.engine_api_key == KEY
        assert settings_.redacted()["engine_api_key"] == "***"
        command = engine_command(settings_, "python3")
        assert command.env["VLLM_API_KEY"] == KEY
        assert not any(KEY in arg for arg in command.argv)


def test_no_key_no_variable():
    assert "INVENTIV_ENGINE_API_KEY" not in render_env_file(spec())


def test_the_key_is_only_in_the_script_body_sent_on_stdin_never_in_the_ssh_command_or_a_repr():
    s = spec(engine_api_key=KEY)
    assert KEY in render_bootstrap(s)  # stdin of the SSH exec, then a 0600 file the run deletes
    assert KEY not in render_launch_command(s.base_dir)
    assert KEY not in repr(s) and KEY not in str(s)


@pytest.mark.parametrize("bad", ["short", "has space" * 3, "x" * 300, "tab\there-and-more-chars", "é" * 20])
def test_a_bad_key_is_refused_without_echoing_it(bad):
    with pytest.raises(InvalidInstall) as caught:
        spec(engine_api_key=bad)
    assert bad not in str(caught.value)


def test_the_template_derives_each_instance_key_and_hides_the_secret():
    template = WorkerTemplate(nats_url="nats://10.0.0.2:4222", engine_key_secret=SECRET)
    first = template.spec_for(DriveInstall("org1", "inst-1", "srv", "z", 0, "org/model"))
    second = template.spec_for(DriveInstall("org1", "inst-2", "srv", "z", 0, "org/model"))
    assert first.engine_api_key == KEY and second.engine_api_key == SECRET.key_for("inst-2") != KEY
    assert RAW not in repr(template) and KEY not in repr(template)
    assert WorkerTemplate().spec_for(DriveInstall("org1", "inst-1", "srv", "z", 0, "m")).engine_api_key is None


def test_the_template_reads_the_secret_from_the_environment(monkeypatch):
    monkeypatch.setenv("INVENTIV_WORKER_NATS_URL", "nats://10.0.0.2:4222")
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert worker_template_from_env().engine_key_secret is None
    monkeypatch.setenv(SECRET_ENV, RAW)
    assert worker_template_from_env().engine_key_secret == SECRET
    monkeypatch.setenv(SECRET_ENV, "too-short")
    with pytest.raises(SystemExit, match=SECRET_ENV):
        worker_template_from_env()


async def test_the_ssh_driver_installs_the_instance_key_and_logs_none_of_it():
    compute = FakeCompute()
    server = compute.create_server("inst-1", "org1", placement(), None, ("inv",))
    compute.host_keys[server.server_id] = (FINGERPRINT,)
    specs = []

    class Keeping(RecordingInstaller):
        async def start(self, target, spec_):
            specs.append(spec_)
            await super().start(target, spec_)

    template = WorkerTemplate(nats_url="nats://10.0.0.2:4222", engine_key_secret=SECRET)
    driver = SshInstallDriver(compute, Keeping(), template, offload=inline)
    with structlog.testing.capture_logs() as logs:
        observed = await driver.drive(DriveInstall("org1", "inst-1", server.server_id, "local-1", 0, "org/model"))
    assert observed.server_ready and [s.engine_api_key for s in specs] == [KEY]
    assert KEY not in repr(logs) and KEY not in repr(observed)


def test_mock_workers_get_their_own_key_in_their_environment_only(tmp_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, RAW)  # the orchestrator's own environment: never handed to a worker
    compute = MockCompute(tmp_path, nats_url="nats://127.0.0.1:1", engine_keys=SECRET,
                          extra_env={"INVENTIV_ENGINE_API_KEY": "someone-elses-key-000"})
    env = compute._agent_env("srv-1", "inst-1", "org1", "m", 8000, 8001)
    assert env["INVENTIV_ENGINE_API_KEY"] == KEY
    assert SECRET_ENV not in env and RAW not in env.values()
    assert compute._agent_env("srv-2", "inst-2", "org1", "m", 8000, 8001)["INVENTIV_ENGINE_API_KEY"] != KEY
    unkeyed = MockCompute(tmp_path, nats_url="nats://127.0.0.1:1")._agent_env("srv-1", "inst-1", "org1", "m", 1, 2)
    assert "INVENTIV_ENGINE_API_KEY" not in unkeyed
    assert all(KEY not in arg for arg in compute.agent_command)


def test_the_probe_presents_the_instance_key_else_the_fleet_key_else_nothing():
    assert HttpEngineProbe(engine_keys=SECRET, api_key="fleet")._headers("inst-1") == {"Authorization": f"Bearer {KEY}"}
    assert HttpEngineProbe(api_key="fleet")._headers("inst-1") == {"Authorization": "Bearer fleet"}
    assert HttpEngineProbe()._headers("inst-1") == {}

