"""Consumer policies against a real nats-server: attempt budgets, timer continuation, serve()."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from contracts import codec, subjects
from contracts.events import InstanceFailed
from contracts.heartbeats import Heartbeat
from contracts.ids import new_id
from services.orchestrator import bootstrap, main, metrics
from services.orchestrator.adapters.jetstream_consumer import ConsumerConfig
from services.orchestrator.adapters.memory import FakeCompute
from services.orchestrator.bootstrap import Orchestrator, build_ports
from services.orchestrator.domain import reasons
from services.orchestrator.domain.backoff import Backoff
from services.orchestrator.handlers import HandlerConfig, continuation_command_id, nudge_command_id
from services.orchestrator.ports import Transient
from services.runtime.eventstore import JetStreamEventStore
from services.runtime.settings import RuntimeSettings
from tests.helpers import wait_until
from tests.unit.orchestrator.factories import provision, terminate

ORG = "org-c"
FAST = HandlerConfig(provider_timeout_s=5.0, check_backoff=Backoff(base_s=0.05, cap_s=0.1),
                     provider_backoff=Backoff(base_s=0.05, cap_s=0.1))


async def _run(nc, compute, consumer_config):
    orchestrator = Orchestrator(nc, build_ports(nc, compute, config=FAST), consumer_config)
    stop = asyncio.Event()
    return orchestrator, stop, asyncio.create_task(orchestrator.run(stop))


async def _events(nc, instance):
    return [e.event for e in await JetStreamEventStore(nc.jetstream()).load(f"evt.{ORG}.instance.{instance}.*")]


async def _publish(nc, command):
    from contracts import headers

    await nc.jetstream().publish(codec.command_subject_for(command), codec.encode(command), stream="COMMANDS",
                                 headers=headers.envelope_headers(command))


async def _settled(nc):
    info = await nc.jetstream().consumer_info("COMMANDS", "orchestrator")
    return info.num_ack_pending == 0 and info.num_pending == 0


async def test_provisioning_gives_up_after_its_attempt_budget(nats_client):
    compute = FakeCompute()
    compute.fail_next("find_servers_by_tag", *[Transient("provider down")] * 50)
    budget = ConsumerConfig(fetch_timeout_s=0.2, max_attempts={"instance.provision": 3})
    orchestrator, stop, task = await _run(nats_client, compute, budget)
    try:
        instance = new_id()
        await _publish(nats_client, provision(instance, org=ORG))

        async def failed():
            return next((e for e in await _events(nats_client, instance) if isinstance(e, InstanceFailed)), None)

        event = await wait_until(failed, timeout_s=10, message="provisioning given up")
        assert (event.status, event.reason_code) == ("provisioning_failed", reasons.PROVIDER_CREATE_FAILED)
        assert "3 attempts" in event.message
        await wait_until(lambda: _settled(nats_client), timeout_s=5, message="message termed")
        assert compute.calls["create_server"] == 0
    finally:
        stop.set()
        await task


async def test_a_check_timer_past_its_budget_hands_over_to_a_fresh_one(nats_client):
    compute = FakeCompute()
    budget = ConsumerConfig(fetch_timeout_s=0.2, max_attempts={"instance.check": 2})
    orchestrator, stop, task = await _run(nats_client, compute, budget)
    try:
        instance = new_id()
        await _publish(nats_client, provision(instance, org=ORG))
        js = nats_client.jetstream()

        async def continued():
            if await _count_checks(js) < 2:
                return None
            last = codec.decode_command((await js.get_last_msg("COMMANDS", "cmd.instance.check")).data)
            return last if last.id == continuation_command_id(last.causation_id) else None

        last = await wait_until(continued, timeout_s=10, message="a continuation check")
        assert last.instance_id == instance
        await _publish(nats_client, terminate(instance, org=ORG))
        await wait_until(lambda: _settled(nats_client), timeout_s=10, message="the timer stops")
    finally:
        stop.set()
        await task


async def _count_checks(js) -> int:
    info = await js.stream_info("COMMANDS", subjects_filter="cmd.instance.check")
    return sum((info.state.subjects or {}).values())


async def test_heartbeat_status_changes_publish_one_nudge_each(nats_client):
    compute = FakeCompute()
    orchestrator, stop, task = await _run(nats_client, compute, ConsumerConfig(fetch_timeout_s=0.2))
    try:
        instance = new_id()
        js = nats_client.jetstream()
        for status in ("starting", "starting", "ready", "ready", "ready"):
            hb = Heartbeat(status=status, model="m", sent_at=datetime.now(timezone.utc))
            await js.publish(subjects.heartbeat_subject(ORG, instance), codec.encode(hb), stream="HEARTBEATS")
        expected = {nudge_command_id(instance, "starting"), nudge_command_id(instance, "ready")}

        async def nudges():
            seen = set()
            seq = 1
            while True:
                try:
                    msg = await js.get_msg("COMMANDS", seq=seq, subject="cmd.instance.check", next=True)
                except Exception:
                    return seen
                seen.add(codec.decode_command(msg.data).id)
                seq = msg.seq + 1

        assert await wait_until(lambda: _equal(nudges, expected), timeout_s=5, message="two nudges")
        # A nudge for an unknown instance is rejected once and never retried.
        await wait_until(lambda: _settled(nats_client), timeout_s=5)
    finally:
        stop.set()
        await task


async def _equal(fn, expected):
    return await fn() == expected


async def test_serve_runs_until_stopped(nats_client, nats_server, tmp_path):
    settings = RuntimeSettings(nats_url=nats_server.url, database_url="postgresql://unused", data_dir=tmp_path)
    stop = asyncio.Event()
    task = asyncio.create_task(main.serve(settings, stop))
    instance = new_id()
    await _publish(nats_client, terminate(instance, org=ORG))
    await wait_until(lambda: _events(nats_client, instance), timeout_s=10, message="serve handled a command")
    stop.set()
    await asyncio.wait_for(task, timeout=10)
    assert (tmp_path / "mock-provider").is_dir()


def test_settings_from_env(monkeypatch):
    assert bootstrap.orchestrator_settings_from_env().provider == "mock"
    monkeypatch.setenv("INVENTIV_PROVIDER", "bogus")
    with pytest.raises(SystemExit):
        bootstrap.orchestrator_settings_from_env()
    monkeypatch.setenv("INVENTIV_PROVIDER", "mock")
    monkeypatch.setenv("INVENTIV_MOCK_FAILURE_RATE", "0.25")
    monkeypatch.setenv("INVENTIV_ORCHESTRATOR_CONCURRENCY", "4")
    options = bootstrap.orchestrator_settings_from_env()
    assert (options.mock_failure_rate, options.concurrency) == (0.25, 4)


def test_metric_names():
    names = {m.describe()[0].name for m in (
        metrics.COMMANDS, metrics.COMMAND_SECONDS, metrics.REDELIVERIES, metrics.CONFLICTS,
        metrics.PROVIDER_CALLS, metrics.PROVIDER_SECONDS, metrics.EVENTS_APPENDED, metrics.COMPENSATIONS,
        metrics.IN_FLIGHT, metrics.CHECKS_PUBLISHED)}
    assert "inventiv_orchestrator_commands" in names  # prometheus strips _total from counter family names
    assert all(name.startswith("inventiv_orchestrator_") for name in names)
