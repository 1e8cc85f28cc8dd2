"""Read-model queries of the identity routes. Every one that returns organisation data takes
the organisation id from the caller's credential and filters on it."""

from __future__ import annotations

import asyncpg

from .. import db
from .schemas import MemberView, OrganizationView

_ORGS = """
SELECT o.id, o.name, o.slug, o.created_at, m.role,
       (SELECT count(*) FROM rm.memberships c JOIN rm.users cu ON cu.id = c.user_id AND cu.deleted_at IS NULL
         WHERE c.organization_id = o.id AND c.removed_at IS NULL) AS member_count
FROM rm.memberships m JOIN rm.organizations o ON o.id = m.organization_id
WHERE m.user_id = $1 AND m.removed_at IS NULL AND ($2::uuid IS NULL OR o.id = $2::uuid)
ORDER BY lower(o.name), o.id
"""

_ROLE_ORDER = "CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 WHEN 'manager' THEN 2 ELSE 3 END"

_MEMBERS = f"""
SELECT m.user_id, u.email, u.first_name, u.last_name, m.role, m.created_at
FROM rm.memberships m JOIN rm.users u ON u.id = m.user_id AND u.deleted_at IS NULL
WHERE m.organization_id = $1 AND m.removed_at IS NULL AND ($2::uuid IS NULL OR m.user_id = $2::uuid)
ORDER BY {_ROLE_ORDER}, u.email
"""


def _org_view(row, current_org: str | None) -> OrganizationView:
    return OrganizationView(id=str(row["id"]), name=row["name"], slug=row["slug"], role=row["role"],
                            member_count=row["member_count"], created_at=row["created_at"],
                            is_current=str(row["id"]) == current_org)


async def organizations_of(pool: asyncpg.Pool, user_id: str, current_org: str | None,
                           only: str | None = None) -> list[OrganizationView]:
    return [_org_view(r, current_org) for r in await db.fetch(pool, _ORGS, user_id, only)]


async def organization_of(pool: asyncpg.Pool, user_id: str, org_id: str) -> OrganizationView | None:
    found = await organizations_of(pool, user_id, org_id, only=org_id)
    return found[0] if found else None


def _member_view(row) -> MemberView:
    return MemberView(user_id=str(row["user_id"]), email=row["email"], first_name=row["first_name"],
                      last_name=row["last_name"], role=row["role"], joined_at=row["created_at"])


async def members_of(pool: asyncpg.Pool, org_id: str) -> list[MemberView]:
    return [_member_view(r) for r in await db.fetch(pool, _MEMBERS, org_id, None)]


async def member_of(pool: asyncpg.Pool, org_id: str, user_id: str) -> MemberView | None:
    rows = await db.fetch(pool, _MEMBERS, org_id, user_id)
    return _member_view(rows[0]) if rows else None


async def active_role(pool: asyncpg.Pool, org_id: str, user_id: str) -> str | None:
    return await db.fetchval(
        pool, "SELECT role FROM rm.memberships WHERE organization_id = $1 AND user_id = $2 AND removed_at IS NULL",
        org_id, user_id)
