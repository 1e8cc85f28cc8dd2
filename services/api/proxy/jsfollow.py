"""Follow domain events from a stream position, in order, with no gap and no loss on reconnect.

The in-memory views of the API (key cache, routing table) are rebuilt from a read-model
snapshot taken at a known checkpoint, then follow the EVENTS stream from ``checkpoint + 1``
with an *ordered* JetStream push consumer. Compared with a core subscription plus catch-up:

- there is no window between "load" and "subscribe" (the consumer starts at the exact
  sequence the snapshot ends at);
- events published while this process was cut off from NATS are not lost: the ordered
  consumer notices missed idle heartbeats (2 x ``idle_heartbeat_s``) and recreates itself
  from the last sequence it delivered, so a revocation made during a partition is applied
  as soon as the connection is back;
- every message carries its stream sequence, so nothing is applied twice or out of order.

Handlers run one message at a time, in stream order, on the subscription's task.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import api

from contracts import codec

log = structlog.get_logger(__name__)

Handler = Callable[[int, object], None]


def js_metadata(reply: str | None) -> tuple[int, int, int] | None:
    """(stream sequence, timestamp ns, num pending) from a JetStream delivery subject, or None."""
    if not reply:
        return None
    try:
        tokens = Msg.Metadata._get_metadata_fields(reply)
    except Exception:
        return None
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        return int(tokens[5]), int(tokens[7]), int(tokens[8])
    # v2: $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>[.<token>]
    return int(tokens[7]), int(tokens[9]), int(tokens[10])


class EventFollower:
    """An ordered consumer over ``filter_subjects`` of a stream, decoding domain events."""

    def __init__(
        self,
        nc: NATS,
        *,
        name: str,
        filter_subjects: list[str],
        handler: Handler,
        stream: str = "EVENTS",
        idle_heartbeat_s: float = 1.0,
        decode: Callable[[bytes], object] = codec.decode_event,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._name = name
        self._filters = filter_subjects
        self._handler = handler
        self._stream = stream
        self._idle_heartbeat_s = idle_heartbeat_s
        self._decode = decode
        self._check_subject = decode is codec.decode_event
        self._sub = None
        self.last_seq = 0
        self.applied = 0
        # What the server still had pending for this consumer when it delivered the last message
        # handled: 0 means everything delivered so far has been handled.
        self._pending_after_last: int | None = None

    @staticmethod
    def _on_its_subject(event, subject: str) -> bool:
        try:
            return codec.event_subject_for(event) == subject
        except Exception:
            return False

    async def _on_msg(self, msg: Msg) -> None:
        meta = js_metadata(msg.reply)
        seq = meta[0] if meta else 0
        if meta:
            self._pending_after_last = meta[2]
        if seq and seq <= self.last_seq:
            return  # a replay after a consumer reset: already applied
        try:
            event = self._decode(msg.data)
        except Exception as exc:  # a newer event type or a corrupt message: skip it, keep following
            log.warning("follow.undecodable", follower=self._name, subject=msg.subject, seq=seq, error=str(exc))
            event = None
        else:
            if self._check_subject and not self._on_its_subject(event, msg.subject):
                # Same rule as the projector: a payload that does not belong on the subject it was
                # stored on (the subject is what NATS permissions authorise) is not applied.
                log.warning("follow.subject_mismatch", follower=self._name, subject=msg.subject, seq=seq)
                event = None
        if event is not None:
            try:
                self._handler(seq, event)
            except Exception:
                log.exception("follow.handler_failed", follower=self._name, subject=msg.subject, seq=seq)
        if seq:
            self.last_seq = seq
        self.applied += 1

    async def start(self, from_seq: int, *, catch_up_timeout_s: float = 30.0) -> None:
        """Subscribe from ``from_seq`` and return once everything already stored was applied."""
        self.last_seq = max(0, from_seq - 1)
        config = api.ConsumerConfig(filter_subjects=list(self._filters), inactive_threshold=300.0)
        if from_seq <= 1:
            policy = api.DeliverPolicy.ALL
        else:
            policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = from_seq
        self._sub = await self._js.subscribe(
            self._filters[0],
            stream=self._stream,
            cb=self._on_msg,
            ordered_consumer=True,
            idle_heartbeat=self._idle_heartbeat_s,
            deliver_policy=policy,
            config=config,
        )
        await self._wait_caught_up(catch_up_timeout_s)

    async def _wait_caught_up(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                info = await self._sub.consumer_info()
            except Exception as exc:  # the ordered consumer may be being recreated
                info = None
                log.debug("follow.consumer_info_failed", follower=self._name, error=str(exc))
            # Not the delivered *stream* sequence: a filtered consumer moves it past messages it
            # skipped, which this follower never sees (that waited out the whole timeout).
            if info is not None and info.num_pending == 0 and (
                (info.delivered.consumer_seq or 0) == 0 or self._pending_after_last == 0
            ):
                return
            if loop.time() > deadline:
                log.warning("follow.catch_up_slow", follower=self._name, last_seq=self.last_seq)
                return
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:
                pass
