"""Server-side sessions in ``public.user_sessions``: a random token in the cookie, its SHA-256 in the row.

The read side joins the projected users and memberships (``rm``): a session whose user has
vanished or was deleted stops working, and the current organisation is the session's own when
the user is still a member there, else the user's first membership; a session switched to the
Personal workspace has no organisation at all.
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
    """The organisation a new session starts in: the one the user's latest session used, if the
    user is still a member there (the original's behaviour), else their oldest membership."""
    row = await db.fetchrow(
        pool,
        """SELECT m.organization_id, m.role FROM rm.memberships m
           LEFT JOIN LATERAL (
               SELECT current_organization_id FROM public.user_sessions
               WHERE user_id = $1 AND current_organization_id IS NOT NULL ORDER BY last_used_at DESC LIMIT 1
           ) last ON true
           WHERE m.user_id = $1 AND m.removed_at IS NULL
           ORDER BY (m.organization_id IS NOT DISTINCT FROM last.current_organization_id) DESC, m.created_at,
                    m.organization_id
           LIMIT 1""",
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
JOIN rm.users u ON u.id = s.user_id AND u.deleted_at IS NULL
LEFT JOIN LATERAL (
    SELECT organization_id, role FROM rm.memberships mm
    WHERE mm.user_id = s.user_id AND mm.removed_at IS NULL AND NOT s.personal_workspace
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

    async def revoke_all(self, user_id: str, *, keep: str | None = None) -> int:
        """Revoke every live session of ``user_id`` except ``keep``; returns how many."""
        status = await db.execute(
            self._pool,
            """UPDATE public.user_sessions SET revoked_at = now()
               WHERE user_id = $1 AND revoked_at IS NULL AND ($2::uuid IS NULL OR id <> $2::uuid)""",
            user_id, keep,
        )
        return int(status.rsplit(" ", 1)[-1] or 0)

    async def revoke_own(self, user_id: str, session_id: str) -> bool:
        """Revoke one of ``user_id``'s live sessions; False when it is not theirs (or not live)."""
        status = await db.execute(
            self._pool,
            """UPDATE public.user_sessions SET revoked_at = now()
               WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > now()""",
            session_id, user_id,
        )
        return status.endswith(" 1")

    async def list_live(self, user_id: str) -> list:
        return await db.fetch(
            self._pool,
            """SELECT id, ip_address, user_agent, created_at, last_used_at, expires_at, current_organization_id,
                      personal_workspace
               FROM public.user_sessions
               WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
               ORDER BY last_used_at DESC, id""",
            user_id,
        )

    async def switch_workspace(self, session_id: str, org_id: str | None) -> None:
        """Make ``org_id`` the session's organisation, or the Personal workspace when ``None``."""
        await db.execute(
            self._pool,
            """UPDATE public.user_sessions SET current_organization_id = $2, personal_workspace = ($2::uuid IS NULL)
               WHERE id = $1 AND revoked_at IS NULL""",
            session_id, org_id,
        )
