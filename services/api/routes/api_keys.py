"""``/api_keys``: create (secret shown once), list (no secrets), rename, revoke. Signed-in people only.

A key belongs to the organisation it was created in and acts as its creator there, with at
most the scopes the creator's role holds (``inference``; ``manage`` for owners, admins and
managers): asking for more is a 403. An optional expiry is enforced by every cache at lookup.
Owners and admins see and revoke every key of the organisation; others their own.

Creation, renaming and revocation are events on the key's aggregate
(``evt.<org>.api_key.<id>.*``): the projector folds them into ``rm.api_keys`` and every API
process's key cache applies creations and revocations live (the creating process feeds its own
cache directly, so the key works on the very next request). ``last_used_at`` comes from the
FinOps usage tables (fed by the proxy's usage records): nothing is written per request.
Keys cannot mint or revoke keys: a leaked key must not be able to multiply itself.
"""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from litestar import Request, delete, get, post, put
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from contracts.events import ApiKeyCreated as ApiKeyCreatedEvent
from contracts.events import ApiKeyRenamed, ApiKeyRevoked
from contracts.ids import new_id
from services.api.keys import generate_api_key, hash_api_key, visible_prefix

from .. import db
from ..auth.identity_store import aggregate_scope, append_in_scope, load_scope, with_retries
from ..auth.principal import Principal, require_user
from ..auth.roles import AUDIT_ROLES, SCOPES, scopes_for_role
from ..auth.schemas import ApiKeyCreate, ApiKeyDetail, ApiKeyIssued, ApiKeyRename
from ..auth.writes import envelope, settled
from ..context import utcnow
from ..errors import Problem, ReadModelUnavailable, field_error
from ..state import resources
from ..validation import path_uuid

MAX_LIFETIME = timedelta(days=3 * 365)

_LIST = """
SELECT k.id, k.name, k.prefix, k.scopes, k.org_id, k.user_id, u.email AS user_email, k.created_at, k.expires_at,
       k.revoked_at, k.requests_per_minute, k.max_concurrent_requests
FROM rm.api_keys k LEFT JOIN rm.users u ON u.id = k.user_id
WHERE k.org_id = $1 AND ($2::uuid IS NULL OR k.user_id = $2::uuid) AND ($3::uuid IS NULL OR k.id = $3::uuid)
ORDER BY k.created_at DESC, k.id
"""
# Minute buckets of the FinOps usage tables (day buckets once minutes are pruned): no write per request.
_LAST_USED = """
SELECT api_key_id, max(at) AS last_used_at FROM (
    SELECT api_key_id, max(bucket_minute) AS at FROM finops.usage_minute
     WHERE org_id = $1 AND api_key_id = ANY($2::text[]) GROUP BY api_key_id
    UNION ALL
    SELECT api_key_id, max(day)::timestamptz AS at FROM finops.usage_daily
     WHERE org_id = $1 AND api_key_id = ANY($2::text[]) GROUP BY api_key_id
) used GROUP BY api_key_id
"""


def _sees_all(principal: Principal) -> bool:
    return principal.org_role in AUDIT_ROLES


async def _last_used(pool: asyncpg.Pool, org_id: str, key_ids: list[str]) -> dict[str, object]:
    if not key_ids:
        return {}
    try:
        rows = await db.fetch(pool, _LAST_USED, org_id, key_ids)
    except (ReadModelUnavailable, asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return {}  # FinOps has not created its tables here: no usage known
    return {r["api_key_id"]: r["last_used_at"] for r in rows}


async def _list(request: Request, principal: Principal, org_id: str, key_id: str | None = None) -> list[ApiKeyDetail]:
    pool = resources(request).pool
    owner = None if _sees_all(principal) else principal.user_id
    rows = await db.fetch(pool, _LIST, org_id, owner, key_id)
    used = await _last_used(pool, org_id, [str(r["id"]) for r in rows])
    now = utcnow()
    return [
        ApiKeyDetail(id=str(r["id"]), name=r["name"], prefix=r["prefix"], key_prefix=r["prefix"],
                     scopes=list(r["scopes"]), organization_id=str(r["org_id"]), user_id=str(r["user_id"]),
                     user_email=r["user_email"], created_at=r["created_at"], expires_at=r["expires_at"],
                     revoked_at=r["revoked_at"], last_used_at=used.get(str(r["id"])),  # type: ignore[arg-type]
                     requests_per_minute=r["requests_per_minute"],
                     max_concurrent_requests=r["max_concurrent_requests"],
                     is_active=r["revoked_at"] is None and (r["expires_at"] is None or r["expires_at"] > now))
        for r in rows
    ]


@post("/api_keys", status_code=HTTP_201_CREATED, tags=["api keys"],
      summary="Create an API key bound to your current organization; the key is returned once")
async def create_api_key(request: Request, data: ApiKeyCreate, principal: Principal, org_id: str) -> ApiKeyIssued:
    require_user(principal)
    res = resources(request)
    held = scopes_for_role(principal.org_role)
    wanted = tuple(s for s in SCOPES if s in (set(data.scopes) if data.scopes is not None else held))
    lacking = sorted(set(wanted) - held)
    if lacking:
        raise Problem(403, f"scopes: your role ({principal.org_role}) does not hold {', '.join(lacking)}",
                      type_="forbidden", errors=[{"field": "scopes", "message": "more than your role holds"}])
    if not wanted:
        raise field_error("scopes", "at least one scope is required")
    expires_at = data.expires_at
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise field_error("expires_at", "must include a time zone (e.g. 2030-01-01T00:00:00Z)")
        if expires_at <= utcnow() or expires_at > utcnow() + MAX_LIFETIME:
            raise field_error("expires_at", "must be in the future and at most 3 years away")
    limits = (data.requests_per_minute, data.max_concurrent_requests)
    if limits != (None, None) and principal.org_role not in AUDIT_ROLES:
        raise Problem(403, "only owners and admins set a key's own limits", type_="forbidden",
                      errors=[{"field": "requests_per_minute" if limits[0] is not None else "max_concurrent_requests",
                               "message": "owners and admins only"}])
    raw_key = generate_api_key()
    key_id = new_id()
    event = ApiKeyCreatedEvent(
        **envelope(request, principal, org_id), key_id=key_id, name=data.name.strip() or data.name,
        prefix=visible_prefix(raw_key), key_hash=hash_api_key(raw_key), user_id=principal.user_id, scopes=wanted,
        expires_at=expires_at, requests_per_minute=limits[0], max_concurrent_requests=limits[1])
    seq = await append_in_scope(res.js, event, await load_scope(res.js, aggregate_scope(org_id, "api_key", key_id)))
    res.keycache.add_from_event(event)
    await settled(request, seq)
    return ApiKeyIssued(id=key_id, name=event.name, key=raw_key, prefix=event.prefix, created_at=event.occurred_at,
                        scopes=list(event.scopes), organization_id=org_id, expires_at=expires_at,
                        requests_per_minute=limits[0], max_concurrent_requests=limits[1])


@get("/api_keys", tags=["api keys"],
     summary="API keys of the current organization (yours; every key for owners and admins), no secrets")
async def list_api_keys(request: Request, principal: Principal, org_id: str) -> list[ApiKeyDetail]:
    require_user(principal)
    return await _list(request, principal, org_id)


async def _owned_key(request: Request, principal: Principal, org_id: str, key_id: str):
    """The key's events, when the caller may manage it; 404 for another org's or another person's key."""
    scope = await load_scope(resources(request).js, aggregate_scope(org_id, "api_key", key_id))
    created = next((e for e in scope.events if isinstance(e, ApiKeyCreatedEvent)), None)
    if created is None or (created.user_id != principal.user_id and not _sees_all(principal)):
        raise Problem(404, "no such API key", type_="not-found")
    return scope


@put("/api_keys/{key_id:str}", tags=["api keys"], summary="Rename an API key")
async def rename_api_key(request: Request, key_id: str, data: ApiKeyRename, principal: Principal,
                         org_id: str) -> ApiKeyDetail:
    require_user(principal)
    key_id = path_uuid("key_id", key_id)
    res = resources(request)

    async def attempt() -> int:
        scope = await _owned_key(request, principal, org_id, key_id)
        renamed = ApiKeyRenamed(**envelope(request, principal, org_id), key_id=key_id, name=data.name.strip() or data.name)
        return await append_in_scope(res.js, renamed, scope)

    await settled(request, await with_retries(attempt, what="the API key"))
    found = await _list(request, principal, org_id, key_id)
    if not found:
        raise Problem(404, "no such API key", type_="not-found")
    return found[0]


@delete("/api_keys/{key_id:str}", status_code=HTTP_204_NO_CONTENT, tags=["api keys"],
        summary="Revoke an API key (idempotent); every API process refuses it within a second")
async def revoke_api_key(request: Request, key_id: str, principal: Principal, org_id: str) -> None:
    require_user(principal)
    key_id = path_uuid("key_id", key_id)
    res = resources(request)

    async def attempt() -> int:
        scope = await _owned_key(request, principal, org_id, key_id)
        if any(isinstance(e, ApiKeyRevoked) for e in scope.events):
            return 0
        return await append_in_scope(res.js, ApiKeyRevoked(**envelope(request, principal, org_id), key_id=key_id), scope)

    seq = await with_retries(attempt, what="the API key")
    res.keycache.revoke(key_id)
    await settled(request, seq)


route_handlers = [create_api_key, list_api_keys, rename_api_key, revoke_api_key]
