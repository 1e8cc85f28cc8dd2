"""When an instance's check timer fires next, as a function of where the instance is.

Each instance with a server has one durable CheckInstance timer (a COMMANDS message nak'ed
with a delay). It keeps firing while there is something to watch and stops (is acked) only
when the instance needs nothing more from the orchestrator:

- bringing up: the check backoff, never past the startup deadline;
- ready, draining, unavailable: the heartbeat watch period;
- startup_failed / failed with a server: the watch period, until the server is released;
- terminating: the provider backoff, until the deletion is confirmed;
- terminated, archived, provisioning_failed, failed without a server: no timer.
"""

from __future__ import annotations

from datetime import timedelta

from . import lifecycle as lc
from .decision import Policy, RetryLater, retry_watch
from .state import InstanceState


def next_timer(state: InstanceState, policy: Policy) -> RetryLater | None:
    if state.status in (lc.BOOTING, lc.INSTALLING, lc.STARTING):
        return RetryLater("check", not_after=state.startup_deadline)
    if state.status == lc.PROVISIONING:
        return RetryLater("check", not_after=state.startup_deadline)
    if state.status in lc.SERVING:
        return retry_watch(policy)
    if state.status in (lc.STARTUP_FAILED, lc.FAILED) and state.has_live_server:
        release_at = release_time(state, policy)
        return retry_watch(policy, not_after=release_at)
    if state.status == lc.TERMINATING:
        return RetryLater("provider")
    return None


def release_time(state: InstanceState, policy: Policy):
    """When a failed instance's server is terminated (None: it failed before this field existed)."""
    if state.failed_at is None:
        return None
    return state.failed_at + timedelta(seconds=policy.failed_server_grace_s)
