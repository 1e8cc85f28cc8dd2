"""``/api_keys``: create (secret shown once), list (no secrets), revoke. Signed-in users only.

Creation and revocation are events on the key's aggregate (``evt.<org>.api_key.<id>.*``): the
projector folds them into ``rm.api_keys``, every API process's key cache applies them. The
creating process also feeds its own cache directly so the key works on the very next request.
Keys are management of credentials: an API key cannot mint or revoke keys (a leaked key must
not be able to multiply itself).
"""

from __future__ import annotations

from litestar import Request, delete, get, post
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from contracts import subjects
from contracts.events import ApiKeyCreated as ApiKeyCreatedEvent
from contracts.events import ApiKeyRevoked
from contracts.ids import new_id
from services.api.keys import generate_api_key, hash_api_key, visible_prefix
from services.runtime.eventstore import ConcurrencyConflict

from .. import db
from ..auth.principal import Principal, require_user
from ..context import correlation_id, utcnow
from ..errors import Problem
from ..schemas import ApiKeyCreated, ApiKeyCreateRequest, ApiKeyView
from ..state import resources
from ..validation import path_uuid

DEFAULT_SCOPES = ("inference", "manage")


@post("/api_keys", status_code=HTTP_201_CREATED, tags=["api keys"],
      summary="Create an API key bound to your current organization; the key is returned once")
async def create_api_key(request: Request, data: ApiKeyCreateRequest, principal: Principal,
                         org_id: str) -> ApiKeyCreated:
    require_user(principal)
    res = resources(request)
    raw_key = generate_api_key()
    request_id = correlation_id(request)
    event = ApiKeyCreatedEvent(
        id=new_id(), org_id=org_id, actor=principal.actor, correlation_id=request_id, causation_id=request_id,
        occurred_at=utcnow(), key_id=new_id(), name=data.name.strip() or data.name, prefix=visible_prefix(raw_key),
        key_hash=hash_api_key(raw_key), user_id=principal.user_id, scopes=DEFAULT_SCOPES,
    )
    await res.store.append(event, expected_last_seq=0)
    res.keycache.add_from_event(event)
    return ApiKeyCreated(id=event.key_id, name=event.name, key=raw_key, prefix=event.prefix,
                         created_at=event.occurred_at, scopes=list(event.scopes), organization_id=org_id)


@get("/api_keys", tags=["api keys"], summary="Your API keys in the current organization (no secrets)")
async def list_api_keys(request: Request, principal: Principal, org_id: str) -> list[ApiKeyView]:
    require_user(principal)
    rows = await db.fetch(
        resources(request).pool,
        """SELECT id, name, prefix, scopes, org_id, created_at, expires_at, revoked_at FROM rm.api_keys
           WHERE org_id = $1 AND user_id = $2 ORDER BY created_at DESC, id""",
        org_id, principal.user_id,
    )
    return [
        ApiKeyView(id=str(r["id"]), name=r["name"], prefix=r["prefix"], key_prefix=r["prefix"],
                   scopes=list(r["scopes"]), organization_id=str(r["org_id"]), created_at=r["created_at"],
                   expires_at=r["expires_at"], revoked_at=r["revoked_at"], is_active=r["revoked_at"] is None)
        for r in rows
    ]


@delete("/api_keys/{key_id:str}", status_code=HTTP_204_NO_CONTENT, tags=["api keys"],
        summary="Revoke one of your API keys (idempotent)")
async def revoke_api_key(request: Request, key_id: str, principal: Principal, org_id: str) -> None:
    require_user(principal)
    key_id = path_uuid("key_id", key_id)
    res = resources(request)
    aggregate = subjects.aggregate_filter(org_id, "api_key", key_id)
    for _attempt in range(3):
        history = await res.store.load(aggregate)
        created = next((e.event for e in history if isinstance(e.event, ApiKeyCreatedEvent)), None)
        # Another org's key, or another user's: the same answer as a key that does not exist.
        if created is None or created.user_id != principal.user_id:
            raise Problem(404, "no such API key", type_="not-found")
        if any(isinstance(e.event, ApiKeyRevoked) for e in history):
            return None
        request_id = correlation_id(request)
        event = ApiKeyRevoked(id=new_id(), org_id=org_id, actor=principal.actor, correlation_id=request_id,
                              causation_id=request_id, occurred_at=utcnow(), key_id=key_id)
        try:
            await res.store.append(event, expected_last_seq=history[-1].seq)
        except ConcurrencyConflict:
            continue
        revoke_locally = getattr(res.keycache, "revoke", None)
        if callable(revoke_locally):
            revoke_locally(key_id)
        return None
    raise Problem(409, "the key changed concurrently; retry", type_="conflict")


route_handlers = [create_api_key, list_api_keys, revoke_api_key]
