"""Lifecycle, fleet and install settings from the environment: defaults, and clear refusals."""

from __future__ import annotations

import asyncssh
import pytest

from services.orchestrator.install_settings import build_install_driver, install_mode, worker_template_from_env
from services.orchestrator.lifecycle_settings import fleet_config_from_env, policy_from_env, tick_schedule_from_env


def test_defaults():
    policy = policy_from_env(install=False)
    assert (policy.watch_interval_s, policy.stale_after_intervals, policy.unavailable_action) == (4.0, 3.0, "reinstall")
    assert tick_schedule_from_env().periods() == {"reconcile": 120.0, "cleanup": 900.0, "catalog_sync": 3600.0}
    assert fleet_config_from_env("mock").orphan_action == "terminate"
    assert install_mode("mock") == "mock" and install_mode("scaleway") == "ssh"


def test_settings_are_read(monkeypatch):
    monkeypatch.setenv("INVENTIV_UNAVAILABLE_ACTION", "replace")
    monkeypatch.setenv("INVENTIV_PROVIDER_ZONES", "fr-par-2, nl-ams-1")
    monkeypatch.setenv("INVENTIV_RECONCILE_INTERVAL_S", "0")
    monkeypatch.setenv("INVENTIV_WORKER_NATS_URL", "nats://10.0.0.2:4222")
    monkeypatch.setenv("INVENTIV_WORKER_ENGINE_ARGS", "--enable-prefix-caching --seed 7")
    assert policy_from_env(install=True).unavailable_action == "replace"
    assert fleet_config_from_env("scaleway").zones == ("fr-par-2", "nl-ams-1")
    assert tick_schedule_from_env().reconcile_s == 0
    template = worker_template_from_env()
    assert template.engine_args == ("--enable-prefix-caching", "--seed", "7")
    assert template.nats_url == "nats://10.0.0.2:4222" and template.bind_host == "127.0.0.1"


@pytest.mark.parametrize(("name", "value"), [
    ("INVENTIV_UNAVAILABLE_ACTION", "explode"),
    ("INVENTIV_ORPHAN_ACTION", "adopt-everything"),
    ("INVENTIV_INSTALL_WORKERS", "telnet"),
    ("INVENTIV_WATCH_INTERVAL_S", "0"),
])
def test_bad_values_stop_the_process_with_a_clear_message(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match="inventiv: "):
        policy_from_env(install=True)
        fleet_config_from_env("mock")
        install_mode("scaleway")


def test_install_modes(monkeypatch):
    monkeypatch.setenv("INVENTIV_INSTALL_WORKERS", "none")
    assert build_install_driver("mock", compute=None) is None
    monkeypatch.setenv("INVENTIV_INSTALL_WORKERS", "mock")
    with pytest.raises(SystemExit, match="only works with the mock provider"):
        install_mode("scaleway")


def test_ssh_installs_need_a_key_and_the_workers_nats_address(monkeypatch, tmp_path):
    with pytest.raises(SystemExit, match="INVENTIV_SSH_PRIVATE_KEY_FILE"):
        build_install_driver("scaleway", compute=None)
    key = tmp_path / "id_ed25519"
    key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    monkeypatch.setenv("INVENTIV_SSH_PRIVATE_KEY_FILE", str(key))
    with pytest.raises(SystemExit, match="INVENTIV_WORKER_NATS_URL"):
        build_install_driver("scaleway", compute=None)
    monkeypatch.setenv("INVENTIV_WORKER_NATS_URL", "nats://10.0.0.2:4222")
    assert build_install_driver("scaleway", compute=None) is not None
    monkeypatch.setenv("INVENTIV_WORKER_ENGINE_ARGS", "--max-model-len 8192")  # the agent owns this flag
    with pytest.raises(SystemExit, match="worker install settings"):
        build_install_driver("scaleway", compute=None)


def test_the_engine_can_listen_on_the_servers_own_address_never_a_wildcard():
    from services.orchestrator.adapters.ssh_install_driver import SERVER_ADDRESS, WorkerTemplate
    from services.orchestrator.domain.effects import DriveInstall
    from services.orchestrator.install.model import InvalidInstall

    effect = DriveInstall("org", "instance", "server", "zone", 0, "org/model")
    template = WorkerTemplate(nats_url="nats://10.0.0.2:4222", bind_host=SERVER_ADDRESS)
    assert template.spec_for(effect, "51.15.0.7").bind_host == "51.15.0.7"
    assert template.spec_for(effect, None).bind_host == "127.0.0.1"  # unknown yet: nothing exposed
    with pytest.raises(InvalidInstall):
        WorkerTemplate(nats_url="nats://10.0.0.2:4222", bind_host="0.0.0.0").spec_for(effect)
