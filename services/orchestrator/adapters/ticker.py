"""Fleet ticks: every replica publishes the same command per time window; the stream keeps one.

For a tick ``name`` with period ``P``, the window is ``floor(unix_time / P)`` and the command
id (its ``Nats-Msg-Id``) derives from ``tick:<name>:<window>``. N replicas publishing within
the COMMANDS duplicate window (10 min) store one message, which one replica handles: exactly
one reconcile per window without leader election. Replica clocks only need to agree to well
within a period. A period of 0 turns a tick off.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import structlog

from contracts import commands as cmd
from contracts.ids import SYSTEM_ORG, derived_id

from .. import metrics
from ..domain.decision import ORCHESTRATOR_ACTOR
from ..ports import CommandPublisher

log = structlog.get_logger(__name__)

TICKS: dict[str, type[cmd.FleetCommand]] = {
    "reconcile": cmd.ReconcileFleet,
    "cleanup": cmd.CleanUpFleet,
    "catalog_sync": cmd.SyncCatalog,
}


@dataclass(frozen=True, slots=True)
class TickSchedule:
    reconcile_s: float = 120.0
    cleanup_s: float = 900.0
    catalog_sync_s: float = 3600.0

    def periods(self) -> dict[str, float]:
        return {"reconcile": self.reconcile_s, "cleanup": self.cleanup_s, "catalog_sync": self.catalog_sync_s}


def tick_window(now_s: float, period_s: float) -> int:
    return math.floor(now_s / period_s)


def tick_command(name: str, window: int, now: datetime) -> cmd.FleetCommand:
    command_id = derived_id("tick", name, str(window))
    return TICKS[name](
        id=command_id,
        org_id=SYSTEM_ORG,
        actor=ORCHESTRATOR_ACTOR,
        correlation_id=command_id,
        causation_id=command_id,
        occurred_at=now,
    )


class Ticker:
    def __init__(self, commands: CommandPublisher, schedule: TickSchedule, *, clock=time.time):
        self._commands, self._schedule, self._clock = commands, schedule, clock
        self._published: dict[str, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        periods = {name: p for name, p in self._schedule.periods().items() if p > 0}
        if not periods:
            return
        while not stop.is_set():
            await self.publish_due()
            # Wake at the next window start of any tick (plus a little, so the window has changed).
            now = self._clock()
            wait = min(p - (now % p) for p in periods.values()) + 0.05
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)

    async def publish_due(self) -> None:
        now_s = self._clock()
        for name, period in self._schedule.periods().items():
            if period <= 0:
                continue
            window = tick_window(now_s, period)
            if self._published.get(name) == window:
                continue
            try:
                await self._commands.publish(tick_command(name, window, datetime.fromtimestamp(now_s, timezone.utc)))
            except Exception as exc:  # NATS down: the next wake tries again (same id, still one per window)
                log.warning("orchestrator.tick_publish_failed", tick=name, error=repr(exc))
                continue
            self._published[name] = window
            metrics.TICKS_PUBLISHED.labels(name).inc()
