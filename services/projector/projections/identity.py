"""Identity events -> ``organizations``, ``users``, ``memberships`` (+ audit log and action log).

Invitations and API keys are in ``identity_access``. Every identity event also gets one
``audit_log`` row and one ``action_logs`` row (the original's ORG_* codes where one exists).

Creation of an organisation is insert-if-absent by id: a clashing slug is refused by Postgres
and recorded as a failed action. A user's id is derived from the e-mail address, so a
re-created account (after ``user.deleted``) is the same row, overwritten (upsert by sequence).
Removals are marks (``removed_at``, ``deleted_at``), never deletes.
"""

from __future__ import annotations

from collections.abc import Callable

from contracts.events import (
    Event,
    MemberAdded,
    MemberRemoved,
    MemberRoleChanged,
    OrganizationCreated,
    OrganizationRenamed,
    PasswordResetRequested,
    UserCreated,
    UserDeleted,
    UserPasswordChanged,
    UserUpdated,
    event_tag,
)

from ..rowops import InsertIfAbsent, RowOp, Update, Upsert
from .action_log import INVALID_EVENT, EventMeta, action_log_row, utc
from .audit import audit_row
from .identity_access import ACCESS_HANDLERS
from .identity_common import Refused, require_uuid, same_org

# The original's action codes where one fits (original-system.md §9); others follow the tag.
IDENTITY_ACTION_TYPES = {
    "organization.created": "ORG_CREATED",
    "organization.renamed": "ORG_UPDATED",
    "user.created": "USER_CREATED",
    "user.updated": "USER_UPDATED",
    "user.password_changed": "USER_PASSWORD_CHANGED",
    "user.password_reset_requested": "USER_PASSWORD_RESET_REQUESTED",
    "user.deleted": "USER_DELETED",
    "membership.added": "ORG_MEMBER_ADDED",
    "membership.role_changed": "ORG_MEMBER_ROLE_UPDATED",
    "membership.removed": "ORG_MEMBER_REMOVED",
    "invitation.created": "ORG_INVITATION_CREATED",
    "invitation.revoked": "ORG_INVITATION_REVOKED",
    "invitation.accepted": "ORG_INVITATION_ACCEPTED",
    "api_key.created": "API_KEY_CREATED",
    "api_key.renamed": "API_KEY_RENAMED",
    "api_key.revoked": "API_KEY_REVOKED",
}


def _log(event: Event, meta: EventMeta, **kwargs) -> InsertIfAbsent:
    row = action_log_row(event, meta, action_type=IDENTITY_ACTION_TYPES.get(event_tag(event)), **kwargs)
    # Every member reads the action log: no hash of a secret there, and no invitee address (the
    # audit log, readable by owners and admins, has it).
    row["metadata"] = {k: v for k, v in row["metadata"].items() if not k.endswith("_hash") and k != "email"}
    return InsertIfAbsent("action_logs", row)


# --- organisations ---------------------------------------------------------------------------


def _organization_created(event: OrganizationCreated, meta: EventMeta) -> list[RowOp]:
    org_id = require_uuid(event.organization_id, "organization id")
    creator = require_uuid(event.created_by_user_id, "creator id") if event.created_by_user_id else None
    row = {"id": org_id, "name": event.name, "slug": event.slug, "created_by_user_id": creator,
           "created_at": utc(event.occurred_at), "last_event_seq": meta.seq}  # fmt: skip
    return [InsertIfAbsent("organizations", row, key=("id",), strict=True)]


def _organization_renamed(event: OrganizationRenamed, meta: EventMeta) -> list[RowOp]:
    org_id = same_org(event, event.organization_id)
    return [Update("organizations", {"id": org_id}, {"name": event.name, "updated_at": utc(event.occurred_at)},
                   meta.seq)]


# --- users -----------------------------------------------------------------------------------


def _user_created(event: UserCreated, meta: EventMeta) -> list[RowOp]:
    user_id = require_uuid(event.user_id, "user id")
    row = {"id": user_id, "email": event.email, "password_hash": event.password_hash, "is_admin": event.is_admin,
           "first_name": event.first_name, "last_name": event.last_name, "created_at": utc(event.occurred_at),
           "updated_at": None, "password_changed_at": None, "deleted_at": None,
           "last_event_seq": meta.seq}  # fmt: skip
    return [Upsert("users", ("id",), row)]


def _user_updated(event: UserUpdated, meta: EventMeta) -> list[RowOp]:
    values = {"is_admin": event.is_admin, "first_name": event.first_name, "last_name": event.last_name,
              "updated_at": utc(event.occurred_at)}  # fmt: skip
    return [Update("users", {"id": require_uuid(event.user_id, "user id")}, values, meta.seq)]


def _password_changed(event: UserPasswordChanged, meta: EventMeta) -> list[RowOp]:
    at = utc(event.occurred_at)
    values = {"password_hash": event.password_hash, "password_changed_at": at, "updated_at": at}
    return [Update("users", {"id": require_uuid(event.user_id, "user id")}, values, meta.seq)]


def _reset_requested(event: PasswordResetRequested, meta: EventMeta) -> list[RowOp]:
    require_uuid(event.user_id, "user id")
    return []  # only the audit: the token is checked against the user's own events


def _user_deleted(event: UserDeleted, meta: EventMeta) -> list[RowOp]:
    user_id = require_uuid(event.user_id, "user id")
    at = utc(event.occurred_at)
    # The API removes the memberships and revokes the keys with their own events first; these
    # marks only make sure nothing of a deleted account stays live in the read model.
    return [
        Update("users", {"id": user_id}, {"deleted_at": at, "updated_at": at}, meta.seq),
        Update("memberships", {"user_id": user_id}, {"removed_at": at}, meta.seq, keep_existing=frozenset({"removed_at"})),
        Update("api_keys", {"user_id": user_id}, {"revoked_at": at}, meta.seq, keep_existing=frozenset({"revoked_at"})),
    ]


# --- memberships -----------------------------------------------------------------------------


def _member_added(event: MemberAdded, meta: EventMeta) -> list[RowOp]:
    org_id = same_org(event, event.organization_id)
    invitation = require_uuid(event.invitation_id, "invitation id") if event.invitation_id else None
    row = {"organization_id": org_id, "user_id": require_uuid(event.user_id, "user id"), "role": event.role,
           "invitation_id": invitation, "created_at": utc(event.occurred_at), "updated_at": None, "removed_at": None,
           "last_event_seq": meta.seq}  # fmt: skip
    return [Upsert("memberships", ("organization_id", "user_id"), row)]


def _member_role_changed(event: MemberRoleChanged, meta: EventMeta) -> list[RowOp]:
    key = {"organization_id": same_org(event, event.organization_id), "user_id": require_uuid(event.user_id, "user id")}
    return [Update("memberships", key, {"role": event.role, "updated_at": utc(event.occurred_at)}, meta.seq)]


def _member_removed(event: MemberRemoved, meta: EventMeta) -> list[RowOp]:
    key = {"organization_id": same_org(event, event.organization_id), "user_id": require_uuid(event.user_id, "user id")}
    at = utc(event.occurred_at)
    return [Update("memberships", key, {"removed_at": at, "updated_at": at}, meta.seq)]


HANDLERS: dict[type, Callable[..., list[RowOp]]] = {
    OrganizationCreated: _organization_created,
    OrganizationRenamed: _organization_renamed,
    UserCreated: _user_created,
    UserUpdated: _user_updated,
    UserPasswordChanged: _password_changed,
    PasswordResetRequested: _reset_requested,
    UserDeleted: _user_deleted,
    MemberAdded: _member_added,
    MemberRoleChanged: _member_role_changed,
    MemberRemoved: _member_removed,
    **ACCESS_HANDLERS,
}

IDENTITY_EVENTS = tuple(HANDLERS)


def project_identity_event(event: Event, meta: EventMeta) -> list[RowOp]:
    handler = HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"not an identity event: {type(event).__name__}")
    try:
        ops = handler(event, meta)
    except Refused as refusal:
        return [_log(event, meta, status="failed", error_code=INVALID_EVENT, error_message=str(refusal))]
    return [*ops, audit_row(event, meta), _log(event, meta)]
