"""Header names we set or depend on. Values are validated: classic nats-py does not reject CR/LF."""

from __future__ import annotations

MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
EXPECTED_STREAM = "Nats-Expected-Stream"

CORRELATION_ID = "Inventiv-Correlation-Id"
CAUSATION_ID = "Inventiv-Causation-Id"
ACTOR = "Inventiv-Actor"
ORG = "Inventiv-Org"
MESSAGE_TYPE = "Inventiv-Type"
SCHEMA = "Inventiv-Schema"

# JetStream error code for a failed expected-last-sequence check (optimistic concurrency).
WRONG_LAST_SEQUENCE_ERR_CODE = 10071


class UnsafeHeaderValue(ValueError):
    pass


def safe_header_value(value: str, *, max_len: int = 256) -> str:
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise UnsafeHeaderValue("header value must be a non-empty string of at most %d characters" % max_len)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise UnsafeHeaderValue("header value contains control characters")
    return value


def envelope_headers(message) -> dict[str, str]:
    """Headers derived from a command or event Envelope."""
    from .base import SCHEMA_VERSION  # local import keeps this module import-light

    return {
        MSG_ID: safe_header_value(message.id),
        CORRELATION_ID: safe_header_value(message.correlation_id),
        CAUSATION_ID: safe_header_value(message.causation_id),
        ACTOR: safe_header_value(message.actor),
        ORG: safe_header_value(message.org_id),
        MESSAGE_TYPE: safe_header_value(type(message).__struct_config__.tag),
        SCHEMA: str(SCHEMA_VERSION),
    }
