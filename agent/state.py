"""What the agent currently knows, in one place: written by the monitor and the supervisor,
read by the heartbeat loop and the HTTP handlers. Single event loop, so no locks.

``refresh()`` recomputes the worker status with the pure ``health.evaluate_status`` and, when
it changed, logs it and wakes the heartbeat loop so the control plane hears about it at once
instead of at the next tick.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from contracts.heartbeats import EngineLoad, WorkerStatus

from .health import EngineState, HealthInputs, evaluate_status
from .metrics import AgentMetrics
from .progress import ProgressMark

log = structlog.get_logger("agent.state")


class AgentState:
    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics
        self.started_monotonic = time.monotonic()
        self.status: WorkerStatus = "starting"
        self.reason: str | None = "engine_not_running"
        self.engine_state: EngineState = "not_started"
        self.engine_pid: int | None = None
        self.engine_incarnation = 0
        self.engine_restarts = 0
        self.engine_load = EngineLoad()
        self.models: tuple[str, ...] = ()
        self.engine_answering = False
        self.model_listed = False
        self.warmed_incarnation = 0
        self.ever_ready = False
        self.draining = False
        self.consecutive_probe_failures = 0
        # Forward progress of the current engine process (None until its first /metrics reading).
        self.progress: ProgressMark | None = None
        # Incremented after every probe round, so the drain can wait for a fresh reading.
        self.probe_rounds = 0
        self.status_changed = asyncio.Event()
        # Asks the monitor for a probe round now (e.g. draining needs a fresh load reading).
        self.probe_requested = asyncio.Event()
        # Set after every probe round; the drain waits on it for a fresh load reading.
        self.probe_completed = asyncio.Event()
        metrics.set_status(self.status)

    def uptime_s(self) -> float:
        return time.monotonic() - self.started_monotonic

    def inputs(self) -> HealthInputs:
        return HealthInputs(
            draining=self.draining,
            engine_state=self.engine_state,
            engine_answering=self.engine_answering,
            model_listed=self.model_listed,
            warmed=self.warmed_incarnation == self.engine_incarnation and self.engine_incarnation > 0,
            ever_ready=self.ever_ready,
            consecutive_probe_failures=self.consecutive_probe_failures,
            stalled=self.progress is not None and self.progress.stalled,
        )

    def refresh(self) -> None:
        verdict = evaluate_status(self.inputs())
        if verdict.status == "ready":
            self.ever_ready = True
        if (verdict.status, verdict.reason) == (self.status, self.reason):
            return
        log.info("status_changed", status=verdict.status, previous=self.status, reason=verdict.reason)
        self.status, self.reason = verdict.status, verdict.reason
        self.metrics.set_status(verdict.status)
        self.status_changed.set()
        self.probe_requested.set()

    def engine_started(self, pid: int, incarnation: int) -> None:
        self.engine_state = "running"
        self.engine_pid = pid
        self.engine_incarnation = incarnation
        self.engine_answering = False
        self.model_listed = False
        self.models = ()
        self.consecutive_probe_failures = 0
        self.progress = None
        self.metrics.engine_up.set(1)
        self.refresh()

    def engine_stopped(self, state: EngineState) -> None:
        self.engine_state = state
        self.engine_pid = None
        self.engine_answering = False
        self.model_listed = False
        self.models = ()
        self.engine_load = EngineLoad()
        self.progress = None
        self.metrics.engine_stalled.set(0)
        self.metrics.set_engine_load(self.engine_load)
        self.metrics.engine_up.set(0)
        self.refresh()
