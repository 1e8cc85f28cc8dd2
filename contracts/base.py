"""Base Structs shared by every command and event.

Tags are explicit, stable strings (``"instance.ready"``), never class names, so stored
history survives refactors. Fields are only ever added with defaults; never renamed.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

SCHEMA_VERSION = 1


class Envelope(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=False):
    """Fields every command and event carries.

    - ``id``: unique id of this message; also its ``Nats-Msg-Id``.
    - ``org_id``: the tenant, or ``"global"`` for objects above tenants (users).
    - ``actor``: who caused it: ``user:<id>``, ``api_key:<id>`` or ``system:<service>``.
    - ``correlation_id``: shared by everything that stems from one user request.
    - ``causation_id``: the id of the message that directly caused this one.
    """

    id: str
    org_id: str
    actor: str
    correlation_id: str
    causation_id: str
    occurred_at: datetime


class Event(Envelope, frozen=True, kw_only=True):
    """A fact appended to the EVENTS stream (see ``contracts.events``)."""
