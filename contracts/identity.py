"""Identity events: people, organisations, memberships, invitations, API keys.

Part of the EVENTS vocabulary (``contracts.events.AnyEvent`` includes ``IdentityAnyEvent``);
kept in their own module so identity can grow without touching the instance lifecycle.
Fields are only added with defaults, never renamed or removed.

Where they live (``contracts.codec.event_address``):
- users: ``evt.global.user.<user_id>.*`` (a user exists above organisations);
- organisations: ``evt.<org>.organization.<org>.*``;
- memberships: ``evt.<org>.membership.<user_id>.*``; the API checks its decisions against the
  whole ``evt.<org>.membership.>`` (one optimistic-concurrency scope per organisation, so two
  concurrent demotions can never remove the last owner);
- invitations: ``evt.<org>.invitation.<invitation_id>.*``;
- API keys: ``evt.<org>.api_key.<key_id>.*``.

Secrets never travel: passwords as argon2 hashes, keys and one-time tokens as SHA-256 digests.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Union

from .base import Event

OrgRole = Literal["owner", "admin", "manager", "user"]


# --- organisations ---------------------------------------------------------------------------


class OrganizationCreated(Event, frozen=True, kw_only=True, tag="organization.created"):
    organization_id: str
    name: str
    slug: str
    created_by_user_id: str | None = None


class OrganizationRenamed(Event, frozen=True, kw_only=True, tag="organization.renamed"):
    organization_id: str
    name: str


# --- users -----------------------------------------------------------------------------------


class UserCreated(Event, frozen=True, kw_only=True, tag="user.created"):
    user_id: str
    email: str
    # An argon2 hash, never the password.
    password_hash: str
    is_admin: bool = False
    first_name: str = ""
    last_name: str = ""


class UserUpdated(Event, frozen=True, kw_only=True, tag="user.updated"):
    """The new values of a user's editable fields (all of them, not a diff)."""

    user_id: str
    is_admin: bool
    first_name: str = ""
    last_name: str = ""


class UserPasswordChanged(Event, frozen=True, kw_only=True, tag="user.password_changed"):
    user_id: str
    password_hash: str
    # "change" (by the user, with the current password), "reset" (by a reset token), "admin".
    reason: Literal["change", "reset", "admin"] = "change"
    # The reset request this change consumed (single use): set when reason == "reset".
    reset_id: str | None = None


class PasswordResetRequested(Event, frozen=True, kw_only=True, tag="user.password_reset_requested"):
    user_id: str
    reset_id: str
    # SHA-256 of the token mailed to the user; the token itself is never stored.
    token_hash: str
    expires_at: datetime


class UserDeleted(Event, frozen=True, kw_only=True, tag="user.deleted"):
    user_id: str


# --- memberships -----------------------------------------------------------------------------


class MemberAdded(Event, frozen=True, kw_only=True, tag="membership.added"):
    organization_id: str
    user_id: str
    role: OrgRole
    # The invitation that brought this member in, if any.
    invitation_id: str | None = None


class MemberRoleChanged(Event, frozen=True, kw_only=True, tag="membership.role_changed"):
    organization_id: str
    user_id: str
    role: OrgRole
    previous_role: OrgRole


class MemberRemoved(Event, frozen=True, kw_only=True, tag="membership.removed"):
    organization_id: str
    user_id: str
    # "removed" by another member, "left" by themselves, "user_deleted" with the account.
    reason: Literal["removed", "left", "user_deleted"] = "removed"


# --- invitations -----------------------------------------------------------------------------


class InvitationCreated(Event, frozen=True, kw_only=True, tag="invitation.created"):
    invitation_id: str
    organization_id: str
    email: str
    role: OrgRole
    # SHA-256 of the invitation token; the token is shown once and mailed, never stored.
    token_hash: str
    expires_at: datetime
    invited_by_user_id: str


class InvitationRevoked(Event, frozen=True, kw_only=True, tag="invitation.revoked"):
    invitation_id: str
    organization_id: str


class InvitationAccepted(Event, frozen=True, kw_only=True, tag="invitation.accepted"):
    invitation_id: str
    organization_id: str
    user_id: str


# --- API keys --------------------------------------------------------------------------------


class ApiKeyCreated(Event, frozen=True, kw_only=True, tag="api_key.created"):
    key_id: str
    name: str
    # The visible prefix (e.g. ``sk-inv-1a2b3c``) and a SHA-256 of the whole key: the key itself is shown once.
    prefix: str
    key_hash: str
    user_id: str
    scopes: tuple[str, ...] = ("inference", "manage")
    expires_at: datetime | None = None
    # The key's own proxy limits; None: the proxy's defaults.
    requests_per_minute: int | None = None
    max_concurrent_requests: int | None = None


class ApiKeyRenamed(Event, frozen=True, kw_only=True, tag="api_key.renamed"):
    key_id: str
    name: str


class ApiKeyRevoked(Event, frozen=True, kw_only=True, tag="api_key.revoked"):
    key_id: str


IdentityAnyEvent = Union[
    OrganizationCreated,
    OrganizationRenamed,
    UserCreated,
    UserUpdated,
    UserPasswordChanged,
    PasswordResetRequested,
    UserDeleted,
    MemberAdded,
    MemberRoleChanged,
    MemberRemoved,
    InvitationCreated,
    InvitationRevoked,
    InvitationAccepted,
    ApiKeyCreated,
    ApiKeyRenamed,
    ApiKeyRevoked,
]

__all__ = [
    "ApiKeyCreated",
    "ApiKeyRenamed",
    "ApiKeyRevoked",
    "IdentityAnyEvent",
    "InvitationAccepted",
    "InvitationCreated",
    "InvitationRevoked",
    "MemberAdded",
    "MemberRemoved",
    "MemberRoleChanged",
    "OrgRole",
    "OrganizationCreated",
    "OrganizationRenamed",
    "PasswordResetRequested",
    "UserCreated",
    "UserDeleted",
    "UserPasswordChanged",
    "UserUpdated",
]
