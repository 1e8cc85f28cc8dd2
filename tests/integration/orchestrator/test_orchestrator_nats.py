"""The orchestrator against a real nats-server: consumer, event store, heartbeats, engine probe."""

from __future__ import annotations

from datetime import datetime, timezone

from contracts import codec, subjects
from contracts.events import CommandRejected, InstanceFailed, InstanceReady
from contracts.heartbeats import EngineLoad, Heartbeat
from contracts.ids import SYSTEM_ORG, new_id
from services.orchestrator.domain import reasons
from services.orchestrator.domain.decide import check_command_id
from tests.helpers import wait_until
from tests.unit.orchestrator.factories import MODEL, provision, terminate

ORG = "org-it"


async def heartbeat(nc, instance_id: str, status: str, models=()) -> None:
    hb = Heartbeat(status=status, model=MODEL, sent_at=datetime.now(timezone.utc),
                   engine=EngineLoad(models=tuple(models)), interval_s=0.5)
    await nc.jetstream().publish(subjects.heartbeat_subject(ORG, instance_id), codec.encode(hb), stream="HEARTBEATS")


async def test_provision_ready_terminate(orchestrator, nats_client, engine):
    instance = new_id()
    await orchestrator.publish(provision(instance, org=ORG))
    await wait_until(lambda: orchestrator.tags(ORG, instance), timeout_s=10, message="provisioned")
    await wait_until(
        lambda: _has(orchestrator, instance, "instance.billing_started"), timeout_s=10, message="billing started")
    assert (await orchestrator.tags(ORG, instance))[:3] == [
        "instance.requested", "instance.server_created", "instance.billing_started"]
    assert len(orchestrator.compute.live_servers(instance)) == 1

    await heartbeat(nats_client, instance, "starting")
    await wait_until(lambda: _has(orchestrator, instance, "instance.worker_starting"), timeout_s=10,
                     message="worker_starting")

    # Ready says the worker, but the engine does not list the model yet: not ready.
    await heartbeat(nats_client, instance, "ready", [MODEL])
    engine.models = [MODEL]
    ready = await wait_until(lambda: _find(orchestrator, instance, InstanceReady), timeout_s=10, message="ready")
    assert ready.upstream_url == engine.url and ready.model_name == MODEL

    await orchestrator.publish(terminate(instance, org=ORG))
    await wait_until(lambda: _has(orchestrator, instance, "instance.terminated"), timeout_s=10, message="terminated")
    assert (await orchestrator.tags(ORG, instance))[-4:] == [
        "instance.termination_requested", "instance.server_deleted", "instance.billing_stopped",
        "instance.terminated"]
    assert orchestrator.compute.live_servers(instance) == []
    await _all_acked(nats_client)


async def test_the_same_command_twice_has_one_effect(orchestrator, nats_client):
    instance = new_id()
    command = provision(instance, org=ORG)
    await orchestrator.publish(command)
    await orchestrator.publish(command)  # same Nats-Msg-Id: dropped by the stream
    await orchestrator.publish(command, msg_id=new_id())  # a different Msg-Id: stored, handled idempotently
    info = await nats_client.jetstream().stream_info("COMMANDS")
    assert info.state.messages == 2
    await wait_until(lambda: _has(orchestrator, instance, "instance.billing_started"), timeout_s=10)
    await _terminate(orchestrator, instance)
    await _all_acked(nats_client)
    tags = await orchestrator.tags(ORG, instance)
    assert tags.count("instance.requested") == 1 and tags.count("instance.server_created") == 1
    assert orchestrator.compute.calls["create_server"] == 1
    assert len(orchestrator.compute.servers) == 1


async def test_an_undecodable_command_is_rejected_and_the_consumer_goes_on(orchestrator, nats_client):
    js = nats_client.jetstream()
    await js.publish("cmd.instance.provision", b'{"type": "instance.provision", "nonsense": tru',
                     stream="COMMANDS", headers={"Nats-Msg-Id": "bad-command-1"})
    await js.publish("cmd.instance.provision", b"\x00\xff", stream="COMMANDS",
                     headers={"Nats-Msg-Id": "bad id with spaces"})
    instance = new_id()
    await orchestrator.publish(provision(instance, org=ORG))
    await wait_until(lambda: _has(orchestrator, instance, "instance.billing_started"), timeout_s=10)

    stored = await orchestrator.store.load(f"evt.{SYSTEM_ORG}.command.*.rejected")
    assert len(stored) == 2
    first = stored[0]
    assert first.subject == f"evt.{SYSTEM_ORG}.command.bad-command-1.rejected"
    assert isinstance(first.event, CommandRejected) and first.event.reason_code == reasons.MALFORMED_COMMAND
    assert first.event.command_type == "instance.provision"
    assert stored[1].event.command_id != "bad id with spaces"  # unsafe ids never reach a subject
    await _terminate(orchestrator, instance)
    await _all_acked(nats_client)


async def test_unknown_instance_is_rejected_on_its_subject(orchestrator, nats_client):
    instance = new_id()
    command = terminate(instance, org=ORG)
    await orchestrator.publish(command)
    rejected = await wait_until(lambda: _find(orchestrator, instance, CommandRejected), timeout_s=10)
    assert rejected.reason_code == reasons.UNKNOWN_INSTANCE and rejected.command_id == command.id
    await _all_acked(nats_client)


async def test_startup_timeout_fails_the_instance(orchestrator, nats_client):
    instance = new_id()
    await orchestrator.publish(provision(instance, org=ORG, timeout_s=1))
    failed = await wait_until(lambda: _find(orchestrator, instance, InstanceFailed), timeout_s=10,
                              message="startup timeout")
    assert (failed.status, failed.reason_code) == ("startup_failed", reasons.STARTUP_TIMEOUT)
    # The timer stopped with the failure: the check command was acked.
    await _all_acked(nats_client)
    msg = await nats_client.jetstream().get_last_msg("COMMANDS", "cmd.instance.check")
    assert codec.decode_command(msg.data).id == check_command_id(instance)


# --- helpers ------------------------------------------------------------------------------


async def _terminate(orchestrator, instance) -> None:
    await orchestrator.publish(terminate(instance, org=ORG))
    await wait_until(lambda: _has(orchestrator, instance, "instance.terminated"), timeout_s=10, message="terminated")


async def _has(orchestrator, instance, tag) -> bool:
    return tag in await orchestrator.tags(ORG, instance)


async def _find(orchestrator, instance, cls):
    for event in await orchestrator.events(ORG, instance):
        if isinstance(event, cls):
            return event
    return None


async def _all_acked(nc) -> None:
    js = nc.jetstream()

    async def settled():
        info = await js.consumer_info("COMMANDS", "orchestrator")
        return info.num_ack_pending == 0 and info.num_pending == 0

    await wait_until(settled, timeout_s=10, message="every command acked")
