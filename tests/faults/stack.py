"""A control plane made of real processes for the fault tests, and what the tests ask of it.

``FaultStack`` starts ``inventiv orchestrator`` processes (sharing one mock-provider data dir,
so they share its ledger the way replicas share a cloud account) and an ``inventiv projector``
process, all against the test's nats-server and database. It publishes commands the way the
API does, reads instance state by folding the EVENTS log, counts servers in the provider's
ledger, and compares a rebuild of the read models with the live tables.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import asyncpg
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig

from contracts import codec, headers
from contracts import commands as cmd
from contracts.events import event_tag
from contracts.ids import new_id
from services.api.commands import publish_command
from services.orchestrator.adapters.mock_compute import LEDGER_FILE, LOCK_FILE, MockCompute
from services.orchestrator.bootstrap import mock_state_dir
from services.orchestrator.domain.evolve import fold
from services.orchestrator.domain.state import InstanceState
from services.projector.rebuild import RebuildReport, rebuild
from services.projector.runner import wait_for_seq
from services.runtime.embedded import EmbeddedNats
from services.runtime.eventstore import JetStreamEventStore, LoadedEvent
from services.runtime.natsio import load_config_files
from tests.helpers import wait_until
from tests.unit.orchestrator.factories import placement

from .processes import ServiceProcess, cli

ORG = "org-faults"
MODEL = "fake/fault-model"
# Set on the test's server only (the shipped consumers say 30 s, and no environment variable
# changes that): a redelivery after a crash or a pause comes within a test's patience. It is
# shorter than the orchestrator's in_progress interval (10 s), so a delivery handled for longer
# than 5 s may be redelivered while still in flight, which 30 s does not allow: tests with two
# replicas busy at once either accept that (test_duplicates) or run on matching test timings
# (start_orchestrator(fast_provider_retries=True)).
TEST_ACK_WAIT_S = 5.0
HEARTBEAT_INTERVAL_S = 0.5
CONSUMERS = ("orchestrator", "orchestrator-timers")  # nats/consumers/*.json: commands, check timers


class FaultStack:
    def __init__(self, nats_server: EmbeddedNats, database_url: str, root: Path, nc: NATS, pool: asyncpg.Pool):
        self.nats_server = nats_server  # the test's own: tests may kill and restart it
        self.nats_url, self.database_url, self.root = nats_server.url, database_url, root
        self.nc, self.js, self.pool = nc, nc.jetstream(), pool
        self.data_dir = root / "data"
        self.mock_dir = mock_state_dir(self.data_dir)
        self.compute = MockCompute(self.mock_dir, nats_url=self.nats_url)  # a view of the shared ledger
        self.store = JetStreamEventStore(self.js)
        self.processes: list[ServiceProcess] = []

    # --- processes ------------------------------------------------------------------------

    def service_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("INVENTIV_") and k not in ("NATS_URL", "DATABASE_URL")}
        env.update(
            NATS_URL=self.nats_url,
            DATABASE_URL=self.database_url,
            INVENTIV_DATA_DIR=str(self.data_dir),
            INVENTIV_LOG_FORMAT="json",
            INVENTIV_MOCK_HEARTBEAT_INTERVAL_S=str(HEARTBEAT_INTERVAL_S),
            INVENTIV_ORCHESTRATOR_METRICS_PORT="0",
            INVENTIV_PROJECTOR_METRICS_PORT="0",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def start_orchestrator(self, name: str, *, failpoints: str = "", fast_provider_retries: bool = False,
                           **env: str) -> ServiceProcess:
        extra = dict(env)
        if failpoints:
            extra["INVENTIV_FAILPOINTS"] = failpoints
        if fast_provider_retries:
            # Test timings: provider retries 0.2 s doubling to 2 s (not 1 s to 30 s), and "still working"
            # every 1.5 s, the same ratio to the tests' 5 s ack wait as 10 s has to the shipped 30 s.
            extra.update(INVENTIV_PROVIDER_RETRY_BASE_S="0.2", INVENTIV_PROVIDER_RETRY_CAP_S="2",
                         INVENTIV_KEEPALIVE_S="1.5")
        return self._start(name, cli("orchestrator"), extra)

    def start_projector(self) -> ServiceProcess:
        return self._start("projector", cli("projector"), {})

    def _start(self, name: str, argv: list[str], extra: dict[str, str]) -> ServiceProcess:
        process = ServiceProcess(name, argv, self.service_env(**extra), self.root / f"{name}.log")
        self.processes.append(process)
        return process.start()

    def logs(self) -> str:
        """Every process's last lines, for assertion messages."""
        return "\n".join(f"--- {p.name} (exit {p.exit_code()})\n{p.tail()}" for p in self.processes)

    async def set_ack_wait(self, seconds: float) -> None:
        """Set the orchestrator consumers' ack wait on this test's server (not in the shipped files)."""
        for raw in load_config_files("consumers"):
            if raw["config"]["durable_name"] not in CONSUMERS:
                continue
            config = ConsumerConfig.from_response({**raw["config"], "ack_wait": int(seconds * 1e9)})
            await self.js.add_consumer(raw["stream_name"], config)
        for durable in CONSUMERS:
            info = await self.js.consumer_info("COMMANDS", durable)
            assert info.config.ack_wait == seconds, info.config

    # --- commands -------------------------------------------------------------------------

    def provision_command(self, instance_id: str | None = None, *, timeout_s: int = 600) -> cmd.ProvisionInstance:
        command_id = new_id()
        return cmd.ProvisionInstance(
            id=command_id, org_id=ORG, actor="user:fault-tests", correlation_id=command_id, causation_id=command_id,
            occurred_at=_now(), instance_id=instance_id or new_id(), placement=placement(MODEL),
            startup_timeout_s=timeout_s,
        )

    def terminate_command(self, instance_id: str) -> cmd.TerminateInstance:
        command_id = new_id()
        return cmd.TerminateInstance(id=command_id, org_id=ORG, actor="user:fault-tests", correlation_id=command_id,
                                     causation_id=command_id, occurred_at=_now(), instance_id=instance_id)

    async def publish(self, command: cmd.Command, *, msg_id: str | None = None):
        """Publish as the API does (``Nats-Msg-Id`` = command id), or with another message id."""
        if msg_id is None:
            return await publish_command(self.js, command, timeout_s=10.0)
        hdrs = {**headers.envelope_headers(command), headers.MSG_ID: msg_id}
        return await self.js.publish(codec.command_subject_for(command), codec.encode(command), stream="COMMANDS",
                                     headers=hdrs, timeout=10.0)

    async def provision(self, **kw) -> str:
        command = self.provision_command(**kw)
        await self.publish(command)
        return command.instance_id

    async def terminate(self, instance_id: str) -> None:
        await self.publish(self.terminate_command(instance_id))

    # --- the log --------------------------------------------------------------------------

    async def history(self, instance_id: str) -> list[LoadedEvent]:
        return await self.store.load(f"evt.{ORG}.instance.{instance_id}.*")

    async def state(self, instance_id: str) -> InstanceState:
        """The instance as the orchestrator sees it; raises IllegalTransition on an illegal history."""
        return fold(item.event for item in await self.history(instance_id))

    async def tags(self, instance_id: str) -> list[str]:
        return [event_tag(item.event) for item in await self.history(instance_id)]

    async def wait_status(self, instance_id: str, status: str, *, timeout_s: float = 60.0) -> InstanceState:
        async def reached():
            state = await self.state(instance_id)
            return state if state.status == status else None

        try:
            return await wait_until(reached, timeout_s=timeout_s, interval_s=0.1,
                                    message=f"instance {instance_id} {status}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nhistory: {await self.tags(instance_id)}\n{self.logs()}") from None

    async def assert_clean_history(self, instance_id: str, *, once: tuple[str, ...]) -> list[str]:
        """Legal transitions only (fold raises otherwise), no event id twice, each of ``once`` exactly once."""
        history = await self.history(instance_id)
        fold(item.event for item in history)
        ids = Counter(item.event.id for item in history)
        assert not [i for i, n in ids.items() if n > 1], f"duplicate event ids: {ids.most_common(3)}"
        tags = [event_tag(item.event) for item in history]
        counts = Counter(tags)
        assert all(counts[tag] == 1 for tag in once), f"expected each of {once} once: {tags}"
        assert "command.rejected" not in counts, tags
        return tags

    async def wait_commands_settled(self, timeout_s: float = 60.0, *, timers: bool = True) -> None:
        """Every command acknowledged: nothing pending, nothing waiting for a redelivery.

        ``timers=False`` leaves out the check timers, which keep firing while an instance lives.
        """
        durables = CONSUMERS if timers else ("orchestrator",)

        async def settled():
            for durable in durables:
                info = await self.js.consumer_info("COMMANDS", durable)
                if info.num_ack_pending or info.num_pending:
                    return False
            return True

        await wait_until(settled, timeout_s=timeout_s, interval_s=0.1, message=f"every command acked on {durables}")

    # --- the provider's ledger ------------------------------------------------------------

    def ledger(self) -> dict[str, dict[str, Any]]:
        """Every server the mock provider ever created (deleted ones included), read without its lock."""
        path = self.mock_dir / LEDGER_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def servers_ever(self, instance_id: str) -> list[dict[str, Any]]:
        return [s for s in self.ledger().values() if s["instance_id"] == instance_id]

    def live_servers(self, instance_id: str | None = None) -> list[dict[str, Any]]:
        live = self.compute.live_servers()
        return [s for s in live if instance_id is None or s["instance_id"] == instance_id]

    def running_processes(self, instance_id: str | None = None) -> list[str]:
        """Servers (deleted or not) whose processes still run: a deleted one must have none."""
        return [s["server_id"] for s in self.ledger().values()
                if (instance_id is None or s["instance_id"] == instance_id)
                and self.compute.process_alive(s["server_id"])]

    def assert_one_live_server(self, instance_id: str, state: InstanceState) -> dict[str, Any]:
        live = self.live_servers(instance_id)
        assert [s["server_id"] for s in live] == [state.server_id], (live, state.server_id)
        assert self.running_processes(instance_id) == [state.server_id]
        return live[0]

    @contextlib.contextmanager
    def provider_frozen(self) -> Iterator[None]:
        """Hold the mock provider's ledger lock: every provider call (all of them read the ledger)
        blocks until the block exits, like a cloud API that stopped answering. Nothing in here may
        read the ledger through ``MockCompute`` (same process, second lock: it would wait forever)."""
        with open(self.mock_dir / LOCK_FILE, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # --- read models ----------------------------------------------------------------------

    async def assert_rebuild_equals_live(self, timeout_s: float = 60.0) -> RebuildReport:
        """The running projector caught up with EVENTS, and a replay from the log equals its tables."""
        head = (await self.js.stream_info("EVENTS")).state.last_seq
        try:
            await wait_for_seq(self.pool, head, timeout_s=timeout_s)
        except TimeoutError as exc:
            raise AssertionError(f"the projector did not catch up: {exc}\n{self.logs()}") from None
        report = await rebuild(self.nc, self.pool, swap=False)
        assert report.live_existed and report.tables_compared > 0, report
        assert report.differences == [], [d.describe() + f" {d.samples}" for d in report.differences]
        assert report.checkpoint >= head
        return report


def _now() -> datetime:
    return datetime.now(timezone.utc)
