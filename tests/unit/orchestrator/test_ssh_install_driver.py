"""The SSH install driver's steps, over the in-memory provider and a recording installer."""

from __future__ import annotations

from dataclasses import replace

from services.orchestrator.adapters.memory import FakeCompute, inline
from services.orchestrator.adapters.ssh_install_driver import SshInstallDriver, WorkerTemplate
from services.orchestrator.domain.effects import DriveInstall
from services.orchestrator.install.model import InstallStatus

from .factories import placement

FINGERPRINT = "SHA256:" + "A" * 43


class RecordingInstaller:
    def __init__(self):
        self.started: list[int] = []
        self.status_value = InstallStatus("not_started", None, None, None, "")

    async def start(self, target, spec):
        self.started.append(spec.generation)
        self.status_value = InstallStatus("running", "installing", spec.generation, None, "")

    async def status(self, target, base_dir="/opt/inventiv"):
        return self.status_value


def setup(state: str = "running"):
    compute = FakeCompute()
    server = compute.create_server("i-1", "org1", placement(), None, ("inv",))
    compute.servers[server.server_id].info = replace(server, state=state)
    compute.host_keys[server.server_id] = (FINGERPRINT,)
    installer = RecordingInstaller()
    driver = SshInstallDriver(compute, installer, WorkerTemplate(nats_url="nats://10.0.0.2:4222"), offload=inline)
    return compute, installer, driver, DriveInstall("org1", "i-1", server.server_id, "local-1", 0, "org/model")


async def test_a_stopped_server_is_powered_on_before_anything_else():
    compute, installer, driver, effect = setup(state="stopped")
    observed = await driver.drive(effect)
    assert not observed.server_ready and compute.calls["power_on"] == 1 and installer.started == []
    assert compute.get_server(effect.server_id, "local-1").state == "running"
    observed = await driver.drive(effect)
    assert observed.server_ready and installer.started == [0]


async def test_no_published_host_key_means_not_ready_and_no_connection():
    compute, installer, driver, effect = setup()
    compute.host_keys.clear()
    observed = await driver.drive(effect)
    assert not observed.server_ready and installer.started == []


async def test_an_install_starts_once_per_generation():
    compute, installer, driver, effect = setup()
    assert (await driver.drive(effect)).state == "running"
    await driver.drive(effect)
    assert installer.started == [0]
    await driver.drive(replace(effect, generation=1))
    assert installer.started == [0, 1]
    installer.status_value = InstallStatus("failed", "installing", 1, 7, "boom")
    failed = await driver.drive(replace(effect, generation=1))
    assert (failed.state, failed.exit_code) == ("failed", 7) and installer.started == [0, 1]  # reported, not retried
