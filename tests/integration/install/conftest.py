"""Fixtures for installing the worker over real SSH: a loopback asyncssh server running real bash,
the real agent from this repo's venv (fake engine), the per-test nats-server.

Run as root (as here), installs use the spec's default ``run_as``: the bootstrap creates that
system user and really switches to it, so the agent must be runnable by it (``agent_user.py``).

Every worker process an install starts carries ``INVENTIV_WORKER_HOME=<base dir>``; teardown stops
them by pid file (SIGTERM, the agent drains) and then kills anything still carrying the marker, and
fails the test if something survives.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
import pytest_asyncio

from services.orchestrator.adapters.loopback_sshd import LoopbackSshd
from services.orchestrator.install.installer import SshInstaller
from services.orchestrator.install.model import DEFAULT_RUN_AS, InstallStatus, SshTarget, WorkerSpec
from services.orchestrator.install.script import MARKER_ENV
from services.runtime.embedded import free_port
from tests.helpers import wait_until

from .agent_user import AGENT, make_reachable, make_shared_agent, shared_workdir

DEADLINE_S = 90.0


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def marked_pids(base_dir: str) -> list[int]:
    needle = f"{MARKER_ENV}={base_dir}".encode()
    pids = (int(p.name) for p in Path("/proc").glob("[0-9]*"))
    return [pid for pid in pids if needle in _environ(pid) and _alive(pid)]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def agent_pids(base_dir: str) -> list[int]:
    return [pid for pid in marked_pids(base_dir) if "inventiv-agent" in cmdline(pid)]


def generation_of(pid: int) -> str | None:
    for entry in _environ(pid):
        if entry.startswith(b"INVENTIV_INSTALL_GENERATION="):
            return entry.split(b"=", 1)[1].decode()
    return None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _wait_dead(pids: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop_install(base_dir: str) -> None:
    """Stop what an install left running: its runner, its agent (SIGTERM: it drains), then any marked leftover."""
    state = Path(base_dir) / "state"
    runner = _read_pid(state / "runner.pid")
    if runner and _alive(runner) and f"{state}/bootstrap." in cmdline(runner):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(runner, signal.SIGTERM)
        _wait_dead([runner], 20)
    agent = _read_pid(state / "agent.pid")
    if agent and agent in marked_pids(base_dir):
        os.kill(agent, signal.SIGTERM)
        _wait_dead([agent], 30)
    for pid in marked_pids(base_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def client_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest_asyncio.fixture
async def sshd(client_key, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        # Installs in these tests never reach a package index.
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    async with LoopbackSshd([client_key], cwd=home, env=env) as server:
        yield server


@pytest.fixture
def installer(client_key) -> SshInstaller:
    return SshInstaller(client_key, connect_timeout_s=20, command_timeout_s=60)


@pytest.fixture
def target(sshd) -> SshTarget:
    return SshTarget(sshd.host, sshd.port, getpass.getuser(), (sshd.host_key_fingerprint,))


@dataclass(frozen=True)
class AgentRuntime:
    """The agent installs use, and who they run it as (``switches``: root, so the bootstrap drops to run_as)."""

    agent: Path
    run_as: str | None
    switches: bool


@pytest.fixture(scope="session")
def agent_runtime():
    if os.geteuid() != 0:
        yield AgentRuntime(AGENT, DEFAULT_RUN_AS, switches=False)  # the bootstrap keeps the SSH user
        return
    workdir = shared_workdir()
    try:
        agent = make_shared_agent(workdir)
        if agent is None:  # no interpreter an unprivileged user can run: installs keep the SSH user (root)
            yield AgentRuntime(AGENT, None, switches=False)
        else:
            yield AgentRuntime(agent, DEFAULT_RUN_AS, switches=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def switching(agent_runtime) -> AgentRuntime:
    """For tests of the switch to the unprivileged user: skipped where it cannot happen (not root)."""
    if not agent_runtime.switches:
        pytest.skip("needs root and an agent an unprivileged user can run")
    return agent_runtime


@pytest.fixture
def make_spec(tmp_path, nats_server, agent_runtime):
    """Specs for this test, each base dir stopped and checked for leftovers at teardown."""
    base_dirs: list[str] = []
    if agent_runtime.switches:
        make_reachable(tmp_path)

    def make(name: str = "worker", **changes) -> WorkerSpec:
        base_dir = str(tmp_path / name)
        if base_dir not in base_dirs:
            base_dirs.append(base_dir)
        engine_port, agent_port = free_port(), free_port()
        while agent_port == engine_port:
            agent_port = free_port()
        spec = WorkerSpec(
            instance_id="inst-1", org_id="org-1", model_name="mock-echo-model", served_model_name="mock-echo-model",
            engine="fake", nats_url=nats_server.url, nats_creds=None, heartbeat_interval_s=0.5,
            agent_port=agent_port, engine_port=engine_port, engine_args=(),
            agent_install=f"preinstalled:{agent_runtime.agent}", base_dir=base_dir, generation=1,
            run_as=agent_runtime.run_as,
        )
        return dataclasses.replace(spec, **changes)

    yield make
    leaked = {}
    for base_dir in base_dirs:
        stop_install(base_dir)
        if survivors := marked_pids(base_dir):
            leaked[base_dir] = [(pid, cmdline(pid)) for pid in survivors]
    assert not leaked, f"worker processes survived teardown: {leaked}"


async def wait_status(installer: SshInstaller, target: SshTarget, base_dir: str, predicate,
                      history: list[InstallStatus] | None = None, timeout_s: float = DEADLINE_S) -> InstallStatus:
    async def probe():
        status = await installer.status(target, base_dir)
        if history is not None and (not history or history[-1] != status):
            history.append(status)
        return status if predicate(status) else None

    return await wait_until(probe, timeout_s=timeout_s, interval_s=0.1, message=f"install status in {base_dir}")


def finished(generation: int):
    return lambda s: s.generation == generation and s.state in ("succeeded", "failed")
