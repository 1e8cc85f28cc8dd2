"""Per-request facts that end up in message envelopes: correlation id, idempotency key, clock."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from litestar import Request

from contracts.ids import new_id

from .errors import field_error

_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9_\-.:]{1,128}$")


def correlation_id(request: Request) -> str:
    """The request id (a valid ``X-Request-Id`` or a generated one, see middleware)."""
    return request.scope.get("state", {}).get("request_id") or new_id()


def idempotency_key(request: Request) -> str | None:
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    if not _IDEMPOTENCY_KEY.match(raw):
        raise field_error("Idempotency-Key", "must be 1-128 characters among A-Z a-z 0-9 _ - . :", status_code=400,
                          type_="bad-header")
    return raw


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def client_ip(request: Request) -> str:
    client = request.client
    return client.host if client else ""
