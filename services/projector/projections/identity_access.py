"""Invitations and API keys -> ``invitations``, ``api_keys``.

Every write after creation is keyed by the organisation too: an event filed under another
tenant matches no row. First writer wins for ``revoked_at`` / ``accepted_at``.
"""

from __future__ import annotations

from collections.abc import Callable

from contracts.events import (
    ApiKeyCreated,
    ApiKeyRenamed,
    ApiKeyRevoked,
    InvitationAccepted,
    InvitationCreated,
    InvitationRevoked,
)

from ..rowops import InsertIfAbsent, RowOp, Update
from .action_log import EventMeta, utc
from .identity_common import require_uuid as _uuid
from .identity_common import same_org as _same_org


def _invitation_created(event: InvitationCreated, meta: EventMeta) -> list[RowOp]:
    row = {
        "id": _uuid(event.invitation_id, "invitation id"), "org_id": _same_org(event, event.organization_id),
        "email": event.email, "role": event.role, "token_hash": event.token_hash, "expires_at": utc(event.expires_at),
        "invited_by_user_id": _uuid(event.invited_by_user_id, "inviter id"), "created_at": utc(event.occurred_at),
        "accepted_at": None, "accepted_by_user_id": None, "revoked_at": None, "last_event_seq": meta.seq,
    }  # fmt: skip
    return [InsertIfAbsent("invitations", row, key=("id",), strict=True)]


def _invitation_key(event) -> dict[str, str]:
    return {"id": _uuid(event.invitation_id, "invitation id"), "org_id": _same_org(event, event.organization_id)}


def _invitation_revoked(event: InvitationRevoked, meta: EventMeta) -> list[RowOp]:
    return [Update("invitations", _invitation_key(event), {"revoked_at": utc(event.occurred_at)}, meta.seq,
                   keep_existing=frozenset({"revoked_at"}))]


def _invitation_accepted(event: InvitationAccepted, meta: EventMeta) -> list[RowOp]:
    values = {"accepted_at": utc(event.occurred_at), "accepted_by_user_id": _uuid(event.user_id, "user id")}
    return [Update("invitations", _invitation_key(event), values, meta.seq,
                   keep_existing=frozenset({"accepted_at", "accepted_by_user_id"}))]


def _key_created(event: ApiKeyCreated, meta: EventMeta) -> list[RowOp]:
    org_id = _uuid(event.org_id, "org id")
    row = {
        "id": _uuid(event.key_id, "key id"), "org_id": org_id, "user_id": _uuid(event.user_id, "user id"),
        "name": event.name, "prefix": event.prefix, "key_hash": event.key_hash, "scopes": list(event.scopes),
        "expires_at": utc(event.expires_at) if event.expires_at else None,
        "requests_per_minute": event.requests_per_minute, "max_concurrent_requests": event.max_concurrent_requests,
        "created_at": utc(event.occurred_at), "revoked_at": None, "last_event_seq": meta.seq,
    }  # fmt: skip
    return [InsertIfAbsent("api_keys", row, key=("id",), strict=True)]


def _key_where(event) -> dict[str, str]:
    # Keyed by org too: an event filed under another tenant matches nothing.
    return {"id": _uuid(event.key_id, "key id"), "org_id": _uuid(event.org_id, "org id")}


def _key_renamed(event: ApiKeyRenamed, meta: EventMeta) -> list[RowOp]:
    return [Update("api_keys", _key_where(event), {"name": event.name}, meta.seq)]


def _key_revoked(event: ApiKeyRevoked, meta: EventMeta) -> list[RowOp]:
    return [Update("api_keys", _key_where(event), {"revoked_at": utc(event.occurred_at)}, meta.seq,
                   keep_existing=frozenset({"revoked_at"}))]


ACCESS_HANDLERS: dict[type, Callable[..., list[RowOp]]] = {
    InvitationCreated: _invitation_created,
    InvitationRevoked: _invitation_revoked,
    InvitationAccepted: _invitation_accepted,
    ApiKeyCreated: _key_created,
    ApiKeyRenamed: _key_renamed,
    ApiKeyRevoked: _key_revoked,
}
