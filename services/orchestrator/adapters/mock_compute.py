"""The mock provider: each "server" is one real agent process on loopback, running the fake engine.

``create_server`` starts ``python -m agent.main --engine fake`` in its own session (process
group) with the instance's identity in its environment and two free loopback ports; the
server's ``upstream_url`` is the engine port, its ``agent_url`` the agent port. So the whole
path (heartbeats over NATS, readiness, proxying) runs for real without GPUs or Docker.

A JSON ledger under ``state_dir`` (``servers.json``) records every server with its tags, so an
orchestrator restarted after a crash finds, by tag, the servers created before it (the
handlers look up by tag before every create). The processes are "servers": they outlive the
orchestrator. ``stop_all_servers(state_dir)`` stops every one of them (``inventiv up`` calls it
at shutdown); ``delete_server`` stops one (SIGTERM to its process group, SIGKILL after a grace).

Faults for tests: ``failure_rate`` makes that fraction of calls raise ``Transient`` before doing
anything; ``ambiguous_create_rate`` makes that fraction of creates succeed and *then* raise
``Transient`` (the outcome-unknown case that must never lead to a second server).

With ``engine_keys`` (``INVENTIV_ENGINE_KEY_SECRET``) each worker's agent gets its instance's
derived engine key as ``INVENTIV_ENGINE_API_KEY`` in its process environment (never argv, never the
ledger), like the env file a real install writes; its fake engine then refuses /v1 without it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import subprocess
import sys
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from decimal import Decimal
from typing import Any, Iterator, Sequence

import structlog

from contracts.catalog import Placement
from services.runtime.embedded import free_port
from services.runtime.engine_keys import EngineKeySecret

from ..domain.effects import ServerInfo
from .mock_processes import MARKER_ENV, _alive, _signal, _start_ticks, _stop_process, _tail
from ..domain.resources import IpInfo, ServerTypeOffer, VolumeInfo
from ..ports import NotFound, Permanent, Transient

log = structlog.get_logger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
LEDGER_FILE = "servers.json"
LOCK_FILE = "ledger.lock"
HOST = "127.0.0.1"


def default_agent_command() -> list[str]:
    return [sys.executable, "-m", "agent.main", "--engine", "fake"]


class MockCompute:
    def __init__(
        self,
        state_dir: Path,
        *,
        nats_url: str,
        heartbeat_interval_s: float = 4.0,
        failure_rate: float = 0.0,
        ambiguous_create_rate: float = 0.0,
        seed: int | None = None,
        agent_command: Sequence[str] | None = None,
        extra_env: dict[str, str] | None = None,
        stop_grace_s: float = 5.0,
        engine_keys: EngineKeySecret | None = None,
    ):
        if not (0.0 <= failure_rate <= 1.0 and 0.0 <= ambiguous_create_rate <= 1.0):
            raise ValueError("failure rates must be between 0 and 1")
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        self.nats_url = nats_url
        self.heartbeat_interval_s = heartbeat_interval_s
        self.failure_rate = failure_rate
        self.ambiguous_create_rate = ambiguous_create_rate
        self.agent_command = list(agent_command or default_agent_command())
        self.extra_env = dict(extra_env or {})
        self.stop_grace_s = stop_grace_s
        self._engine_keys = engine_keys
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._children: dict[int, subprocess.Popen] = {}

    # --- faults ---------------------------------------------------------------------------

    def _maybe_fail(self, operation: str) -> None:
        if self.failure_rate and self._random.random() < self.failure_rate:
            raise Transient(f"injected transient failure in {operation}")

    # --- the Compute port -----------------------------------------------------------------

    def find_servers_by_tag(self, instance_id: str, zone: str) -> list[ServerInfo]:
        self._maybe_fail("find_servers_by_tag")
        with _ledger(self.state_dir, self._lock) as servers:
            live = [s for s in servers.values() if s["instance_id"] == instance_id and not s.get("deleted_at")]
        live.sort(key=lambda s: s["created_at"])
        return [self._info(s) for s in live]

    def create_server(
        self, instance_id: str, org_id: str, placement: Placement, user_data: str | None, tags: Sequence[str]
    ) -> ServerInfo:
        self._maybe_fail("create_server")
        if not placement.model_name:
            raise Permanent("placement has no model_name")
        server_id = f"mock-{uuid.uuid4()}"
        engine_port, agent_port = _two_free_ports()
        log_path = self.state_dir / "logs" / f"{server_id}.log"
        env = self._agent_env(server_id, instance_id, org_id, placement.model_name, engine_port, agent_port)
        with _ledger(self.state_dir, self._lock) as servers:
            proc = self._spawn(env, log_path)
            servers[server_id] = {
                "server_id": server_id,
                "instance_id": instance_id,
                "org_id": org_id,
                "zone": placement.zone_code,
                "instance_type": placement.instance_type_code,
                "model": placement.model_name,
                "tags": list(tags),
                "pid": proc.pid,
                "pid_start": _start_ticks(proc.pid),
                "engine_port": engine_port,
                "agent_port": agent_port,
                "log": str(log_path),
                "created_at": _now(),
                "deleted_at": None,
                "generation": 0,
            }
            entry = servers[server_id]
        log.info("mock.server_created", server_id=server_id, instance_id=instance_id, pid=proc.pid,
                 engine_port=engine_port, agent_port=agent_port)
        if self.ambiguous_create_rate and self._random.random() < self.ambiguous_create_rate:
            raise Transient("injected: create outcome unknown (the server exists)")
        return self._info(entry)

    def _spawn(self, env: dict[str, str], log_path: Path) -> subprocess.Popen:
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                self.agent_command,
                env=env,
                cwd=str(REPO_ROOT),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: deleted as a whole, spared by Ctrl-C
            )
        self._children[proc.pid] = proc
        return proc

    # --- the worker on a server (what an install does on a real one) -----------------------

    def worker_status(self, server_id: str) -> tuple[int, bool, str]:
        """(install generation, whether the worker runs, the tail of its log). NotFound when gone."""
        with _ledger(self.state_dir, self._lock) as servers:
            entry = servers.get(server_id)
        if entry is None or entry.get("deleted_at"):
            raise NotFound(f"server {server_id} not found")
        return entry.get("generation", 0), _alive(entry), _tail(entry.get("log"))

    def power_on(self, server_id: str, zone: str) -> None:
        """A stopped mock server is one whose worker process is gone: start it again (same generation)."""
        self._maybe_fail("power_on")
        generation, alive, _ = self.worker_status(server_id)
        if not alive:
            self._replace_worker(server_id, generation, only_above=False)

    def reinstall_worker(self, server_id: str, generation: int) -> None:
        """Replace the worker with install ``generation``: the old one drains (SIGTERM), a new one starts.

        Idempotent: a generation at or below the installed one changes nothing.
        """
        self._replace_worker(server_id, generation, only_above=True)

    def _replace_worker(self, server_id: str, generation: int, *, only_above: bool) -> None:
        with _ledger(self.state_dir, self._lock) as servers:
            entry = servers.get(server_id)
        if entry is None or entry.get("deleted_at"):
            raise NotFound(f"server {server_id} not found")
        if only_above and entry.get("generation", 0) >= generation:
            return
        _stop_process(entry, self.stop_grace_s, self._children.pop(entry["pid"], None))
        env = self._agent_env(server_id, entry["instance_id"], entry["org_id"], entry["model"],
                              entry["engine_port"], entry["agent_port"])
        with _ledger(self.state_dir, self._lock) as servers:
            current = servers[server_id]
            if current.get("deleted_at") or current["pid"] != entry["pid"]:
                return  # deleted meanwhile, or another replica replaced the worker first
            proc = self._spawn(env, Path(current["log"]))
            current.update(pid=proc.pid, pid_start=_start_ticks(proc.pid), generation=generation)
        log.info("mock.worker_started", server_id=server_id, generation=generation, pid=proc.pid)

    def get_server(self, server_id: str, zone: str) -> ServerInfo:
        self._maybe_fail("get_server")
        with _ledger(self.state_dir, self._lock) as servers:
            entry = servers.get(server_id)
        if entry is None or entry.get("deleted_at"):
            raise NotFound(f"server {server_id} not found")
        return self._info(entry)

    def delete_server(self, server_id: str, zone: str) -> None:
        self._maybe_fail("delete_server")
        with _ledger(self.state_dir, self._lock) as servers:
            entry = servers.get(server_id)
        if entry is None or entry.get("deleted_at"):
            raise NotFound(f"server {server_id} not found")
        # Stop first, record after (outside the ledger lock: the grace may take seconds). A crash in
        # between leaves a recorded server whose processes are gone: deleting it again is harmless.
        _stop_process(entry, self.stop_grace_s, self._children.pop(entry["pid"], None))
        with _ledger(self.state_dir, self._lock) as servers:
            servers[server_id]["deleted_at"] = _now()
        log.info("mock.server_deleted", server_id=server_id, instance_id=entry["instance_id"])

    def list_servers(self, zone: str) -> list[ServerInfo]:
        self._maybe_fail("list_servers")
        with _ledger(self.state_dir, self._lock) as servers:
            entries = [s for s in servers.values() if not s.get("deleted_at") and (not zone or s["zone"] == zone)]
        return [self._info(s) for s in entries]

    # --- fleet upkeep: mock servers have no volumes, no public IPs and no SSH ---------------

    def list_volumes(self, zone: str) -> list[VolumeInfo]:
        self._maybe_fail("list_volumes")
        return []

    def delete_volume(self, volume_id: str, zone: str) -> None:
        self._maybe_fail("delete_volume")
        raise NotFound(f"volume {volume_id} not found")

    def list_ips(self, zone: str) -> list[IpInfo]:
        self._maybe_fail("list_ips")
        return []

    def delete_ip(self, ip_id: str, zone: str) -> None:
        self._maybe_fail("delete_ip")
        raise NotFound(f"ip {ip_id} not found")

    def list_server_types(self, zone: str) -> list[ServerTypeOffer]:
        """The mock instance types of the seeded catalog (their prices make costs visible locally)."""
        self._maybe_fail("list_server_types")
        from services.db.catalog_data import INSTANCE_TYPES  # plain data; imported late, used rarely

        return [
            ServerTypeOffer(name=code, zone=zone, hourly_price_eur=Decimal(price), gpu_count=gpus,
                            gpu_memory_gb=vram_gb, ram_gb=ram_gb, available=True, diskless=False)
            for provider, code, gpus, vram_gb, _cpus, ram_gb, _bps, price, zones in INSTANCE_TYPES
            if provider == "mock" and (not zone or zone in zones)
        ]

    def host_key_fingerprints(self, server_id: str, zone: str) -> tuple[str, ...]:
        """Mock workers are processes on loopback, never reached by SSH: nothing to pin."""
        self._maybe_fail("host_key_fingerprints")
        with _ledger(self.state_dir, self._lock) as servers:
            entry = servers.get(server_id)
        if entry is None or entry.get("deleted_at"):
            raise NotFound(f"server {server_id} not found")
        return ()

    # --- helpers --------------------------------------------------------------------------

    def _agent_env(self, server_id: str, instance_id: str, org_id: str, model: str, engine_port: int,
                   agent_port: int) -> dict[str, str]:
        # The agent gets its own identity only: no database URL, no orchestrator settings.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("INVENTIV_") and k not in ("DATABASE_URL", "NATS_URL")}
        if os.environ.get("INVENTIV_LOG_FORMAT"):
            env["INVENTIV_LOG_FORMAT"] = os.environ["INVENTIV_LOG_FORMAT"]
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env.update(
            INVENTIV_INSTANCE_ID=instance_id,
            INVENTIV_ORG_ID=org_id,
            NATS_URL=self.nats_url,
            INVENTIV_MODEL=model,
            INVENTIV_ENGINE="fake",
            INVENTIV_ENGINE_PORT=str(engine_port),
            INVENTIV_AGENT_PORT=str(agent_port),
            INVENTIV_HEARTBEAT_INTERVAL_S=str(self.heartbeat_interval_s),
        )
        env.update(self.extra_env)
        env.pop("INVENTIV_ENGINE_API_KEY", None)  # only ever the instance's own key
        if self._engine_keys is not None:
            env["INVENTIV_ENGINE_API_KEY"] = self._engine_keys.key_for(instance_id)
        env[MARKER_ENV] = server_id
        return env

    def _info(self, entry: dict[str, Any]) -> ServerInfo:
        return ServerInfo(
            server_id=entry["server_id"],
            state="running" if _alive(entry) else "stopped",
            zone=entry["zone"],
            ip_address=HOST,
            upstream_url=f"http://{HOST}:{entry['engine_port']}",
            agent_url=f"http://{HOST}:{entry['agent_port']}",
            tags=tuple(entry.get("tags", ())),
        )

    def process_alive(self, server_id: str) -> bool:
        """For tests: is any process of this server still running?"""
        with _ledger(self.state_dir, self._lock) as servers:
            entry = servers.get(server_id)
        return bool(entry) and _alive(entry)

    def live_servers(self) -> list[dict[str, Any]]:
        with _ledger(self.state_dir, self._lock) as servers:
            return [dict(s) for s in servers.values() if not s.get("deleted_at")]


def stop_all_servers(state_dir: Path, grace_s: float = 5.0) -> int:
    """Stop every mock server recorded under ``state_dir`` and mark it deleted. Returns how many.

    For ``inventiv up`` at shutdown: the orchestrator itself never stops them on exit (servers
    outlive orchestrator restarts). The event log still says those instances exist; the
    reconciler sees the provider report them gone on the next start.
    """
    state_dir = Path(state_dir)
    if not (state_dir / LEDGER_FILE).exists():
        return 0
    lock = threading.Lock()
    with _ledger(state_dir, lock) as servers:
        live = [dict(entry) for entry in servers.values() if not entry.get("deleted_at")]
    for entry in live:
        _signal(entry, signal.SIGTERM)  # all at once, then wait: shutdown takes one grace, not one per server
    for entry in live:
        _stop_process(entry, grace_s, None)
    with _ledger(state_dir, lock) as servers:
        for entry in live:
            servers[entry["server_id"]].update(deleted_at=_now(), deleted_by="stop_all_servers")
    return len(live)


# --- ledger -------------------------------------------------------------------------------


@contextlib.contextmanager
def _ledger(state_dir: Path, lock: threading.Lock) -> Iterator[dict[str, dict[str, Any]]]:
    """Read-modify-write the ledger under a thread lock and an exclusive file lock (several processes may share it)."""
    path = state_dir / LEDGER_FILE
    with lock, open(state_dir / LOCK_FILE, "a+") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            servers = json.loads(path.read_text()) if path.exists() else {}
            before = json.dumps(servers, sort_keys=True)
            yield servers
            after = json.dumps(servers, sort_keys=True, indent=1)
            if json.dumps(servers, sort_keys=True) != before:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(after)
                os.replace(tmp, path)
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _two_free_ports() -> tuple[int, int]:
    first = free_port(HOST)
    second = free_port(HOST)
    while second == first:
        second = free_port(HOST)
    return first, second
