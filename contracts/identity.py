"""Identity events: people, organisations, memberships, API keys.

Part of the EVENTS vocabulary (``contracts.events.AnyEvent`` includes ``IdentityAnyEvent``);
kept in their own module so identity can grow without touching the instance lifecycle.
Fields are only added with defaults, never renamed or removed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Union

from .base import Event


class OrganizationCreated(Event, frozen=True, kw_only=True, tag="organization.created"):
    organization_id: str
    name: str
    slug: str
    created_by_user_id: str | None = None


class UserCreated(Event, frozen=True, kw_only=True, tag="user.created"):
    user_id: str
    email: str
    # An argon2 hash, never the password.
    password_hash: str
    is_admin: bool = False


class MemberAdded(Event, frozen=True, kw_only=True, tag="membership.added"):
    organization_id: str
    user_id: str
    role: Literal["owner", "admin", "manager", "user"]


class ApiKeyCreated(Event, frozen=True, kw_only=True, tag="api_key.created"):
    key_id: str
    name: str
    # The visible prefix (e.g. ``sk-inv-1a2b3c``) and a SHA-256 of the whole key: the key itself is shown once.
    prefix: str
    key_hash: str
    user_id: str
    scopes: tuple[str, ...] = ("inference", "manage")
    expires_at: datetime | None = None


class ApiKeyRevoked(Event, frozen=True, kw_only=True, tag="api_key.revoked"):
    key_id: str



IdentityAnyEvent = Union[
    OrganizationCreated,
    UserCreated,
    MemberAdded,
    ApiKeyCreated,
    ApiKeyRevoked,
]

__all__ = [
    "ApiKeyCreated",
    "ApiKeyRevoked",
    "IdentityAnyEvent",
    "MemberAdded",
    "OrganizationCreated",
    "UserCreated",
]
