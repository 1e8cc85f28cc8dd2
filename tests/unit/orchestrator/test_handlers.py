"""The handlers over in-memory adapters: the whole loop, crashes, races, retries."""

from __future__ import annotations

import asyncio
import pytest

from contracts import events as ev
from services.orchestrator import handlers
from services.orchestrator.adapters.memory import InjectedCrash
from services.orchestrator.domain import lifecycle as lc
from services.orchestrator.domain import reasons
from services.orchestrator.domain.decide import check_command_id, decide
from services.orchestrator.domain.state import EMPTY
from services.orchestrator.domain.evolve import fold
from services.orchestrator.handlers import Done, Rejected, Retry
from services.orchestrator.ports import Permanent, RateLimited, Transient

from .factories import ORG, memory_ports, provision, terminate

INSTANCE = "i-1"
AGGREGATE = f"evt.{ORG}.instance.{INSTANCE}.*"


def tags(ports, aggregate=AGGREGATE):
    return [ev.event_tag(e) for e in ports.store.events(aggregate)]


def state(ports, aggregate=AGGREGATE):
    return fold(ports.store.events(aggregate))


async def test_provision_check_ready_terminate():
    ports = memory_ports()
    assert await handlers.handle(provision(INSTANCE), ports) == Done(3)
    assert tags(ports) == ["instance.requested", "instance.server_created", "instance.billing_started"]
    [timer] = ports.commands.published
    assert timer.id == check_command_id(INSTANCE) and timer.instance_id == INSTANCE

    outcome = await handlers.handle(timer, ports, attempt=1)
    assert isinstance(outcome, Retry) and 0 < outcome.delay_s <= 0.5  # no heartbeat yet

    now = ports.clock.now()
    ports.heartbeats.set(ORG, INSTANCE, "starting", now)
    assert isinstance(await handlers.handle(timer, ports, attempt=2), Retry)
    assert state(ports).status == lc.STARTING

    ports.heartbeats.set(ORG, INSTANCE, "ready", now)
    assert await handlers.handle(timer, ports, attempt=3) == Retry(4.0, "watch")  # ready: now a heartbeat watch
    ready = ports.store.events(AGGREGATE)[-1]
    assert isinstance(ready, ev.InstanceReady) and ready.upstream_url == f"http://engine-{INSTANCE}"
    assert await handlers.handle(timer, ports, attempt=4) == Retry(4.0, "watch")
    assert ports.store.events(AGGREGATE)[-1] == ready  # a fresh heartbeat changes nothing

    assert await handlers.handle(terminate(INSTANCE), ports) == Done(4)
    assert tags(ports)[-4:] == ["instance.termination_requested", "instance.server_deleted",
                                "instance.billing_stopped", "instance.terminated"]
    assert ports.compute.live_servers() == []


async def test_the_same_command_twice_has_one_effect():
    ports = memory_ports()
    command = provision(INSTANCE)
    assert await handlers.handle(command, ports) == Done(3)
    assert await handlers.handle(command, ports) == Done(0)
    assert ports.compute.calls["create_server"] == 1
    assert tags(ports).count("instance.requested") == 1


async def test_an_ambiguous_create_never_makes_a_second_server():
    ports = memory_ports()
    ports.compute.ambiguous_creates = 1
    command = provision(INSTANCE)
    outcome = await handlers.handle(command, ports, attempt=1)
    assert isinstance(outcome, Retry) and outcome.reason == "provider"
    assert await handlers.handle(command, ports, attempt=2) == Done(2)
    assert ports.compute.calls["create_server"] == 1 and len(ports.compute.live_servers(INSTANCE)) == 1


async def test_a_crash_between_create_and_append_is_resumed_by_tag():
    ports = memory_ports()
    ports.store.crash_before_tags.append("instance.server_created")
    command = provision(INSTANCE)
    with pytest.raises(InjectedCrash):
        await handlers.handle(command, ports)
    assert tags(ports) == ["instance.requested"] and len(ports.compute.live_servers()) == 1
    assert await handlers.handle(command, ports, attempt=2) == Done(2)  # the redelivery
    assert ports.compute.calls["create_server"] == 1
    assert state(ports).server_id == ports.compute.live_servers()[0].server_id


async def test_provider_errors_are_retried_with_backoff_then_fail_when_permanent():
    ports = memory_ports()
    ports.compute.fail_next("create_server", RateLimited("429", retry_after_s=12.0))
    command = provision(INSTANCE)
    outcome = await handlers.handle(command, ports, attempt=1)
    assert isinstance(outcome, Retry) and outcome.delay_s >= 12.0
    ports.compute.fail_next("find_servers_by_tag", Transient("503"))
    assert isinstance(await handlers.handle(command, ports, attempt=2), Retry)
    ports.compute.fail_next("create_server", Permanent("unknown commercial type"))
    assert await handlers.handle(command, ports, attempt=3) == Done(1)
    end = state(ports)
    assert (end.status, end.failure_reason) == (lc.PROVISIONING_FAILED, reasons.PROVIDER_CREATE_FAILED)


async def test_unknown_instance_is_rejected_once_on_its_subject():
    ports = memory_ports()
    command = terminate(INSTANCE)
    outcome = await handlers.handle(command, ports)
    assert outcome == Rejected(reasons.UNKNOWN_INSTANCE, f"no instance {INSTANCE}")
    assert await handlers.handle(command, ports) == Rejected(reasons.UNKNOWN_INSTANCE, "already rejected")
    [rejected] = ports.store.events(AGGREGATE)
    assert isinstance(rejected, ev.CommandRejected) and rejected.command_id == command.id


async def test_check_times_out_at_the_deadline():
    ports = memory_ports()
    await handlers.handle(provision(INSTANCE, timeout_s=60), ports)
    timer = ports.commands.published[0]
    outcome = await handlers.handle(timer, ports, attempt=50)
    assert isinstance(outcome, Retry) and outcome.delay_s <= 15.0
    ports.clock.advance(55)
    outcome = await handlers.handle(timer, ports, attempt=51)
    assert isinstance(outcome, Retry) and outcome.delay_s <= 5.05  # wakes up for the deadline
    ports.clock.advance(6)
    # Failed, but the server is kept for a grace period (a late worker may still come up): keep watching.
    assert await handlers.handle(timer, ports, attempt=52) == Retry(4.0, "watch")
    end = state(ports)
    assert (end.status, end.failure_reason) == (lc.STARTUP_FAILED, reasons.STARTUP_TIMEOUT)


async def test_giving_up_provisioning_fails_the_instance():
    ports = memory_ports()
    ports.compute.fail_next("find_servers_by_tag", Transient("down"))
    command = provision(INSTANCE)
    assert isinstance(await handlers.handle(command, ports), Retry)
    outcome = await handlers.give_up(command, ports, attempts=30)
    assert isinstance(outcome, Rejected) and outcome.reason_code == reasons.MAX_ATTEMPTS_EXCEEDED
    assert state(ports).status == lc.PROVISIONING_FAILED


async def test_terminate_retries_until_the_provider_confirms():
    ports = memory_ports()
    await handlers.handle(provision(INSTANCE), ports)
    ports.compute.fail_next("delete_server", Transient("500"))
    stop = terminate(INSTANCE)
    assert isinstance(await handlers.handle(stop, ports, attempt=1), Retry)
    assert state(ports).status == lc.TERMINATING and len(ports.compute.live_servers()) == 1
    assert await handlers.handle(stop, ports, attempt=2) == Done(3)
    assert state(ports).status == lc.TERMINATED and ports.compute.live_servers() == []


def yielding(times: int):
    async def offload(fn, *args):
        for _ in range(times):
            await asyncio.sleep(0)
        return fn(*args)

    return offload


@pytest.mark.parametrize("yields", range(0, 8))
@pytest.mark.parametrize("terminate_first", [False, True])
async def test_provision_racing_terminate_leaves_no_server(yields, terminate_first):
    ports = memory_ports(offload=yielding(yields))
    create = provision(INSTANCE)
    # The instance exists (requested) so terminate is not rejected; the create is still to come.
    await ports.store.append(decide(EMPTY, create, ports.clock.now()).events[0], expected_last_seq=0)
    jobs = [handlers.handle(create, ports), handlers.handle(terminate(INSTANCE), ports)]
    if terminate_first:
        jobs.reverse()
    outcomes = await asyncio.gather(*jobs)
    assert all(isinstance(o, (Done, Retry)) for o in outcomes), outcomes
    for _ in range(5):  # redeliver whatever asked to retry
        if state(ports).status == lc.TERMINATED:
            break
        await handlers.handle(terminate(INSTANCE, command_id="again"), ports)
    assert state(ports).status == lc.TERMINATED
    assert ports.compute.live_servers() == []
    assert not state(ports).billing
