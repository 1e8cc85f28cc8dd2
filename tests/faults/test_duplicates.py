"""The same command published several times, with the same and with different ``Nats-Msg-Id``.

Same id: the COMMANDS stream keeps one (its duplicate window). Different ids: both copies are
stored and delivered, here to two replicas that may handle them at the same moment. Either
way one effect: one ``instance.requested``, one recorded server, one live server at the end.
A copy delivered after the instance is ready, and copies of the terminate, change nothing.
"""

from __future__ import annotations

from contracts.ids import new_id
from tests.helpers import wait_until

from .test_crash_points import LIFECYCLE_ONCE


async def test_a_command_published_twice_has_one_effect(stack):
    stack.start_orchestrator("orchestrator-a")
    stack.start_orchestrator("orchestrator-b")
    before = await _stored_commands(stack)
    provision = stack.provision_command()
    instance = provision.instance_id

    first = await stack.publish(provision)
    again = await stack.publish(provision)
    assert (bool(first.duplicate), again.duplicate, again.seq) == (False, True, first.seq)  # the stream kept one
    other = await stack.publish(provision, msg_id=new_id())
    assert not other.duplicate and other.seq != first.seq  # stored: the orchestrator must absorb it
    assert await _stored_commands(stack) == before + 2

    ready = await stack.wait_status(instance, "ready", timeout_s=90)
    stack.assert_one_live_server(instance, ready)
    await stack.wait_commands_settled(timers=False)
    history_at_ready = await stack.tags(instance)

    # A late copy (a client retrying long after, outside any dedupe): no new event, no server.
    await stack.publish(provision, msg_id=new_id())
    await stack.wait_commands_settled(timers=False)
    assert await stack.tags(instance) == history_at_ready
    stack.assert_one_live_server(instance, ready)

    terminate = stack.terminate_command(instance)
    await stack.publish(terminate)
    await stack.publish(terminate)
    await stack.publish(terminate, msg_id=new_id())
    await stack.wait_status(instance, "terminated")
    await stack.wait_commands_settled()
    await stack.publish(provision, msg_id=new_id())  # and once more after the end: no resurrection
    await stack.wait_commands_settled()
    assert (await stack.state(instance)).status == "terminated"
    assert stack.live_servers(instance) == [] and stack.running_processes(instance) == []

    await stack.assert_clean_history(instance, once=LIFECYCLE_ONCE)
    # Two copies racing on two replicas may each create a server before one of them records
    # it (creation is looked up by tag, not locked across replicas); the loser deletes its own.
    # What must never happen is a second server *recorded*, or one left behind (checked above).
    assert 1 <= len(stack.servers_ever(instance)) <= 2, stack.servers_ever(instance)
    await stack.assert_rebuild_equals_live()


async def _stored_commands(stack) -> int:
    return (await stack.js.stream_info("COMMANDS")).state.messages


async def test_two_provisions_for_one_instance_id_are_one_instance(stack):
    """Two *different* commands (two ids) for the same instance: the second is rejected, not applied."""
    stack.start_orchestrator("orchestrator-a")
    first = stack.provision_command()
    second = stack.provision_command(first.instance_id)
    await stack.publish(first)
    await stack.publish(second)
    ready = await stack.wait_status(first.instance_id, "ready", timeout_s=90)
    stack.assert_one_live_server(first.instance_id, ready)
    await wait_until(lambda: _rejected(stack, first.instance_id, second.id), timeout_s=30,
                     message="the second provision rejected")
    await stack.terminate(first.instance_id)
    await stack.wait_status(first.instance_id, "terminated")
    assert stack.live_servers() == [] and stack.running_processes() == []
    await stack.wait_commands_settled()
    await stack.assert_rebuild_equals_live()


async def _rejected(stack, instance: str, command_id: str) -> bool:
    return command_id in (await stack.state(instance)).rejected
