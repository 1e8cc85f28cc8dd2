"""HTTP shapes of the identity API (organisations, members, invitations, users, sessions, audit).

Requests forbid unknown fields (``services.api.schemas.Request``): ``org_id``, ``role``,
``scopes`` or ``is_admin`` slipped into a body that does not define them is a 422, never
silently honoured. Strings are length-bounded here; their content is checked in ``inputs``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from ..schemas import Request

RoleName = Literal["owner", "admin", "manager", "user"]
ScopeName = Literal["inference", "manage"]
Email = Annotated[str, Meta(min_length=3, max_length=254)]
Password = Annotated[str, Meta(min_length=1, max_length=1024)]
ShortText = Annotated[str, Meta(max_length=100)]
Token = Annotated[str, Meta(min_length=1, max_length=200)]


# --- organisations ---------------------------------------------------------------------------


class OrganizationCreate(Request, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=100)]
    slug: Annotated[str, Meta(max_length=63)] | None = None
    set_as_current: bool = True


class OrganizationRename(Request, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=100)]


class WorkspaceSwitch(Request, kw_only=True):
    organization_id: Annotated[str, Meta(max_length=36)] | None = None
    """``null`` selects the Personal workspace."""


class OrganizationView(msgspec.Struct, kw_only=True):
    id: str
    name: str
    slug: str
    role: str
    member_count: int
    created_at: datetime
    is_current: bool = False


class CurrentWorkspace(msgspec.Struct, kw_only=True):
    workspace: Literal["organization", "personal"]
    organization: OrganizationView | None = None


# --- members ---------------------------------------------------------------------------------


class MemberRoleUpdate(Request, kw_only=True):
    role: RoleName


class MemberView(msgspec.Struct, kw_only=True):
    user_id: str
    email: str
    first_name: str
    last_name: str
    role: str
    joined_at: datetime


# --- invitations -----------------------------------------------------------------------------


class InvitationCreate(Request, kw_only=True):
    email: Email
    role: RoleName = "user"
    expires_in_days: Annotated[int, Meta(ge=1, le=30)] = 7


class InvitationView(msgspec.Struct, kw_only=True):
    id: str
    email: str
    role: str
    status: Literal["pending", "accepted", "revoked", "expired"]
    invited_by_user_id: str
    invited_by_email: str | None
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None = None


class InvitationCreated(InvitationView, kw_only=True):
    token: str
    """The invitation token: shown in this response only (and mailed to the invitee)."""


class InvitationAccept(Request, kw_only=True):
    token: Token


class InvitationPreview(msgspec.Struct, kw_only=True):
    """What the holder of an invitation token may see before signing in (the invitation page)."""

    organization_name: str
    email: str
    role: str
    status: Literal["pending", "accepted", "revoked", "expired"]
    expires_at: datetime


# --- users -----------------------------------------------------------------------------------


class UserCreate(Request, kw_only=True):
    email: Email
    password: Password
    first_name: ShortText = ""
    last_name: ShortText = ""
    is_admin: bool = False


class UserUpdate(Request, kw_only=True):
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    is_admin: bool | None = None
    password: Password | None = None


class UserMembership(msgspec.Struct, kw_only=True):
    organization_id: str
    organization_name: str
    organization_slug: str
    role: str


class UserDetail(msgspec.Struct, kw_only=True):
    id: str
    email: str
    username: str
    first_name: str
    last_name: str
    role: str
    is_admin: bool
    created_at: datetime
    updated_at: datetime | None = None
    memberships: list[UserMembership] = []


class ProfileUpdate(Request, kw_only=True):
    first_name: ShortText | None = None
    last_name: ShortText | None = None


# --- passwords and sessions ------------------------------------------------------------------


class PasswordChange(Request, kw_only=True):
    current_password: Password
    new_password: Password


class PasswordResetRequest(Request, kw_only=True):
    email: Annotated[str, Meta(min_length=1, max_length=320)]


class PasswordReset(Request, kw_only=True):
    token: Token
    new_password: Password


class Accepted(msgspec.Struct, kw_only=True):
    status: str
    detail: str


class SessionView(msgspec.Struct, kw_only=True):
    id: str
    ip_address: str | None
    user_agent: str | None
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    organization_id: str | None
    is_current: bool


class RevokedSessions(msgspec.Struct, kw_only=True):
    revoked: int


# --- audit -----------------------------------------------------------------------------------


class AuditEntry(msgspec.Struct, kw_only=True):
    seq: int
    action: str
    actor: str
    actor_user_id: str | None
    actor_email: str | None
    target_type: str
    target_id: str
    target_user_id: str | None
    target_email: str | None
    details: dict[str, Any]
    correlation_id: str
    created_at: datetime


class AuditPage(msgspec.Struct, kw_only=True):
    items: list[AuditEntry]
    next_before_seq: int | None


# --- API keys --------------------------------------------------------------------------------


class ApiKeyCreate(Request, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
    scopes: Annotated[list[ScopeName], Meta(min_length=1, max_length=2)] | None = None
    """Default: every scope your role holds (``inference``; ``manage`` for owners, admins, managers)."""
    expires_at: datetime | None = None
    requests_per_minute: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    """This key's own proxy rate limit (owners and admins); default: the proxy's."""
    max_concurrent_requests: Annotated[int, Meta(ge=1, le=10_000)] | None = None


class ApiKeyRename(Request, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]


class ApiKeyDetail(msgspec.Struct, kw_only=True):
    id: str
    name: str
    prefix: str
    key_prefix: str
    scopes: list[str]
    organization_id: str
    user_id: str
    user_email: str | None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    requests_per_minute: int | None = None
    max_concurrent_requests: int | None = None
    is_active: bool = True


class ApiKeyIssued(msgspec.Struct, kw_only=True):
    id: str
    name: str
    key: str
    """The secret: shown in this response only."""
    prefix: str
    created_at: datetime
    scopes: list[str]
    organization_id: str
    expires_at: datetime | None = None
    requests_per_minute: int | None = None
    max_concurrent_requests: int | None = None
