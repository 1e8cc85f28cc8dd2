"""Metering: billing intervals per instance from billing start/stop events. Pure.

An instance is billed from its ``instance.billing_started`` event's ``occurred_at`` to its
``instance.billing_stopped`` event's ``occurred_at`` at the price the start event carries
(the price at the time; later catalog changes never rewrite history).

Folding is deterministic and idempotent. The rules, in order:

1. An event whose id is already recorded on an interval (as its start or stop) changes nothing
   (the same event appended twice, e.g. after the duplicate window, or redelivered).
2. A start while an interval is open changes nothing: the first start and its price win.
3. A start dated before the end of the instance's last closed interval (or at the very instant
   that interval began) changes nothing: that time is already accounted for, and intervals of
   one instance never overlap, so ``(instance_id, started_at)`` identifies an interval.
4. Any other start opens a new interval (billing may stop and start again, e.g. a reinstall).
5. A stop closes the open interval at ``max(occurred_at, started_at)``; with no open interval it
   changes nothing.

An open interval runs to "now" for current-cost queries: ``clip(interval, now)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Iterable, Sequence

from contracts.events import InstanceBillingStarted, InstanceBillingStopped

from .money import clean_price

BillingEvent = InstanceBillingStarted | InstanceBillingStopped


@dataclass(frozen=True, slots=True)
class BillingInterval:
    instance_id: str
    org_id: str
    model_name: str
    provider_code: str
    instance_type_code: str
    hourly_price_eur: Decimal
    started_at: datetime
    stopped_at: datetime | None = None
    start_event_id: str = ""
    stop_event_id: str | None = None

    @property
    def is_open(self) -> bool:
        return self.stopped_at is None

    def end(self, now: datetime) -> datetime:
        """Where this interval ends as seen at ``now``: its stop, or ``now`` if it runs (or
        stops) later; never before its start."""
        end = now if self.stopped_at is None else min(self.stopped_at, now)
        return max(end, self.started_at)

    def duration(self, now: datetime) -> timedelta:
        return self.end(now) - self.started_at


def utc(dt: datetime) -> datetime:
    """Aware UTC datetime; a naive one is taken to be UTC already."""
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def is_billing_event(event: object) -> bool:
    return isinstance(event, (InstanceBillingStarted, InstanceBillingStopped))


def apply_billing_event(intervals: Sequence[BillingInterval], event: BillingEvent) -> tuple[BillingInterval, ...]:
    """One instance's intervals (oldest first) after ``event``; returns the input unchanged when
    the event changes nothing (rules in the module docstring)."""
    current = tuple(intervals)
    if not is_billing_event(event):
        return current
    if any(event.id == iv.start_event_id or event.id == iv.stop_event_id for iv in current):
        return current
    at = utc(event.occurred_at)
    last = current[-1] if current else None
    if isinstance(event, InstanceBillingStarted):
        if last is not None and (last.is_open or at < last.stopped_at or at == last.started_at):  # type: ignore[operator]
            return current
        return current + (
            BillingInterval(
                instance_id=event.instance_id,
                org_id=event.org_id,
                model_name=event.model_name,
                provider_code=event.provider_code,
                instance_type_code=event.instance_type_code,
                hourly_price_eur=clean_price(event.hourly_price_eur),
                started_at=at,
                start_event_id=event.id,
            ),
        )
    if isinstance(event, InstanceBillingStopped):
        if last is None or not last.is_open:
            return current
        closed = replace(last, stopped_at=max(at, last.started_at), stop_event_id=event.id)
        return current[:-1] + (closed,)
    return current


def fold_billing(events: Iterable[object], initial: dict[str, tuple[BillingInterval, ...]] | None = None
                 ) -> dict[str, tuple[BillingInterval, ...]]:
    """Intervals per instance id after folding ``events`` in order (non-billing events are skipped)."""
    state: dict[str, tuple[BillingInterval, ...]] = dict(initial or {})
    for event in events:
        if is_billing_event(event):
            state[event.instance_id] = apply_billing_event(state.get(event.instance_id, ()), event)  # type: ignore[union-attr]
    return state


def all_intervals(state: dict[str, tuple[BillingInterval, ...]]) -> list[BillingInterval]:
    return [iv for ivs in state.values() for iv in ivs]


def open_at(intervals: Iterable[BillingInterval], now: datetime) -> list[BillingInterval]:
    """Intervals billing at ``now``: started at or before it and not stopped by then."""
    return [iv for iv in intervals if iv.started_at <= now and (iv.stopped_at is None or iv.stopped_at > now)]


def clip(interval: BillingInterval, now: datetime) -> BillingInterval:
    """The interval as known at ``now``: an open one, or one that stops after ``now``, ends at ``now``."""
    if interval.stopped_at is not None and interval.stopped_at <= now:
        return interval
    return replace(interval, stopped_at=max(now, interval.started_at))
