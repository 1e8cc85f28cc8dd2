"""Publishing commands on COMMANDS: envelope headers, PubAck, and an honest answer when unsure."""

from __future__ import annotations

import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import PubAck

from contracts import codec, headers
from contracts.commands import Command

from . import metrics
from .errors import Problem

log = structlog.get_logger(__name__)

COMMANDS_STREAM = "COMMANDS"


async def publish_command(js: JetStreamContext, command: Command, *, timeout_s: float) -> PubAck:
    """Publish and wait for JetStream's acknowledgement (the command is then durable).

    The ``Nats-Msg-Id`` is the command id, so a retry of the same command inside the stream's
    duplicate window is stored once; ``PubAck.duplicate`` tells which happened.
    """
    try:
        ack = await js.publish(
            codec.command_subject_for(command),
            codec.encode(command),
            timeout=timeout_s,
            stream=COMMANDS_STREAM,
            headers=headers.envelope_headers(command),
        )
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError,
            nats.js.errors.NoStreamResponseError, nats.js.errors.APIError, nats.errors.OutboundBufferLimitError) as exc:
        # Ambiguous: it may have been stored. The same Idempotency-Key makes the retry safe.
        log.warning("api.command_publish_failed", command_id=command.id, error=type(exc).__name__)
        raise Problem(503, "the command could not be confirmed; retry with the same Idempotency-Key",
                      type_="command-not-confirmed", headers={"Retry-After": "1"}) from exc
    metrics.COMMANDS_PUBLISHED.labels(type(command).__struct_config__.tag, str(bool(ack.duplicate)).lower()).inc()
    return ack


async def stored_command(js: JetStreamContext, seq: int) -> Command | None:
    try:
        raw = await js.get_msg(COMMANDS_STREAM, seq=seq, direct=True)
        return codec.decode_command(raw.data or b"")
    except Exception:  # noqa: BLE001 - only used to compare a duplicate; absence means "cannot tell"
        return None
