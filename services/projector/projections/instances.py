"""Instance events -> ``instances`` (one row each), ``instance_state_history``, ``action_logs``.

Statuses come from the lifecycle transition table (``next_status``) and progress from
``progress_percent``: this module never decides what an event means for the lifecycle. An
event the table forbids in the row's current status leaves the row alone and is logged as a
failed action.

Pure: the only state it reads is the current row, passed in by the caller.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from contracts.events import (
    CommandRejected,
    InstanceArchived,
    InstanceBillingStarted,
    InstanceBillingStopped,
    InstanceEvent,
    InstanceFailed,
    InstanceInstallPhaseReached,
    InstanceReady,
    InstanceRecovered,
    InstanceReinstallRequested,
    InstanceRequested,
    InstanceServerCreated,
    InstanceTerminated,
    InstanceTerminationRequested,
    InstanceUnavailable,
    event_tag,
)
from services.orchestrator.domain import lifecycle

from ..rowops import InsertIfAbsent, RowOp, Upsert
from .action_log import (
    FAILURE_ACTION_TYPES,
    INSTALL_PHASE_ACTION_TYPES,
    INVALID_EVENT,
    INVALID_TRANSITION,
    EventMeta,
    action_log_row,
    clip,
    utc,
    uuid_or_none,
)

INSTANCE_COLUMNS: tuple[str, ...] = (
    "id", "org_id", "status", "progress_percent",
    "provider_code", "region_code", "zone_code", "zone_id", "instance_type_code", "instance_type_id",
    "gpu_count", "model_id", "model_name", "hourly_price_eur",
    "provider_server_id", "ip_address", "upstream_url", "agent_url", "install_phase",
    "error_code", "error_message", "deletion_reason", "is_archived", "startup_deadline",
    "created_at", "boot_started_at", "ready_at", "terminated_at", "failed_at",
    "billing_started_at", "billing_stopped_at", "updated_at", "last_event_seq",
)  # fmt: skip

# numeric(10, 4) and integer bounds: an event outside them is refused here, not by Postgres.
_MAX_PRICE = Decimal("999999.9999")
_MAX_INT = 2**31 - 1

Row = dict[str, Any]


class InvalidEvent(ValueError):
    pass


def _upsert(row: Row) -> Upsert:
    return Upsert("instances", ("id",), row, insert_only=frozenset({"created_at"}))


def _check_price(value: Decimal) -> Decimal:
    try:
        if not value.is_finite() or abs(value) > _MAX_PRICE:
            raise InvalidEvent(f"hourly price out of range: {value}")
        return value.quantize(Decimal("0.0001"))
    except InvalidOperation as exc:
        raise InvalidEvent(f"bad hourly price: {value}") from exc


def _new_row(event: InstanceRequested, instance_id: str, org_id: str) -> Row:
    p = event.placement
    placement_ids = {name: uuid_or_none(getattr(p, name)) for name in ("zone_id", "instance_type_id", "model_id")}
    for name, value in placement_ids.items():
        if value is None:
            raise InvalidEvent(f"placement.{name} is not a UUID")
    if not 0 <= p.gpu_count <= _MAX_INT:
        raise InvalidEvent("placement.gpu_count out of range")
    at = utc(event.occurred_at)
    return {
        "id": instance_id,
        "org_id": org_id,
        "status": None,
        "progress_percent": 0,
        "provider_code": p.provider_code,
        "region_code": p.region_code,
        "zone_code": p.zone_code,
        "zone_id": placement_ids["zone_id"],
        "instance_type_code": p.instance_type_code,
        "instance_type_id": placement_ids["instance_type_id"],
        "gpu_count": p.gpu_count,
        "model_id": placement_ids["model_id"],
        "model_name": p.model_name,
        "hourly_price_eur": _check_price(p.hourly_price_eur),
        "provider_server_id": None,
        "ip_address": None,
        "upstream_url": None,
        "agent_url": None,
        "install_phase": None,
        "error_code": None,
        "error_message": None,
        "deletion_reason": None,
        "is_archived": False,
        "startup_deadline": utc(event.startup_deadline),
        "created_at": at,
        "boot_started_at": None,
        "ready_at": None,
        "terminated_at": None,
        "failed_at": None,
        "billing_started_at": None,
        "billing_stopped_at": None,
        "updated_at": at,
        "last_event_seq": 0,
    }


def _evolve_fields(row: Row, event: InstanceEvent, after: str) -> None:
    """Columns other than status/progress that this event sets."""
    at = utc(event.occurred_at)
    if isinstance(event, InstanceServerCreated):
        row["provider_server_id"] = event.provider_server_id
        for name in ("ip_address", "upstream_url", "agent_url"):
            if getattr(event, name) is not None:
                row[name] = getattr(event, name)
        if row["boot_started_at"] is None:
            row["boot_started_at"] = at
    elif isinstance(event, InstanceBillingStarted):
        row["hourly_price_eur"] = _check_price(event.hourly_price_eur)
        if row["billing_started_at"] is None:
            row["billing_started_at"] = at
    elif isinstance(event, InstanceBillingStopped):
        if row["billing_stopped_at"] is None:
            row["billing_stopped_at"] = at
    elif isinstance(event, InstanceInstallPhaseReached):
        row["install_phase"] = clip(event.phase, 64)
    elif isinstance(event, InstanceReinstallRequested):
        # A fresh bring-up: the previous install's phase and failure no longer describe the instance.
        row["install_phase"] = None
        row["startup_deadline"] = utc(event.startup_deadline)
        row["error_code"] = row["error_message"] = row["failed_at"] = None
    elif isinstance(event, InstanceRecovered):
        row["error_code"] = row["error_message"] = row["failed_at"] = None
    elif isinstance(event, InstanceReady):
        row["upstream_url"] = event.upstream_url
        row["ready_at"] = at
    elif isinstance(event, InstanceTerminationRequested):
        row["deletion_reason"] = row["deletion_reason"] or event.reason_code
    elif isinstance(event, InstanceTerminated):
        row["deletion_reason"] = row["deletion_reason"] or event.reason_code
        row["terminated_at"] = at
    elif isinstance(event, InstanceFailed):
        row["error_code"] = event.reason_code
        row["error_message"] = clip(event.message)
        row["failed_at"] = at
    elif isinstance(event, InstanceArchived):
        row["is_archived"] = True


def _action_for(event: InstanceEvent) -> tuple[str | None, str, str | None, str | None]:
    """(action type override, status, error code, error message) of a legal instance event."""
    if isinstance(event, InstanceFailed):
        return FAILURE_ACTION_TYPES.get(event.status), "failed", event.reason_code, event.message or None
    if isinstance(event, InstanceUnavailable):
        return None, "failed", event.reason_code, event.message or None
    if isinstance(event, InstanceInstallPhaseReached):
        return INSTALL_PHASE_ACTION_TYPES.get(event.phase), "success", None, None
    return None, "success", None, None


def _reason(event: InstanceEvent) -> str:
    return getattr(event, "reason_code", None) or event_tag(event)


def project_instance_event(event: InstanceEvent, meta: EventMeta, current: Row | None) -> list[RowOp]:
    tag = event_tag(event)
    before = current["status"] if current is not None else None
    instance_id, org_id = uuid_or_none(event.instance_id), uuid_or_none(event.org_id)
    if instance_id is None or org_id is None:
        return [_refused(event, meta, before, INVALID_EVENT, "instance id and org id must be UUIDs")]
    if current is not None and current["last_event_seq"] >= meta.seq:
        # Stream order means this event was applied before the row's newest one (a redelivery or
        # a replay): its rows exist already, and judging it against today's status would invent
        # history (an old `archived` is legal again once the instance is terminated).
        return []
    if current is not None and current["org_id"] != org_id:
        return [_refused(event, meta, before, INVALID_EVENT, "event org does not own this instance")]
    if tag not in lifecycle.TRANSITIONS and not isinstance(event, InstanceFailed):
        # An instance event this projector does not know yet: logged, row untouched.
        return [action_log_row(event, meta, instance_id=event.instance_id, before=before, after=before)]
    failure_status = event.status if isinstance(event, InstanceFailed) else None
    try:
        after = lifecycle.next_status(before, tag, failure_status)
    except lifecycle.IllegalTransition as exc:
        return [_refused(event, meta, before, INVALID_TRANSITION, str(exc))]
    try:
        row = _new_row(event, instance_id, org_id) if current is None else dict(current)  # type: ignore[arg-type]
        _evolve_fields(row, event, after)
    except InvalidEvent as exc:
        return [_refused(event, meta, before, INVALID_EVENT, str(exc))]
    row["status"] = after
    server_created = row["provider_server_id"] is not None
    row["progress_percent"] = lifecycle.progress_percent(after, row["install_phase"], server_created)
    row["updated_at"] = utc(event.occurred_at)
    row["last_event_seq"] = meta.seq
    ops: list[RowOp] = [_upsert(row)]
    if after != before:
        ops.append(
            InsertIfAbsent(
                "instance_state_history",
                {
                    "seq": meta.seq,
                    "instance_id": instance_id,
                    "org_id": org_id,
                    "from_status": before,
                    "to_status": after,
                    "reason": clip(_reason(event), 128),
                    "created_at": utc(event.occurred_at),
                },
            )
        )
    action_type, status, error_code, error_message = _action_for(event)
    ops.append(
        action_log_row_op(
            event, meta, action_type=action_type, status=status, instance_id=event.instance_id,
            before=before, after=after, error_code=error_code, error_message=error_message,
        )
    )  # fmt: skip
    return ops


def project_command_rejected(event: CommandRejected, meta: EventMeta, current: Row | None) -> list[RowOp]:
    status = current["status"] if current is not None else None
    return [
        action_log_row_op(
            event, meta, status="failed", instance_id=event.instance_id, before=status, after=status,
            error_code=event.reason_code, error_message=event.message or None,
        )
    ]  # fmt: skip


def _refused(event: InstanceEvent, meta: EventMeta, before: str | None, code: str, message: str) -> RowOp:
    return action_log_row_op(
        event, meta, status="failed", instance_id=event.instance_id, before=before, after=before,
        error_code=code, error_message=message,
    )  # fmt: skip


def action_log_row_op(event, meta: EventMeta, **kwargs) -> InsertIfAbsent:
    return InsertIfAbsent("action_logs", action_log_row(event, meta, **kwargs))
