"""The identity audit log: one row per identity event, without secrets.

Who did what to whom: ``actor`` (and the user behind it when a person acted), the target
aggregate (``organization``, ``user``, ``membership``, ``invitation``, ``api_key``) and the
event's own fields as ``details``, minus the envelope and every hash (password, key, token).
"""

from __future__ import annotations

from typing import Any

import msgspec

from contracts import codec, ids
from contracts.events import Event, event_tag

from ..rowops import InsertIfAbsent
from .action_log import EventMeta, clip, utc, uuid_or_none

_ENVELOPE = frozenset({"type", "id", "org_id", "actor", "correlation_id", "causation_id", "occurred_at"})


def _is_secret(field: str) -> bool:
    return field.endswith("_hash") or field in ("password", "token")


def audit_details(event: Event) -> dict[str, Any]:
    fields = msgspec.to_builtins(event)
    return {k: v for k, v in fields.items() if k not in _ENVELOPE and not _is_secret(k)}


def actor_user_id(actor: str) -> str | None:
    kind, _, ident = actor.partition(":")
    return uuid_or_none(ident) if kind == "user" else None


def audit_row(event: Event, meta: EventMeta) -> InsertIfAbsent:
    aggregate, aggregate_id = codec.event_address(event)
    row = {
        "seq": meta.seq,
        "event_id": uuid_or_none(event.id) or ids.derived_id("audit_log", str(meta.seq)),
        "org_id": clip(event.org_id, 128),
        "action": event_tag(event),
        "actor": clip(event.actor, 256),
        "actor_user_id": actor_user_id(event.actor),
        "target_type": aggregate,
        "target_id": clip(aggregate_id, 128),
        "target_user_id": uuid_or_none(getattr(event, "user_id", None)),
        "details": audit_details(event),
        "correlation_id": clip(event.correlation_id, 256),
        "created_at": utc(event.occurred_at),
    }
    return InsertIfAbsent("audit_log", row)

