"""A replica paused (SIGSTOP) in the middle of a provider call, past the ack wait, then resumed.

The test holds the mock provider's ledger lock, so the first replica's provider call blocks
right after it appended ``instance.requested``; it is then paused. The command's ack wait
expires, a second replica gets the redelivery and brings the instance to ``ready``. When the
zombie resumes, its provider call completes on a world that moved on: it must not create a
second server, and nothing it does may reach the log as a duplicate or illegal event.
"""

from __future__ import annotations

from tests.helpers import wait_until

from .test_crash_points import LIFECYCLE_ONCE


async def test_a_zombie_replica_resumed_after_the_ack_wait_has_no_effect(stack):
    # Debug level: the zombie then logs the end of each delivery (orchestrator.command_handled).
    zombie = stack.start_orchestrator("orchestrator-zombie", INVENTIV_LOG_LEVEL="debug")
    with stack.provider_frozen():
        instance = await stack.provision()
        await wait_until(lambda: _requested(stack, instance), timeout_s=30, message="instance.requested")
        zombie.pause()  # inside (or right before) its provider call, which cannot get past our lock
        await wait_until(zombie.is_paused, timeout_s=5, message="the zombie to stop")

    healthy = stack.start_orchestrator("orchestrator-healthy")
    ready = await stack.wait_status(instance, "ready", timeout_s=90)
    # The healthy replica created the server on the *redelivery*, once the zombie's ack wait expired.
    [created] = healthy.logged("mock.server_created")
    assert (created["command_type"], created["delivery"]) == ("instance.provision", 2), created
    history_before = await stack.tags(instance)

    zombie.resume()
    # The zombie finishes its stale delivery, one of two ways. Paused inside the provider call:
    # the call returns the healthy replica's server (found by tag, not created again), the zombie
    # re-reads the log, sees the instance moved on and settles. Paused just before: a NATS reply
    # it was waiting for (its own append's PubAck) is out of time once it resumes, so the
    # delivery ends in an error and a nak, which the stream ignores (the message is acked).
    handled = await wait_until(lambda: _stale_delivery_handled(zombie), timeout_s=30,
                               message="the zombie to finish its stale delivery")
    if handled["outcome"] == "done":
        assert zombie.logged("orchestrator.server_adopted"), zombie.tail()
    else:
        assert handled["outcome"] == "error", handled
        [error] = [e for e in zombie.logged("orchestrator.handler_error") if e["command_id"] == handled["command_id"]]
        assert "TimeoutError" in error["error"], error
    await stack.wait_commands_settled(timers=False)
    assert await stack.tags(instance) == history_before, "the zombie changed the log"
    stack.assert_one_live_server(instance, ready)
    assert len(stack.servers_ever(instance)) == 1, stack.servers_ever(instance)

    await stack.terminate(instance)
    await stack.wait_status(instance, "terminated")
    assert stack.live_servers(instance) == [] and stack.running_processes(instance) == []
    await stack.wait_commands_settled()
    await stack.assert_clean_history(instance, once=LIFECYCLE_ONCE)
    await stack.assert_rebuild_equals_live()


async def _requested(stack, instance: str) -> bool:
    return "instance.requested" in await stack.tags(instance)


def _stale_delivery_handled(zombie) -> dict | None:
    for entry in zombie.log_events():
        if (entry.get("event"), entry.get("command_type"), entry.get("delivery")) == (
                "orchestrator.command_handled", "instance.provision", 1):
            return entry
    return None
