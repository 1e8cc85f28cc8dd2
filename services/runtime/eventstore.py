"""Append and read domain events on the EVENTS stream, with per-aggregate optimistic concurrency.

Appends carry ``Nats-Expected-Last-Subject-Sequence`` scoped to the aggregate's subjects
(``evt.<org>.<aggregate>.<id>.*``, nats-server >= 2.11), so a writer holding a stale view
(a racing or paused orchestrator) is refused instead of overwriting history.
"""

from __future__ import annotations

import msgspec
from nats.js import JetStreamContext

from contracts import codec, headers
from contracts.events import Event

from .natsio import StoredMessage, is_wrong_last_sequence, read_subject

EVENTS_STREAM = "EVENTS"


class ConcurrencyConflict(Exception):
    """Someone appended to this aggregate since it was read: re-read and decide again."""


class LoadedEvent(msgspec.Struct, frozen=True):
    seq: int
    subject: str
    event: Event
    time: str | None = None


class JetStreamEventStore:
    def __init__(self, js: JetStreamContext, stream: str = EVENTS_STREAM, timeout_s: float = 5.0):
        self._js = js
        self._stream = stream
        self._timeout_s = timeout_s

    async def load(self, aggregate_filter: str, *, from_seq: int = 1) -> list[LoadedEvent]:
        stored: list[StoredMessage] = await read_subject(self._js, self._stream, aggregate_filter, from_seq=from_seq)
        return [LoadedEvent(m.seq, m.subject, codec.decode_event(m.data), m.time) for m in stored]

    async def append(self, event: Event, *, expected_last_seq: int | None) -> int:
        """Append one event; returns its stream sequence.

        ``expected_last_seq`` is the last sequence of the aggregate as the caller saw it
        (0 for a new aggregate); ``None`` skips the check (only for events whose order does
        not matter). A duplicate ``Nats-Msg-Id`` inside the window returns the original
        sequence without storing anything.
        """
        hdrs = headers.envelope_headers(event)
        if expected_last_seq is not None:
            hdrs[headers.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(expected_last_seq)
            hdrs[headers.EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT] = codec.aggregate_filter_for(event)
        try:
            ack = await self._js.publish(
                codec.event_subject_for(event),
                codec.encode(event),
                timeout=self._timeout_s,
                stream=self._stream,
                headers=hdrs,
            )
        except Exception as exc:
            if is_wrong_last_sequence(exc):
                raise ConcurrencyConflict(str(exc)) from exc
            raise
        return ack.seq
