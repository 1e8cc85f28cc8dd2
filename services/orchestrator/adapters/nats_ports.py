"""Ports over NATS JetStream: the last heartbeat of an instance, and command publishing."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import structlog
from nats.js import JetStreamContext

from contracts import codec, headers, subjects
from contracts.commands import Command
from services.runtime import natsio

from ..ports import ObservedHeartbeat

log = structlog.get_logger(__name__)

HEARTBEATS_STREAM = "HEARTBEATS"
COMMANDS_STREAM = "COMMANDS"

_FRACTION = re.compile(r"\.(\d+)")


def parse_stream_time(value: str | None) -> datetime | None:
    """``Nats-Time-Stamp`` (RFC 3339, nanoseconds, ``Z``) as an aware datetime; None if absent or odd."""
    if not value:
        return None
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value.strip()).replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class JetStreamHeartbeatReader:
    """The last heartbeat on ``hb.<org>.<instance>``, read with a direct get (no consumer)."""

    def __init__(self, js: JetStreamContext, stream: str = HEARTBEATS_STREAM):
        self._js = js
        self._stream = stream

    async def last(self, org_id: str, instance_id: str) -> ObservedHeartbeat | None:
        stored = await natsio.last_message(self._js, self._stream, subjects.heartbeat_subject(org_id, instance_id))
        if stored is None:
            return None
        try:
            heartbeat = codec.decode_heartbeat(stored.data)
        except codec.DecodeError as exc:
            log.warning("orchestrator.bad_heartbeat", instance_id=instance_id, error=str(exc))
            return None
        received_at = parse_stream_time(stored.time) or heartbeat.sent_at
        return ObservedHeartbeat(heartbeat, received_at)


class JetStreamCommandPublisher:
    """Publishes a command to COMMANDS with its envelope headers; ``Nats-Msg-Id`` is the command id."""

    def __init__(self, js: JetStreamContext, timeout_s: float = 5.0):
        self._js = js
        self._timeout_s = timeout_s

    async def publish(self, command: Command) -> None:
        await self._js.publish(
            codec.command_subject_for(command),
            codec.encode(command),
            timeout=self._timeout_s,
            stream=COMMANDS_STREAM,
            headers=headers.envelope_headers(command),
        )
