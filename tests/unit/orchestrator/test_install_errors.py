"""SshInstaller's error mapping to the orchestrator's vocabulary, with asyncssh.connect replaced.

The same mappings run against a real SSH server in tests/integration/install/.
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import asyncssh
import pytest

from services.orchestrator.install import installer as installer_module
from services.orchestrator.install.installer import HostKeyMismatch, SshInstaller
from services.orchestrator.install.model import SshTarget
from services.orchestrator.ports import Permanent, Transient
from tests.unit.orchestrator.test_install_model import FP, spec

KEY = asyncssh.generate_private_key("ssh-ed25519")
TARGET = SshTarget("10.0.0.5", host_key_fingerprints=(FP,))


class FakeConnection:
    def __init__(self, exit_status=0, stdout="", stderr=""):
        self.result = SimpleNamespace(exit_status=exit_status, stdout=stdout, stderr=stderr)
        self.runs = []

    async def run(self, command, input=None, check=False, timeout=None):
        self.runs.append((command, input))
        return self.result


def connect_with(monkeypatch, outcome):
    calls = []

    @contextlib.asynccontextmanager
    async def fake_connect(*args, **kwargs):
        calls.append(kwargs)
        if isinstance(outcome, BaseException):
            raise outcome
        yield outcome

    monkeypatch.setattr(installer_module.asyncssh, "connect", fake_connect)
    return calls


@pytest.mark.parametrize("error", [
    ConnectionRefusedError(111, "refused"), ConnectionResetError(104, "reset"), TimeoutError(),
    TimeoutError(), OSError(113, "no route to host"),
    asyncssh.PermissionDenied("auth failed"), asyncssh.ConnectionLost("lost"),
    asyncssh.ProtocolError("bad banner"), asyncssh.ChannelOpenError(2, "connect failed"),
])
async def test_unreachable_or_not_yet_accepting_is_transient(monkeypatch, error):
    connect_with(monkeypatch, error)
    with pytest.raises(Transient):
        await SshInstaller(KEY).status(TARGET)


async def test_a_host_key_mismatch_is_permanent(monkeypatch):
    connect_with(monkeypatch, asyncssh.HostKeyNotVerifiable("Host key is not trusted"))
    with pytest.raises(HostKeyMismatch) as info:
        await SshInstaller(KEY).start(TARGET, spec())
    assert isinstance(info.value, Permanent) and not isinstance(info.value, Transient)
    assert "pinned" in str(info.value)


async def test_no_pinned_fingerprint_refuses_without_connecting(monkeypatch):
    calls = connect_with(monkeypatch, FakeConnection())
    with pytest.raises(Permanent, match="no host key fingerprint"):
        await SshInstaller(KEY).start(SshTarget("10.0.0.5"), spec())
    assert calls == []


async def test_the_connection_never_uses_known_hosts_files_agents_or_config(monkeypatch):
    conn = FakeConnection(stdout="generation=\nphase=\nexit_code=\nlocked=0\n--- install.log\n")
    calls = connect_with(monkeypatch, conn)
    await SshInstaller(KEY, connect_timeout_s=3).status(TARGET)
    options = calls[0]
    assert options["known_hosts"] == ([], [], []) and options["known_hosts"] is not None
    assert options["agent_path"] is None and options["config"] == [] and options["client_keys"] == [KEY]
    assert options["connect_timeout"] == 3


@pytest.mark.parametrize("code, error", [(69, Permanent), (64, Permanent), (75, Transient), (1, Transient)])
async def test_launcher_exit_codes(monkeypatch, code, error):
    connect_with(monkeypatch, FakeConnection(exit_status=code, stderr="boom"))
    with pytest.raises(error) as info:
        await SshInstaller(KEY).start(TARGET, spec())
    assert (error is Permanent) != isinstance(info.value, Transient)


async def test_start_sends_the_script_on_stdin(monkeypatch):
    conn = FakeConnection(stdout="started: generation 0")
    connect_with(monkeypatch, conn)
    await SshInstaller(KEY).start(TARGET, spec())
    command, script = conn.runs[0]
    assert command.endswith('exec bash "$f" launch') and script.startswith("#!/usr/bin/env bash")


@pytest.mark.parametrize("result", [FakeConnection(exit_status=1), FakeConnection(stdout="banner only\n")])
async def test_a_failing_or_unreadable_status_is_transient(monkeypatch, result):
    connect_with(monkeypatch, result)
    with pytest.raises(Transient):
        await SshInstaller(KEY).status(TARGET)
