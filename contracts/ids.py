"""Id helpers. Ids are UUID strings on the wire; derived ids make redelivery harmless."""

from __future__ import annotations

import uuid

# Fixed namespace: derived ids must be identical across processes and versions.
_NAMESPACE = uuid.UUID("5b7f4d1e-9a53-4c1e-8f0e-6f2a1c9d0b11")

GLOBAL_ORG = "global"
SYSTEM_ORG = "system"


def new_id() -> str:
    return str(uuid.uuid4())


def derived_id(*parts: str) -> str:
    """A deterministic id from its causes, e.g. ``derived_id(command_id, "instance.ready")``.

    An event appended while handling a command gets an id derived from the command id, so a
    redelivered command produces the same ``Nats-Msg-Id`` and the server drops the duplicate.
    """
    return str(uuid.uuid5(_NAMESPACE, ":".join(parts)))


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        return False
    return True
