"""Builders and Hypothesis strategies for billing lifecycles (shared by unit and integration tests).

A lifecycle is the truth: the intervals an instance really ran. ``events_for`` turns it into
the billing events the orchestrator would append, optionally with the duplicates a crash or a
redelivery produces (same event again; a second start while running; a second stop).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import strategies as st

from contracts.events import InstanceBillingStarted, InstanceBillingStopped

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
MODELS = ("llama-3-8b", "mistral-7b", "qwen-2-72b")
ORGS = tuple(str(uuid.UUID(int=i + 1)) for i in range(3))


def started(instance_id: str, at: datetime, price: str | Decimal = "2.5", *, org_id: str = ORGS[0],
            model: str = MODELS[0], event_id: str | None = None, provider: str = "mock",
            instance_type: str = "L4-1-24G") -> InstanceBillingStarted:
    return InstanceBillingStarted(
        id=event_id or str(uuid.uuid4()), org_id=org_id, actor="system:orchestrator", correlation_id="c",
        causation_id="c", occurred_at=at, instance_id=instance_id, hourly_price_eur=Decimal(price),
        provider_code=provider, instance_type_code=instance_type, model_name=model,
    )


def stopped(instance_id: str, at: datetime, *, org_id: str = ORGS[0], event_id: str | None = None
            ) -> InstanceBillingStopped:
    return InstanceBillingStopped(
        id=event_id or str(uuid.uuid4()), org_id=org_id, actor="system:orchestrator", correlation_id="c",
        causation_id="c", occurred_at=at, instance_id=instance_id,
    )


@dataclass(frozen=True)
class Run:
    """One true billing interval; ``stop`` None = still running."""

    start: datetime
    stop: datetime | None


@dataclass(frozen=True)
class Lifecycle:
    instance_id: str
    org_id: str
    model: str
    price: Decimal
    runs: tuple[Run, ...]


micros = st.integers(min_value=0, max_value=3 * 24 * 3600 * 1_000_000)
prices = st.decimals(min_value=0, max_value=60, places=4, allow_nan=False, allow_infinity=False)


@st.composite
def lifecycles(draw, *, max_runs: int = 3) -> Lifecycle:
    n = draw(st.integers(min_value=1, max_value=max_runs))
    t = T0 + timedelta(microseconds=draw(micros))
    runs = []
    for i in range(n):
        start = t
        last = i == n - 1
        if last and draw(st.booleans()):
            runs.append(Run(start, None))
            break
        stop = start + timedelta(microseconds=draw(micros))
        runs.append(Run(start, stop))
        # the next run starts strictly after this one (a restart), or at the same instant
        t = stop + timedelta(microseconds=draw(st.integers(min_value=1, max_value=10**9)))
    return Lifecycle(
        instance_id=str(uuid.UUID(int=draw(st.integers(min_value=1, max_value=2**64)))),
        org_id=draw(st.sampled_from(ORGS)),
        model=draw(st.sampled_from(MODELS)),
        price=draw(prices),
        runs=tuple(runs),
    )


def events_for(lc: Lifecycle, *, rng: random.Random | None = None, duplicates: bool = False) -> list:
    """The billing events of a lifecycle, in order; with ``duplicates``, also the redundant ones
    an at-least-once pipeline produces (none of which may change the bill)."""
    out: list = []
    for run in lc.runs:
        start = started(lc.instance_id, run.start, lc.price, org_id=lc.org_id, model=lc.model)
        out.append(start)
        if duplicates and rng is not None:
            if rng.random() < 0.5:  # the same event appended again
                out.append(start)
            if rng.random() < 0.5:  # a second start decided while running, at another price
                later = run.start + timedelta(seconds=rng.randint(0, 100))
                if run.stop is None or later < run.stop:
                    out.append(started(lc.instance_id, later, lc.price + 1, org_id=lc.org_id, model=lc.model))
        if run.stop is not None:
            stop = stopped(lc.instance_id, run.stop, org_id=lc.org_id)
            out.append(stop)
            if duplicates and rng is not None:
                if rng.random() < 0.5:
                    out.append(stop)
                if rng.random() < 0.5:  # a second stop, later, with a new id
                    out.append(stopped(lc.instance_id, run.stop + timedelta(seconds=5), org_id=lc.org_id))
                if rng.random() < 0.3:  # the first start again, after the stop
                    out.append(start)
    return out


def interleave(per_instance: list[list], rng: random.Random) -> list:
    """Merge per-instance event lists randomly, keeping each instance's own order (as a stream does)."""
    queues = [list(q) for q in per_instance if q]
    out = []
    while queues:
        q = rng.choice(queues)
        out.append(q.pop(0))
        if not q:
            queues.remove(q)
    return out


def exact_cost(lc: Lifecycle, now: datetime) -> Decimal:
    """Independent calculation: Σ running time × price, unrounded."""
    total = Decimal(0)
    for run in lc.runs:
        end = min(run.stop, now) if run.stop is not None else now
        if end > run.start:
            us = (end - run.start) // timedelta(microseconds=1)
            total += lc.price * Decimal(us) / Decimal(3_600_000_000)
    return total
