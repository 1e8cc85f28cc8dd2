"""Servers that cannot be talked to yet: every case is Transient, and nothing runs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncssh
import pytest

from services.orchestrator.install.installer import SshInstaller
from services.orchestrator.install.model import SshTarget
from services.orchestrator.ports import Transient
from services.runtime.embedded import free_port
from tests.helpers import wait_until

from .conftest import cmdline


def processes_naming(needle: str) -> list[int]:
    """Live processes whose command line names ``needle``."""
    return [int(p.name) for p in Path("/proc").glob("[0-9]*")
            if needle in cmdline(int(p.name)) and _state(int(p.name)) not in ("Z", "")]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""

ANY_FP = "SHA256:" + "A" * 43


async def test_a_server_not_listening_is_transient(installer):
    with pytest.raises(Transient):
        await installer.status(SshTarget("127.0.0.1", free_port(), "root", (ANY_FP,)))


async def test_a_key_not_yet_authorized_is_transient(sshd, target):
    stranger = SshInstaller(asyncssh.generate_private_key("ssh-ed25519"), connect_timeout_s=20)
    with pytest.raises(Transient, match="not accepted"):
        await stranger.status(target)
    assert sshd.commands == []


async def test_a_server_that_never_speaks_ssh_times_out_as_transient(client_key):
    accepted = []

    async def silent(reader, writer):
        accepted.append(writer)
        await reader.read()  # never answers; closed by the client at its timeout

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(Transient):
            await SshInstaller(client_key, connect_timeout_s=1).status(SshTarget("127.0.0.1", port, "root", (ANY_FP,)))
        assert accepted
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_status_command_running_past_its_timeout_is_transient(sshd, target, client_key, tmp_path):
    # A stuck command (disk hung, fork bomb) must not hang the caller; the connection is dropped.
    stuck = SshInstaller(client_key, connect_timeout_s=20, command_timeout_s=1)
    base = tmp_path / "stuck"
    (base / "logs").mkdir(parents=True)
    os.mkfifo(base / "logs" / "install.log")  # tail blocks reading a FIFO nobody writes
    with pytest.raises(Transient):
        await stuck.status(target, str(base))
    # The server ends the command once the client has gone: nothing keeps the FIFO open.
    await wait_until(lambda: not [pid for pid in processes_naming(str(base))], timeout_s=30,
                     message="the stuck command to be killed")
