"""Server-side sessions in ``public.user_sessions``: a random token in the cookie, its SHA-256 in the row.

The read side joins the projected users and memberships (``rm``): a session whose user has
vanished stops working, and the current organisation is the session's own when the user is
still a member there, else the user's first membership.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import asyncpg

from contracts.ids import new_id

from .. import db

SESSION_COOKIE = "inventiv_session"
_TOUCH_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class SessionInfo:
    session_id: str
    user_id: str
    email: str
    is_admin: bool
    org_id: str | None
    org_role: str | None
    expires_at: datetime


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def first_membership(pool: asyncpg.Pool, user_id: str) -> tuple[str, str] | None:
    row = await db.fetchrow(
        pool,
        """SELECT organization_id, role FROM rm.memberships WHERE user_id = $1
           ORDER BY created_at, organization_id LIMIT 1""",
        user_id,
    )
    return (str(row["organization_id"]), row["role"]) if row else None


async def create_session(
    pool: asyncpg.Pool, *, user_id: str, org_id: str | None, ip: str | None, user_agent: str | None, ttl_s: int
) -> tuple[str, str, datetime]:
    token = new_session_token()
    session_id = new_id()
    expires_at = datetime.now(timezone.utc) + timedelta(seconds=ttl_s)
    await db.execute(
        pool,
        """INSERT INTO public.user_sessions
               (id, user_id, token_sha256, current_organization_id, ip_address, user_agent, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        session_id, user_id, token_digest(token), org_id, (ip or "")[:64] or None, (user_agent or "")[:512] or None,
        expires_at,
    )
    return session_id, token, expires_at


_LOAD_SQL = """
SELECT s.id, s.user_id, s.expires_at, u.email, u.is_admin, m.organization_id, m.role
FROM public.user_sessions s
JOIN rm.users u ON u.id = s.user_id
LEFT JOIN LATERAL (
    SELECT organization_id, role FROM rm.memberships mm
    WHERE mm.user_id = s.user_id
    ORDER BY (mm.organization_id IS NOT DISTINCT FROM s.current_organization_id) DESC, mm.created_at, mm.organization_id
    LIMIT 1
) m ON true
WHERE s.token_sha256 = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
"""


class SessionStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._touched: dict[str, float] = {}

    async def load(self, token: str) -> SessionInfo | None:
        if not token or len(token) > 256:
            return None
        row = await db.fetchrow(self._pool, _LOAD_SQL, token_digest(token))
        if row is None:
            return None
        info = SessionInfo(
            session_id=str(row["id"]),
            user_id=str(row["user_id"]),
            email=row["email"],
            is_admin=row["is_admin"],
            org_id=str(row["organization_id"]) if row["organization_id"] else None,
            org_role=row["role"],
            expires_at=row["expires_at"],
        )
        await self._touch(info.session_id)
        return info

    async def _touch(self, session_id: str) -> None:
        # last_used_at is informative: write it at most once a minute per session and process.
        now = time.monotonic()
        if now - self._touched.get(session_id, 0.0) < _TOUCH_EVERY_S:
            return
        if len(self._touched) > 100_000:
            self._touched.clear()
        self._touched[session_id] = now
        await db.execute(self._pool, "UPDATE public.user_sessions SET last_used_at = now() WHERE id = $1", session_id)

    async def create_session(self, *, user_id: str, org_id: str | None, ip: str | None, user_agent: str | None,
                             ttl_s: int) -> tuple[str, str, datetime]:
        return await create_session(self._pool, user_id=user_id, org_id=org_id, ip=ip, user_agent=user_agent,
                                    ttl_s=ttl_s)

    async def revoke(self, session_id: str) -> None:
        await db.execute(
            self._pool,
            "UPDATE public.user_sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
            session_id,
        )
        self._touched.pop(session_id, None)
