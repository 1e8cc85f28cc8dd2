"""Small pieces every identity route uses to write: envelopes, refusals as problems,
read-your-writes, and revoking a member's API keys."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Request

from contracts import codec, subjects
from contracts.events import ApiKeyCreated, ApiKeyRevoked
from contracts.ids import new_id
from services.runtime.eventstore import EVENTS_STREAM, ConcurrencyConflict
from services.runtime.natsio import read_subject

from ..context import correlation_id, utcnow
from ..errors import Problem
from ..state import resources
from .identity_store import append_in_scope, load_scope, settle
from .membership_rules import Refusal
from .principal import Principal
from .runtime import identity

log = structlog.get_logger(__name__)


async def live_keys_of(js, org_id: str, user_id: str) -> list[str]:
    created: dict[str, bool] = {}
    for message in await read_subject(js, EVENTS_STREAM, f"evt.{subjects.token(org_id)}.api_key.*.*"):
        try:
            event = codec.decode_event(message.data)
        except codec.DecodeError:
            continue
        if isinstance(event, ApiKeyCreated) and event.user_id == user_id:
            created.setdefault(event.key_id, True)
        elif isinstance(event, ApiKeyRevoked) and event.key_id in created:
            created[event.key_id] = False
    return [key_id for key_id, live in created.items() if live]


def envelope(request: Request, principal: Principal | None, org_id: str, *, actor: str | None = None) -> dict[str, Any]:
    request_id = correlation_id(request)
    return dict(id=new_id(), org_id=org_id, actor=actor or (principal.actor if principal else "system:api"),
                correlation_id=request_id, causation_id=request_id, occurred_at=utcnow())


def problem(refusal: Refusal) -> Problem:
    errors = [{"field": refusal.field_name, "message": refusal.detail}] if refusal.field_name else None
    return Problem(refusal.status, refusal.detail, type_=refusal.type_, errors=errors)


async def settled(request: Request, seq: int) -> None:
    """Answer once the read model shows the write (bounded wait; see ``identity_store.settle``)."""
    await settle(resources(request).pool, seq, identity(request).settings.read_your_writes_s)


async def revoke_member_keys(request: Request, principal: Principal | None, org_id: str, user_id: str,
                             *, actor: str | None = None) -> int:
    """Revoke every live API key ``user_id`` holds in ``org_id``; returns the last sequence written (0: none).

    Keys are found in the organisation's key events (not the read model, which may not show a
    key created a moment ago) and each is revoked on its own aggregate (idempotent: an already
    revoked key is skipped), so a retry after a crash finishes the job.
    """
    res = resources(request)
    last = 0
    for key_id in await live_keys_of(res.js, org_id, user_id):
        for _attempt in range(3):
            scope = await load_scope(res.js, subjects.aggregate_filter(org_id, "api_key", key_id))
            if not any(isinstance(e, ApiKeyCreated) for e in scope.events) or any(
                    isinstance(e, ApiKeyRevoked) for e in scope.events):
                break
            try:
                last = await append_in_scope(res.js, ApiKeyRevoked(**envelope(request, principal, org_id, actor=actor),
                                                                   key_id=key_id), scope)
            except ConcurrencyConflict:
                continue
            res.keycache.revoke(key_id)
            break
    return last
