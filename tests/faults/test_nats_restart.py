"""nats-server killed and restarted (same port, same store) in the middle of provisioning.

The provider is frozen while two provisions start (the orchestrator appended
``instance.requested`` for each and is inside its provider calls); nats-server is then
SIGKILLed and the provider let go: the servers get created while NATS is down and the appends
that would record them fail. nats-server comes back on the same port and store: the work must
finish (both ready, one server each, never a second one), and the projector, which lost its
connection too, must end up equal to a rebuild from the log.

Every stream must survive the restart: HEARTBEATS was once a memory stream, whose definition a
single nats-server forgets, and no worker could then look alive until the config was re-applied.
"""

from __future__ import annotations

from services.runtime import natsio
from tests.helpers import wait_until

from .test_crash_points import LIFECYCLE_ONCE


async def test_provisioning_finishes_across_a_nats_restart(stack):
    # One replica: with two, a delivery outliving the tests' 5 s ack wait (in_progress comes every
    # 10 s) could be handled by both at once, which the shipped 30 s ack wait does not allow.
    stack.start_orchestrator("orchestrator")
    with stack.provider_frozen():
        instances = [await stack.provision() for _ in range(2)]
        for instance in instances:
            await wait_until(lambda i=instance: _requested(stack, i), timeout_s=30, message="instance.requested")
        stack.nats_server.kill()
    # Created while NATS is down: the provider answers, the appends cannot.
    await wait_until(lambda: len(stack.live_servers()) == 2, timeout_s=30, message="servers created during the outage")
    await wait_until(lambda: len(_failed_appends(stack)) >= 2, timeout_s=60,
                     message="the appends to fail while NATS is down")
    stack.nats_server.start()
    await natsio.wait_connected(stack.nc, timeout_s=30)
    streams = {info.config.name for info in await stack.js.streams_info()}
    assert streams >= {"COMMANDS", "EVENTS", "HEARTBEATS", "USAGE"}, streams  # nobody re-applies them

    for instance in instances:
        ready = await stack.wait_status(instance, "ready", timeout_s=120)
        stack.assert_one_live_server(instance, ready)
        assert len(stack.servers_ever(instance)) == 1, stack.servers_ever(instance)

    for instance in instances:
        await stack.terminate(instance)
    for instance in instances:
        await stack.wait_status(instance, "terminated", timeout_s=60)
    assert stack.live_servers() == [] and stack.running_processes() == []
    await stack.wait_commands_settled()
    for instance in instances:
        await stack.assert_clean_history(instance, once=LIFECYCLE_ONCE)
    await stack.assert_rebuild_equals_live(timeout_s=90)


async def _requested(stack, instance: str) -> bool:
    return "instance.requested" in await stack.tags(instance)


def _failed_appends(stack) -> set[str]:
    """Provision deliveries whose handling failed (the append could not reach NATS), by command id."""
    return {entry["command_id"] for process in stack.processes for entry in process.logged("orchestrator.handler_error")
            if entry.get("command_type") == "instance.provision"}
