"""The only place NATS subject strings are built and parsed.

Every value put into a subject is checked: a token containing ``.``, ``*``, ``>``,
whitespace or control characters could widen a filter or address another tenant.
"""

from __future__ import annotations

import re

_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9_\-]{1,128}$")

COMMANDS_PREFIX = "cmd"
EVENTS_PREFIX = "evt"
HEARTBEATS_PREFIX = "hb"
USAGE_PREFIX = "usage"
TICKS_PREFIX = "cmd.fleet"
# Core NATS, no stream: telemetry between the API processes (per-key limit reports).
PROXY_LIMITS_PREFIX = "proxy.limits"
PROXY_LIMITS_ALL = f"{PROXY_LIMITS_PREFIX}.*"


class UnsafeSubjectToken(ValueError):
    """A value that must not be used as a NATS subject token."""


def token(value: str) -> str:
    if not isinstance(value, str) or not _SAFE_TOKEN.match(value):
        raise UnsafeSubjectToken(f"unsafe subject token: {value!r}")
    return value


def command_subject(command_type: str) -> str:
    """``instance.provision`` -> ``cmd.instance.provision``."""
    return ".".join([COMMANDS_PREFIX, *(token(part) for part in command_type.split("."))])


def event_subject(org_id: str, aggregate: str, aggregate_id: str, event_type: str) -> str:
    """``evt.<org>.<aggregate>.<id>.<type>``; ``event_type`` is the tag without its aggregate prefix."""
    return ".".join([EVENTS_PREFIX, token(org_id), token(aggregate), token(aggregate_id), token(event_type)])


def aggregate_filter(org_id: str, aggregate: str, aggregate_id: str) -> str:
    """Every event of one aggregate: the optimistic-concurrency scope."""
    return ".".join([EVENTS_PREFIX, token(org_id), token(aggregate), token(aggregate_id), "*"])


def org_events_filter(org_id: str) -> str:
    return ".".join([EVENTS_PREFIX, token(org_id), ">"])


def heartbeat_subject(org_id: str, instance_id: str) -> str:
    return ".".join([HEARTBEATS_PREFIX, token(org_id), token(instance_id)])


def usage_subject(org_id: str) -> str:
    return ".".join([USAGE_PREFIX, token(org_id)])


def proxy_limits_subject(process_id: str) -> str:
    """``proxy.limits.<process>``: one API process's per-key limit reports."""
    return ".".join([PROXY_LIMITS_PREFIX, token(process_id)])


class ParsedEventSubject(tuple):
    __slots__ = ()

    def __new__(cls, org_id: str, aggregate: str, aggregate_id: str, event_type: str):
        return super().__new__(cls, (org_id, aggregate, aggregate_id, event_type))

    org_id = property(lambda self: self[0])
    aggregate = property(lambda self: self[1])
    aggregate_id = property(lambda self: self[2])
    event_type = property(lambda self: self[3])


def parse_event_subject(subject: str) -> ParsedEventSubject:
    parts = subject.split(".")
    if len(parts) != 5 or parts[0] != EVENTS_PREFIX:
        raise UnsafeSubjectToken(f"not an event subject: {subject!r}")
    return ParsedEventSubject(*(token(p) for p in parts[1:]))


def parse_heartbeat_subject(subject: str) -> tuple[str, str]:
    """``hb.<org>.<instance>`` -> (org, instance). The instance id comes from here, never the payload."""
    parts = subject.split(".")
    if len(parts) != 3 or parts[0] != HEARTBEATS_PREFIX:
        raise UnsafeSubjectToken(f"not a heartbeat subject: {subject!r}")
    return token(parts[1]), token(parts[2])
