"""Checks on values that reach SQL, NATS subjects or headers, before any query or publish."""

from __future__ import annotations

import uuid

from .errors import field_error


def path_uuid(name: str, value: str) -> str:
    """The canonical form of a UUID path/query parameter, or 422 naming it."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise field_error(name, "must be a UUID") from None
    if len(value) not in (32, 36):  # refuse the {braced} and urn: spellings uuid.UUID tolerates
        raise field_error(name, "must be a UUID")
    return str(parsed)


def maybe_uuid(value: str) -> str | None:
    try:
        parsed = uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return None
    return str(parsed) if len(value) in (32, 36) else None
