"""Identity writes: load a consistency scope from EVENTS, append with optimistic concurrency,
then wait (briefly) until the read model shows the write.

A *scope* is a subject filter whose events one decision depends on: one aggregate
(``evt.global.user.<id>.*``) or a set of them (``evt.<org>.membership.>``: every member of one
organisation). ``append_in_scope`` sends ``Nats-Expected-Last-Subject-Sequence`` with the
scope's last sequence as the caller saw it and the scope as
``Nats-Expected-Last-Subject-Sequence-Subject``, so a write that raced another one in the same
scope is refused (:class:`ConcurrencyConflict`) and decided again on fresh state.

``settle`` is read-your-writes for the API's own clients: after a write, wait until the
projector's checkpoint has passed it, so the next GET shows it. It never fails the request:
the event is durable; at worst the read model shows it a little later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import structlog
from nats.js import JetStreamContext

from contracts import codec, headers, subjects
from contracts.events import Event
from contracts.ids import GLOBAL_ORG
from services.runtime.eventstore import EVENTS_STREAM, ConcurrencyConflict
from services.runtime.natsio import is_wrong_last_sequence, read_subject

from ..errors import Problem

log = structlog.get_logger(__name__)

T = TypeVar("T")
ATTEMPTS = 5


def user_scope(user_id: str) -> str:
    return subjects.aggregate_filter(GLOBAL_ORG, "user", user_id)


def members_scope(org_id: str) -> str:
    return ".".join(["evt", subjects.token(org_id), "membership", ">"])


def aggregate_scope(org_id: str, aggregate: str, aggregate_id: str) -> str:
    return subjects.aggregate_filter(org_id, aggregate, aggregate_id)


class Scope:
    """The events of one scope as loaded, and the sequence an append must expect."""

    def __init__(self, filter_subject: str, events: list[Event], last_seq: int) -> None:
        self.filter_subject = filter_subject
        self.events = events
        self.last_seq = last_seq


async def load_scope(js: JetStreamContext, filter_subject: str) -> Scope:
    stored = await read_subject(js, EVENTS_STREAM, filter_subject)
    events = []
    for message in stored:
        try:
            events.append(codec.decode_event(message.data))
        except codec.DecodeError:
            log.warning("identity.undecodable_event", seq=message.seq, subject=message.subject)
    return Scope(filter_subject, events, stored[-1].seq if stored else 0)


async def append_in_scope(js: JetStreamContext, event: Event, scope: Scope, *, timeout_s: float = 5.0) -> int:
    """Append ``event``; refused with ``ConcurrencyConflict`` if ``scope`` changed since it was loaded."""
    hdrs = headers.envelope_headers(event)
    hdrs[headers.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(scope.last_seq)
    hdrs[headers.EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT] = scope.filter_subject
    try:
        ack = await js.publish(codec.event_subject_for(event), codec.encode(event), timeout=timeout_s,
                               stream=EVENTS_STREAM, headers=hdrs)
    except Exception as exc:
        if is_wrong_last_sequence(exc):
            raise ConcurrencyConflict(str(exc)) from exc
        raise
    scope.last_seq = ack.seq
    scope.events.append(event)
    return ack.seq


async def with_retries(attempt: Callable[[], Awaitable[T]], *, what: str) -> T:
    """Run ``attempt`` (load, decide, append) again after each concurrency conflict, a few times."""
    for _ in range(ATTEMPTS):
        try:
            return await attempt()
        except ConcurrencyConflict:
            log.info("identity.concurrent_write", what=what)
    raise Problem(409, f"{what} changed concurrently; retry", type_="conflict")


async def settle(pool: asyncpg.Pool, seq: int, timeout_s: float) -> bool:
    """Wait until the read model has applied ``seq``; False when it did not within ``timeout_s``."""
    from services.projector.runner import wait_for_seq  # noqa: PLC0415 - keeps the projector out of import time

    if timeout_s <= 0 or seq <= 0:
        return True
    try:
        current = await pool.fetchval("SELECT last_seq FROM rm.checkpoints WHERE name = 'read_model'")
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return False
    if current is None:
        return False  # no projector has ever run against this database: nothing to wait for
    if current >= seq:
        return True
    try:
        await wait_for_seq(pool, seq, timeout_s=timeout_s)
    except TimeoutError:
        log.warning("identity.read_model_lagging", seq=seq, waited_s=timeout_s)
        return False
    return True
