"""Live events over SSE: one NATS feed per API process, fanned out in memory by organisation.

- :class:`EventHub` holds ONE ordered consumer on ``evt.>`` (never one per browser). It starts
  right after the stream's last sequence at startup, so ``position`` (the last sequence it has
  dispatched) always tells exactly which events a new subscriber will get live: all > position.
- Each message is rendered once into SSE bytes (``id: <stream seq>``, ``event: <type tag>``,
  JSON ``data`` with an allowlist of fields: never password or key hashes, never upstream URLs)
  and offered to that org's subscribers. A subscriber's queue is bounded; one that overflows
  is closed (the client reconnects with ``Last-Event-ID`` and misses nothing).
- The first message, ``hello``, has the position the stream starts from as its ``id``, so a
  client that reconnects before any event arrived still resumes from where it was.
- Resume: a subscriber registers first (live events start queueing), then the events of its
  org in ``(Last-Event-ID, position]`` are replayed by a short-lived ordered consumer filtered
  on ``evt.<org>.>``, then the queue drains; sequences ``<=`` the last one sent are skipped,
  so the hand-over has no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, AsyncIterator, Awaitable, Callable

import msgspec
import structlog
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts import codec, headers, subjects
from contracts.events import event_tag
from services.orchestrator.domain import lifecycle
from services.runtime.eventstore import EVENTS_STREAM
from services.runtime.natsio import stream_last_seq

from . import metrics

log = structlog.get_logger(__name__)

_TYPE_TAG = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
_json = msgspec.json.Encoder(decimal_format="string")

# Event fields safe to show to every member of the event's organisation.
_SAFE_FIELDS = (
    "reason_code", "phase", "message", "name", "slug", "prefix", "role", "user_id", "key_id",
    "command_id", "command_type", "model_name", "provider_code", "instance_type_code",
)


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int
    org_id: str
    aggregate: str
    aggregate_id: str
    type: str
    data: bytes
    """The complete SSE message, ready to write."""


def _status_after(tag: str, event: Any) -> str | None:
    if tag == "instance.failed":
        return getattr(event, "status", None)
    target = lifecycle.TRANSITIONS.get(tag, (None, None))[1]
    return target if target and target != lifecycle.SAME else None


def render_frame(subject: str, seq: int, data: bytes, msg_headers: dict[str, str] | None) -> Frame | None:
    """The SSE message for one stored event; ``None`` for a subject that is not an event's."""
    try:
        parsed = subjects.parse_event_subject(subject)
    except subjects.UnsafeSubjectToken:
        return None
    event = None
    try:
        event = codec.decode_event(data)
    except codec.DecodeError:
        pass  # an event type newer than this process: still announce it, with what the subject says
    tag = event_tag(event) if event is not None else (msg_headers or {}).get(headers.MESSAGE_TYPE, "")
    if not _TYPE_TAG.match(tag or ""):
        tag = f"{parsed.aggregate}.{parsed.event_type}"
    payload: dict[str, Any] = {
        "seq": seq,
        "type": tag,
        "org_id": parsed.org_id,
        "aggregate": parsed.aggregate,
        "aggregate_id": parsed.aggregate_id,
        "instance_id": parsed.aggregate_id if parsed.aggregate == "instance" else None,
        "status": None,
        "occurred_at": None,
    }
    if event is not None:
        payload["id"] = event.id
        payload["status"] = _status_after(tag, event) if parsed.aggregate == "instance" else None
        occurred: datetime = event.occurred_at
        payload["occurred_at"] = occurred
        payload["actor"] = event.actor
        payload["correlation_id"] = event.correlation_id
        for name in _SAFE_FIELDS:
            if hasattr(event, name):
                payload[name] = getattr(event, name)
    body = b"id: %d\nevent: %s\ndata: %s\n\n" % (seq, tag.encode(), _json.encode(payload))
    return Frame(seq, parsed.org_id, parsed.aggregate, parsed.aggregate_id, tag, body)


def comment(text: str) -> bytes:
    return b": " + text.encode() + b"\n\n"


def named_event(name: str, payload: dict[str, Any], event_id: int | None = None) -> bytes:
    """A control message; without ``event_id`` it does not move the client's Last-Event-ID."""
    head = b"id: %d\n" % event_id if event_id is not None else b""
    return head + b"event: %s\ndata: %s\n\n" % (name.encode(), _json.encode(payload))


class TooManyStreams(Exception):
    def __init__(self, cap: str) -> None:
        super().__init__(cap)
        self.cap = cap


class ReplayTooLong(Exception):
    pass


class Subscriber:
    __slots__ = ("org_id", "instance_id", "start_position", "_queue", "closed_reason", "_hub")

    def __init__(self, hub: "EventHub", org_id: str, instance_id: str | None, queue_size: int) -> None:
        self._hub = hub
        self.org_id = org_id
        self.instance_id = instance_id
        self.start_position = hub.position
        # One extra slot keeps room for the closing sentinel.
        self._queue: asyncio.Queue[Frame | None] = asyncio.Queue(maxsize=queue_size + 1)
        self.closed_reason: str | None = None

    def wants(self, frame: Frame) -> bool:
        if self.instance_id is None:
            return True
        return frame.aggregate == "instance" and frame.aggregate_id == self.instance_id

    def offer(self, frame: Frame) -> None:
        if self.closed_reason is not None or not self.wants(frame):
            return
        if self._queue.qsize() >= self._queue.maxsize - 1:
            self.close("slow_client")
            return
        self._queue.put_nowait(frame)

    def close(self, reason: str) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self._hub._remove(self)
        if reason != "client_closed":
            metrics.SSE_DISCONNECTS.labels(reason).inc()
        self._queue.put_nowait(None)  # offer() always leaves this slot free

    async def get(self, timeout_s: float) -> Frame | None:
        """The next frame; ``None`` once closed; raises TimeoutError when idle for ``timeout_s``."""
        return await asyncio.wait_for(self._queue.get(), timeout_s)


class EventHub:
    def __init__(
        self,
        js: JetStreamContext,
        *,
        queue_size: int = 256,
        max_per_org: int = 100,
        max_total: int = 5000,
        replay_max: int = 10_000,
        stream: str = EVENTS_STREAM,
    ) -> None:
        self._js = js
        self._stream = stream
        self.queue_size = queue_size
        self.max_per_org = max_per_org
        self.max_total = max_total
        self.replay_max = replay_max
        self.position = 0
        self._by_org: dict[str, set[Subscriber]] = {}
        self._count = 0
        self._sub = None

    # --- live feed ------------------------------------------------------------------------

    async def start(self) -> None:
        self.position = await stream_last_seq(self._js, self._stream)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.position + 1)
        self._sub = await self._js.subscribe(
            f"{subjects.EVENTS_PREFIX}.>", stream=self._stream, ordered_consumer=True, config=config, cb=self._on_msg,
        )
        log.info("sse.hub_started", position=self.position)

    async def stop(self) -> None:
        self.close_all("shutdown")
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # noqa: BLE001 - the connection may be closing already
                pass
            self._sub = None

    async def _on_msg(self, msg) -> None:
        try:
            seq = msg.metadata.sequence.stream
        except Exception:  # noqa: BLE001 - not a JetStream delivery
            return
        if seq <= self.position:
            return
        self.position = seq
        metrics.SSE_HUB_EVENTS.inc()
        frame = render_frame(msg.subject, seq, msg.data or b"", msg.headers)
        if frame is not None:
            self.dispatch(frame)

    def dispatch(self, frame: Frame) -> None:
        for subscriber in list(self._by_org.get(frame.org_id, ())):
            subscriber.offer(frame)

    # --- subscribers ----------------------------------------------------------------------

    def subscribe(self, org_id: str, instance_id: str | None = None) -> Subscriber:
        if self._count >= self.max_total:
            metrics.SSE_REJECTED.labels("total").inc()
            raise TooManyStreams("total")
        if len(self._by_org.get(org_id, ())) >= self.max_per_org:
            metrics.SSE_REJECTED.labels("org").inc()
            raise TooManyStreams("org")
        subscriber = Subscriber(self, org_id, instance_id, self.queue_size)
        self._by_org.setdefault(org_id, set()).add(subscriber)
        self._count += 1
        metrics.SSE_CLIENTS.inc()
        return subscriber

    def _remove(self, subscriber: Subscriber) -> None:
        subs = self._by_org.get(subscriber.org_id)
        if subs is not None and subscriber in subs:
            subs.discard(subscriber)
            if not subs:
                self._by_org.pop(subscriber.org_id, None)
            self._count -= 1
            metrics.SSE_CLIENTS.dec()

    def close_all(self, reason: str) -> None:
        for subs in list(self._by_org.values()):
            for subscriber in list(subs):
                subscriber.close(reason)

    @property
    def subscriber_count(self) -> int:
        return self._count

    # --- replay ---------------------------------------------------------------------------

    async def replay(self, org_id: str, after_seq: int, until_seq: int) -> AsyncIterator[Frame]:
        """The org's events with ``after_seq < seq <= until_seq``, in order."""
        if until_seq <= after_seq:
            return
        subject_filter = subjects.org_events_filter(org_id)
        try:
            first = await self._js.get_msg(self._stream, seq=after_seq + 1, subject=subject_filter, next=True,
                                           direct=True)
        except NotFoundError:
            return
        if first.seq > until_seq:
            return
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first.seq)
        sub = await self._js.subscribe(subject_filter, stream=self._stream, ordered_consumer=True, config=config)
        try:
            sent = 0
            while True:
                try:
                    msg = await sub.next_msg(timeout=10)
                except NatsTimeoutError:
                    raise ReplayTooLong("replay stalled") from None
                seq = msg.metadata.sequence.stream
                if seq > until_seq:
                    return
                frame = render_frame(msg.subject, seq, msg.data or b"", msg.headers)
                if frame is not None:
                    yield frame
                    sent += 1
                if seq >= until_seq or msg.metadata.num_pending == 0:
                    return
                if sent >= self.replay_max:
                    raise ReplayTooLong(f"more than {self.replay_max} events to replay")
        finally:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001
                pass


class SseSession:
    """One client's stream: replay from ``last_event_id``, then live, with keep-alives."""

    def __init__(
        self,
        hub: EventHub,
        subscriber: Subscriber,
        *,
        last_event_id: int | None,
        keepalive_s: float,
        still_authorized: Callable[[], Awaitable[bool]],
    ) -> None:
        self.hub = hub
        self.subscriber = subscriber
        self.last_event_id = last_event_id
        self.keepalive_s = keepalive_s
        self.still_authorized = still_authorized

    def close(self, reason: str) -> None:
        self.subscriber.close(reason)

    async def frames(self) -> AsyncIterator[bytes]:
        sub = self.subscriber
        last_sent = self.last_event_id or 0
        yield b"retry: 3000\n" + comment("inventiv events")
        # ``hello`` carries the position the stream starts from as its id: a browser that connected
        # and saw no event yet still has a Last-Event-ID, so its reconnection replays what it missed.
        position = self.last_event_id if self.last_event_id is not None else sub.start_position
        yield named_event("hello", {"type": "hello", "org_id": sub.org_id, "instance_id": sub.instance_id,
                                    "seq": position, "live_from_seq": sub.start_position + 1,
                                    "resumed_after": self.last_event_id}, event_id=position)
        if self.last_event_id is not None:
            try:
                async for frame in self.hub.replay(sub.org_id, self.last_event_id, sub.start_position):
                    if frame.seq > last_sent and sub.wants(frame):
                        metrics.SSE_EVENTS_SENT.inc()
                        last_sent = frame.seq
                        yield frame.data
            except ReplayTooLong as exc:
                # Too far behind: tell the client to reload its views, then continue live.
                log.warning("sse.replay_truncated", org_id=sub.org_id, error=str(exc))
                yield named_event("resync", {"reason": "replay_too_long"})
        while True:
            try:
                frame = await sub.get(self.keepalive_s)
            except asyncio.TimeoutError:
                if not await self.still_authorized():
                    self.close("unauthorized")
                    return
                yield comment("keep-alive")
                continue
            if frame is None:
                return
            if frame.seq <= last_sent:
                continue
            metrics.SSE_EVENTS_SENT.inc()
            last_sent = frame.seq
            yield frame.data
