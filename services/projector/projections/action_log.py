"""The action log: one row per event, in the original system's shape and vocabulary.

``action_type`` is UPPER_SNAKE and reuses the original's codes where one fits
(original-system.md §10.3, seeded action types in §2.5), so its UI badges keep working.
``status`` is ``success`` for a fact recorded as it happened and ``failed`` for a failure fact
(an instance that failed, a rejected command) or an event this projector refused (a transition
the lifecycle table forbids, a payload it could not decode).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Any, NamedTuple

import msgspec

from contracts import ids
from contracts.events import Event, event_tag

# Event tag -> action type. Instance failures depend on the target status (see failure_action_type).
ACTION_TYPES: dict[str, str] = {
    "instance.requested": "REQUEST_CREATE",
    "instance.server_created": "PROVIDER_CREATE",
    "instance.billing_started": "INSTANCE_COST_START",
    "instance.billing_stopped": "INSTANCE_COST_STOP",
    "instance.install_phase_reached": "WORKER_SSH_INSTALL",
    "instance.worker_starting": "WORKER_STARTING",
    "instance.ready": "INSTANCE_READY",
    "instance.unavailable": "INSTANCE_UNAVAILABLE",
    "instance.recovered": "INSTANCE_RECOVERED",
    "instance.draining": "INSTANCE_DRAINING",
    "instance.reinstall_requested": "REQUEST_REINSTALL",
    "instance.termination_requested": "REQUEST_TERMINATE",
    "instance.server_deleted": "PROVIDER_TERMINATE",
    "instance.terminated": "INSTANCE_TERMINATED",
    "instance.archived": "ARCHIVE_INSTANCE",
    "command.rejected": "COMMAND_REJECTED",
    "organization.created": "ORG_CREATED",
    "user.created": "USER_CREATED",
    "membership.added": "ORG_MEMBER_ADDED",
    "api_key.created": "API_KEY_CREATED",
    "api_key.revoked": "API_KEY_REVOKED",
}

# install phases with a more precise code than WORKER_SSH_INSTALL.
INSTALL_PHASE_ACTION_TYPES: dict[str, str] = {
    "ssh_ready": "WORKER_SSH_ACCESSIBLE",
    "engine_starting": "WORKER_ENGINE_STARTING",
    "agent_started": "WORKER_AGENT_STARTED",
}

FAILURE_ACTION_TYPES: dict[str, str] = {
    "provisioning_failed": "INSTANCE_PROVISIONING_FAILED",
    "startup_failed": "INSTANCE_STARTUP_FAILED",
    "failed": "INSTANCE_FAILED",
}

INVALID_EVENT = "INVALID_EVENT"  # action type and error code of an event we could not read
INVALID_TRANSITION = "INVALID_TRANSITION"  # error code: the lifecycle table forbids this event here
PROJECTION_ERROR = "PROJECTION_ERROR"  # error code: projecting this event raised or Postgres refused it

# Envelope fields are columns already; secrets never reach the log.
_NOT_METADATA = frozenset(
    {"type", "id", "org_id", "actor", "correlation_id", "causation_id", "occurred_at", "password_hash", "key_hash"}
)
_UPPER_SNAKE = re.compile(r"[^A-Za-z0-9]+")
_COMPONENT = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_MAX_TEXT = 2000
_CANONICAL_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


class EventMeta(NamedTuple):
    """Where an event sits in the stream: its sequence, subject and the server's timestamp."""

    seq: int
    subject: str
    timestamp: datetime | None = None


def action_type_for(tag: str) -> str:
    return ACTION_TYPES.get(tag) or _UPPER_SNAKE.sub("_", tag).strip("_").upper()


def component_for(actor: str) -> str:
    """``system:orchestrator`` -> ``orchestrator``; a person or an API key acted through the API."""
    kind, _, name = actor.partition(":")
    if kind == "system" and _COMPONENT.match(name):
        return name
    return "api"


def utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def clip(text: str | None, limit: int = _MAX_TEXT) -> str | None:
    return None if text is None else text[:limit]


def uuid_or_none(value: Any) -> str | None:
    """The canonical (lower-case, hyphenated) form of a UUID string, or None if it is not one."""
    if not isinstance(value, str):
        return None
    if _CANONICAL_UUID.match(value):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def event_metadata(event: Event, meta: EventMeta) -> dict[str, Any]:
    fields = msgspec.to_builtins(event)
    out = {k: v for k, v in fields.items() if k not in _NOT_METADATA}
    out["subject"] = meta.subject
    return out


def action_log_row(
    event: Event,
    meta: EventMeta,
    *,
    action_type: str | None = None,
    status: str = "success",
    instance_id: str | None = None,
    before: str | None = None,
    after: str | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    tag = event_tag(event)
    metadata = event_metadata(event, meta)
    if extra:
        metadata.update(extra)
    return {
        "seq": meta.seq,
        # The event id when it is a UUID (always, for events our services write); else one derived from the sequence.
        "id": uuid_or_none(event.id) or ids.derived_id("action_log", str(meta.seq)),
        "org_id": clip(event.org_id, 128),
        "instance_id": uuid_or_none(instance_id),
        "action_type": action_type or action_type_for(tag),
        "event_type": tag,
        "component": component_for(event.actor),
        "status": status,
        "error_code": clip(error_code, 128),
        "error_message": clip(error_message),
        "actor": clip(event.actor, 256),
        "correlation_id": clip(event.correlation_id, 256),
        "causation_id": clip(event.causation_id, 256),
        "instance_status_before": before,
        "instance_status_after": after,
        "metadata": metadata,
        "created_at": utc(event.occurred_at),
    }


def unreadable_row(
    meta: EventMeta, headers: dict[str, str] | None, *, error_code: str, error_message: str
) -> dict[str, Any]:
    """An action-log row for an event we cannot project: only the stream knows where it was."""
    headers = headers or {}
    org = "unknown"
    parts = meta.subject.split(".")
    if len(parts) == 5 and parts[0] == "evt":
        org = parts[1][:128]
    event_type = headers.get("Inventiv-Type") or (".".join(parts[2:5:2]) if len(parts) == 5 else "unknown")
    msg_id = headers.get("Nats-Msg-Id", "")
    return {
        "seq": meta.seq,
        "id": uuid_or_none(msg_id) or ids.derived_id("action_log", str(meta.seq)),
        "org_id": org,
        "instance_id": uuid_or_none(parts[3]) if len(parts) == 5 and parts[2] == "instance" else None,
        "action_type": INVALID_EVENT,
        "event_type": clip(event_type, 128),
        "component": "projector",
        "status": "failed",
        "error_code": error_code,
        "error_message": clip(error_message),
        "actor": clip(headers.get("Inventiv-Actor") or "unknown", 256),
        "correlation_id": clip(headers.get("Inventiv-Correlation-Id") or "unknown", 256),
        "causation_id": clip(headers.get("Inventiv-Causation-Id"), 256),
        "instance_status_before": None,
        "instance_status_after": None,
        "metadata": {"subject": meta.subject},
        "created_at": utc(meta.timestamp) if meta.timestamp else datetime.fromtimestamp(0, timezone.utc),
    }
