"""Identity events -> ``organizations``, ``users``, ``memberships``, ``api_keys`` (+ action log).

Creation is insert-if-absent by id: a second ``*.created`` for the same id changes nothing.
A creation that clashes with another row's unique column (a slug, an e-mail, a key hash) is
refused by Postgres; the runner then records it as a failed action instead of stopping.
"""

from __future__ import annotations

from contracts.events import ApiKeyCreated, ApiKeyRevoked, Event, MemberAdded, OrganizationCreated, UserCreated

from ..rowops import InsertIfAbsent, RowOp, Update, Upsert
from .action_log import INVALID_EVENT, EventMeta, action_log_row, utc, uuid_or_none


def _log(event: Event, meta: EventMeta, **kwargs) -> InsertIfAbsent:
    return InsertIfAbsent("action_logs", action_log_row(event, meta, **kwargs))


def _refused(event: Event, meta: EventMeta, message: str) -> list[RowOp]:
    return [_log(event, meta, status="failed", error_code=INVALID_EVENT, error_message=message)]


def project_identity_event(event: Event, meta: EventMeta) -> list[RowOp]:
    at = utc(event.occurred_at)
    if isinstance(event, OrganizationCreated):
        org_id = uuid_or_none(event.organization_id)
        creator = uuid_or_none(event.created_by_user_id) if event.created_by_user_id else None
        if org_id is None or (event.created_by_user_id and creator is None):
            return _refused(event, meta, "organization and creator ids must be UUIDs")
        row = {"id": org_id, "name": event.name, "slug": event.slug, "created_by_user_id": creator,
               "created_at": at, "last_event_seq": meta.seq}  # fmt: skip
        return [InsertIfAbsent("organizations", row, key=("id",), strict=True), _log(event, meta)]
    if isinstance(event, UserCreated):
        user_id = uuid_or_none(event.user_id)
        if user_id is None:
            return _refused(event, meta, "user id must be a UUID")
        row = {"id": user_id, "email": event.email, "password_hash": event.password_hash,
               "is_admin": event.is_admin, "created_at": at, "last_event_seq": meta.seq}  # fmt: skip
        return [InsertIfAbsent("users", row, key=("id",), strict=True), _log(event, meta)]
    if isinstance(event, MemberAdded):
        org_id, user_id = uuid_or_none(event.organization_id), uuid_or_none(event.user_id)
        if org_id is None or user_id is None:
            return _refused(event, meta, "organization and user ids must be UUIDs")
        if org_id != uuid_or_none(event.org_id):
            return _refused(event, meta, "membership event filed under another organisation")
        row = {"organization_id": org_id, "user_id": user_id, "role": event.role, "created_at": at,
               "last_event_seq": meta.seq}  # fmt: skip
        ops: list[RowOp] = [
            Upsert("memberships", ("organization_id", "user_id"), row, insert_only=frozenset({"created_at"}))
        ]
        return ops + [_log(event, meta)]
    if isinstance(event, ApiKeyCreated):
        key_id, org_id, user_id = uuid_or_none(event.key_id), uuid_or_none(event.org_id), uuid_or_none(event.user_id)
        if key_id is None or org_id is None or user_id is None:
            return _refused(event, meta, "key, org and user ids must be UUIDs")
        row = {
            "id": key_id, "org_id": org_id, "user_id": user_id, "name": event.name, "prefix": event.prefix,
            "key_hash": event.key_hash, "scopes": list(event.scopes),
            "expires_at": utc(event.expires_at) if event.expires_at else None,
            "created_at": at, "revoked_at": None, "last_event_seq": meta.seq,
        }  # fmt: skip
        return [InsertIfAbsent("api_keys", row, key=("id",), strict=True), _log(event, meta)]
    if isinstance(event, ApiKeyRevoked):
        key_id, org_id = uuid_or_none(event.key_id), uuid_or_none(event.org_id)
        if key_id is None or org_id is None:
            return _refused(event, meta, "key and org ids must be UUIDs")
        # Keyed by org too: a revocation filed under another tenant matches nothing.
        update = Update("api_keys", {"id": key_id, "org_id": org_id}, {"revoked_at": at}, meta.seq,
                        keep_existing=frozenset({"revoked_at"}))  # fmt: skip
        return [update, _log(event, meta)]
    raise TypeError(f"not an identity event: {type(event).__name__}")
