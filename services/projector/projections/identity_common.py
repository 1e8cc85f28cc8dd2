"""Checks shared by the identity projections: ids must be UUIDs, tenants must agree."""

from __future__ import annotations

from contracts.events import Event

from .action_log import uuid_or_none


class Refused(Exception):
    """The event cannot be projected (ids that are not UUIDs, an org mismatch): logged as failed."""


def require_uuid(value: str | None, what: str) -> str:
    canonical = uuid_or_none(value)
    if canonical is None:
        raise Refused(f"{what} must be a UUID")
    return canonical


def same_org(event: Event, organization_id: str) -> str:
    """The organisation an event names, which must be the one it is filed under."""
    org = require_uuid(organization_id, "organization id")
    if org != uuid_or_none(event.org_id):
        raise Refused("event filed under another organisation")
    return org
