"""The instance lifecycle as data: which event moves an instance from which statuses to which.

Read by ``evolve`` (orchestrator), by the projector (status, history, progress) and by the
tests. Nothing else may decide what status an event leads to.
"""

from __future__ import annotations

from typing import Final

PROVISIONING: Final = "provisioning"
BOOTING: Final = "booting"
INSTALLING: Final = "installing"
STARTING: Final = "starting"
READY: Final = "ready"
DRAINING: Final = "draining"
UNAVAILABLE: Final = "unavailable"
PROVISIONING_FAILED: Final = "provisioning_failed"
STARTUP_FAILED: Final = "startup_failed"
FAILED: Final = "failed"
TERMINATING: Final = "terminating"
TERMINATED: Final = "terminated"
ARCHIVED: Final = "archived"

STATUSES: Final = (
    PROVISIONING, BOOTING, INSTALLING, STARTING, READY, DRAINING, UNAVAILABLE,
    PROVISIONING_FAILED, STARTUP_FAILED, FAILED, TERMINATING, TERMINATED, ARCHIVED,
)

BRINGING_UP: Final = frozenset({PROVISIONING, BOOTING, INSTALLING, STARTING})
SERVING: Final = frozenset({READY, DRAINING, UNAVAILABLE})
FAILED_STATUSES: Final = frozenset({PROVISIONING_FAILED, STARTUP_FAILED, FAILED})
# Statuses in which a provider server may exist and cost money.
LIVE: Final = BRINGING_UP | SERVING | FAILED_STATUSES | {TERMINATING}
TERMINAL: Final = frozenset({TERMINATED, ARCHIVED})

# Sentinel for "the status does not change" and for "no status yet".
SAME: Final = "<same>"
NONE: Final = "<none>"

# event tag -> (statuses it may happen in, status after). Missing tag = not a lifecycle event.
TRANSITIONS: Final[dict[str, tuple[frozenset[str], str]]] = {
    "instance.requested": (frozenset({NONE}), PROVISIONING),
    "instance.server_created": (frozenset({PROVISIONING}), BOOTING),
    "instance.billing_started": (frozenset(LIVE), SAME),
    "instance.billing_stopped": (frozenset(LIVE | TERMINAL), SAME),
    "instance.install_phase_reached": (frozenset({BOOTING, INSTALLING}), INSTALLING),
    "instance.worker_starting": (frozenset({BOOTING, INSTALLING}), STARTING),
    "instance.ready": (frozenset({BOOTING, INSTALLING, STARTING}), READY),
    "instance.unavailable": (frozenset({READY, DRAINING}), UNAVAILABLE),
    # From startup_failed too: a worker that comes up after its deadline is used, not wasted.
    "instance.recovered": (frozenset({UNAVAILABLE, STARTUP_FAILED}), READY),
    "instance.draining": (frozenset({READY, UNAVAILABLE}), DRAINING),
    # Install again on the same server (manual, or after too long unavailable).
    "instance.reinstall_requested": (frozenset({BOOTING, INSTALLING, STARTING} | SERVING | {STARTUP_FAILED, FAILED}),
                                     INSTALLING),
    "instance.termination_requested": (frozenset(LIVE - {TERMINATING}), TERMINATING),
    "instance.server_deleted": (frozenset({TERMINATING}), SAME),
    "instance.terminated": (frozenset({TERMINATING}), TERMINATED),
    "instance.archived": (frozenset({TERMINATED}), ARCHIVED),
    # instance.failed: the target status is in the event; see FAILURE_FROM.
    "command.rejected": (frozenset(set(STATUSES) | {NONE}), SAME),
}

# instance.failed carries its target status; each target may only be reached from these.
FAILURE_FROM: Final[dict[str, frozenset[str]]] = {
    PROVISIONING_FAILED: frozenset({PROVISIONING}),
    STARTUP_FAILED: frozenset({BOOTING, INSTALLING, STARTING}),
    FAILED: frozenset(BRINGING_UP | SERVING),
}


class IllegalTransition(ValueError):
    pass


def next_status(current: str | None, tag: str, failure_status: str | None = None) -> str | None:
    """Status after an event with ``tag`` happens in ``current`` (None = no instance yet).

    Only ``command.rejected`` may leave None as None (a command about an instance that never existed).

    Raises IllegalTransition when the table forbids it.
    """
    here = NONE if current is None else current
    if tag == "instance.failed":
        if failure_status not in FAILURE_FROM or here not in FAILURE_FROM[failure_status]:
            raise IllegalTransition(f"instance.failed({failure_status}) not allowed in {here}")
        return failure_status
    try:
        allowed, target = TRANSITIONS[tag]
    except KeyError:
        raise IllegalTransition(f"{tag} is not a lifecycle event") from None
    if here not in allowed:
        raise IllegalTransition(f"{tag} not allowed in {here}")
    if target == SAME:
        return current
    return target


# Progress shown to people: a projection of status and the last install phase, never stored state.
_INSTALL_PHASE_PROGRESS: Final = {"ssh_ready": 45, "installing": 50, "engine_starting": 60, "agent_started": 70}
_STATUS_PROGRESS: Final = {
    PROVISIONING: 5, BOOTING: 30, INSTALLING: 45, STARTING: 80, READY: 100, DRAINING: 100, UNAVAILABLE: 100,
}


def progress_percent(status: str, install_phase: str | None = None, server_created: bool = False) -> int:
    if status == PROVISIONING and server_created:
        return 20
    if status == INSTALLING and install_phase in _INSTALL_PHASE_PROGRESS:
        return _INSTALL_PHASE_PROGRESS[install_phase]
    return _STATUS_PROGRESS.get(status, 0)
