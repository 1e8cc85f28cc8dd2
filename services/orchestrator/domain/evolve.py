"""``evolve(state, event)``: the only place events change an instance. Status moves by the table in lifecycle.py."""

from __future__ import annotations

from dataclasses import replace
from functools import reduce
from typing import Iterable

from contracts import events as ev
from contracts.events import Event, event_tag

from . import lifecycle
from .state import EMPTY, InstanceState

IllegalTransition = lifecycle.IllegalTransition


def evolve(state: InstanceState, event: Event) -> InstanceState:
    """The state after ``event``. Raises IllegalTransition when the table forbids it."""
    if isinstance(event, ev.CommandRejected):
        # A rejection changes no status; it may be the only event of an instance that never existed.
        rejected = {**state.rejected, event.command_id: event.reason_code}
        return replace(state, rejected=rejected, version=state.version + 1)

    tag = event_tag(event)
    status = lifecycle.next_status(state.status, tag, getattr(event, "status", None))
    changes: dict = {
        "status": status,
        "handled": state.handled | {event.causation_id},
        "version": state.version + 1,
    }
    if isinstance(event, ev.InstanceRequested):
        changes.update(
            instance_id=event.instance_id,
            org_id=event.org_id,
            placement=event.placement,
            requested_at=event.occurred_at,
            startup_deadline=event.startup_deadline,
            requested_by=event.causation_id,
        )
    elif isinstance(event, ev.InstanceServerCreated):
        changes.update(
            server_id=event.provider_server_id,
            server_deleted=False,
            ip_address=event.ip_address,
            upstream_url=event.upstream_url,
            agent_url=event.agent_url,
        )
    elif isinstance(event, ev.InstanceBillingStarted):
        changes.update(billing=True)
    elif isinstance(event, ev.InstanceBillingStopped):
        changes.update(billing=False, billing_stopped=True)
    elif isinstance(event, ev.InstanceInstallPhaseReached):
        if event.generation == state.install_generation:
            changes.update(install_phase=event.phase)
    elif isinstance(event, ev.InstanceReinstallRequested):
        changes.update(
            install_generation=event.generation,
            install_phase=None,
            startup_deadline=event.startup_deadline,
            unavailable_since=None,
            unavailable_reason=None,
            failed_at=None,
            failure_reason=None,
        )
    elif isinstance(event, ev.InstanceUnavailable):
        changes.update(unavailable_since=event.occurred_at, unavailable_reason=event.reason_code)
    elif isinstance(event, ev.InstanceRecovered):
        changes.update(unavailable_since=None, unavailable_reason=None, failed_at=None, failure_reason=None)
    elif isinstance(event, ev.InstanceTerminationRequested):
        changes.update(termination_reason=event.reason_code, replaced_by=event.replaced_by)
    elif isinstance(event, ev.InstanceServerDeleted):
        if event.provider_server_id == state.server_id:
            changes.update(server_deleted=True)
    elif isinstance(event, ev.InstanceFailed):
        changes.update(failure_reason=event.reason_code, failed_at=event.occurred_at)
    return replace(state, **changes)


def fold(events: Iterable[Event], state: InstanceState = EMPTY) -> InstanceState:
    return reduce(evolve, events, state)
