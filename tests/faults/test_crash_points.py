"""SIGKILL an orchestrator at each dangerous point of provisioning; a clean replica finishes the work.

The doomed replica runs with ``INVENTIV_FAILPOINTS=<point>`` and kills itself the first time it
gets there (services/orchestrator/failpoints.py). Before starting the survivor, the test checks
the crash happened where it should (what the log and the provider's ledger hold). Then the
instance must reach ``ready`` with exactly one server, the provider must never have created a
second one (not even briefly), and after terminate no server and no process may remain.
"""

from __future__ import annotations

import signal

import pytest

from tests.helpers import wait_until

LIFECYCLE_ONCE = (
    "instance.requested", "instance.server_created", "instance.billing_started", "instance.ready",
    "instance.termination_requested", "instance.server_deleted", "instance.billing_stopped", "instance.terminated",
)


async def _where_it_died(stack, point: str, instance: str) -> None:
    state = await stack.state(instance)
    created = stack.servers_ever(instance)
    if point == "before_provider_create":
        assert (state.status, created) == ("provisioning", []), (state.status, created)
    elif point == "after_provider_create":
        # The provider made the server (its process runs on), our log does not know it.
        assert state.status == "provisioning" and state.server_id is None, state
        assert len(created) == 1 and stack.compute.process_alive(created[0]["server_id"]), created
    else:
        # Everything appended, the command still unacknowledged.
        assert state.server_id is not None and [s["server_id"] for s in created] == [state.server_id], created
        info = await stack.js.consumer_info("COMMANDS", "orchestrator")
        assert info.num_ack_pending >= 1, info


# The doomed replica publishes no fleet ticks: it must die on the provisioning, not while
# acknowledging the reconcile or catalog sync every replica publishes at start.
NO_TICKS = {"INVENTIV_RECONCILE_INTERVAL_S": "0", "INVENTIV_CLEANUP_INTERVAL_S": "0",
            "INVENTIV_CATALOG_SYNC_INTERVAL_S": "0"}


@pytest.mark.parametrize("point", ["before_provider_create", "after_provider_create", "before_ack"])
async def test_a_replica_killed_at_a_crash_point_leaves_exactly_one_server(stack, point):
    doomed = stack.start_orchestrator("orchestrator-doomed", failpoints=point, **NO_TICKS)
    instance = await stack.provision()
    await wait_until(lambda: doomed.exit_code() is not None, timeout_s=60, interval_s=0.05,
                     message=f"the {point} failpoint to kill the orchestrator")
    assert doomed.exit_code() == -signal.SIGKILL, doomed.tail()
    await _where_it_died(stack, point, instance)

    stack.start_orchestrator("orchestrator-survivor")
    ready = await stack.wait_status(instance, "ready", timeout_s=90)
    stack.assert_one_live_server(instance, ready)
    assert len(stack.servers_ever(instance)) == 1, stack.servers_ever(instance)

    await stack.terminate(instance)
    await stack.wait_status(instance, "terminated")
    assert stack.live_servers(instance) == [] and stack.running_processes(instance) == []
    await stack.wait_commands_settled()
    await stack.assert_clean_history(instance, once=LIFECYCLE_ONCE)
    await stack.assert_rebuild_equals_live()
