"""Probes the running engine in a loop and keeps ``AgentState`` current.

Fast (every ``FAST_INTERVAL_S``) until the worker is ready or while draining, so readiness and
"drained" are noticed quickly; slower once ready. Each round: /v1/models (liveness + which
models), /metrics (load, and forward progress: see ``progress.py``), and, once per engine
process, a warm-up completion.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import structlog

from .health import UNHEALTHY_AFTER_FAILURES
from .metrics import AgentMetrics
from .metrics_parser import engine_load, parse_prometheus_text
from .probes import EngineClient, ProbeError
from .progress import DEFAULT_STALL_AFTER_S, ProgressSample, observe_progress
from .state import AgentState

log = structlog.get_logger("agent.monitor")

FAST_INTERVAL_S = 0.25


class EngineMonitor:
    def __init__(self, state: AgentState, client: EngineClient, metrics: AgentMetrics, model: str,
                 ready_interval_s: float, stall_after_s: float = DEFAULT_STALL_AFTER_S) -> None:
        self.state = state
        self.client = client
        self.metrics = metrics
        self.model = model
        self.ready_interval_s = ready_interval_s
        self.stall_after_s = stall_after_s

    async def run(self) -> None:
        while True:
            try:
                await self.probe_once()
            except Exception:  # a bug or an odd answer costs one probe round, never the monitor
                self.state.consecutive_probe_failures += 1
                self.metrics.probe_failures.labels(endpoint="unexpected").inc()
                log.exception("engine_probe_crashed")
            self.state.probe_rounds += 1
            self.state.refresh()
            self.state.probe_completed.set()
            interval = self.ready_interval_s if self.state.status == "ready" else FAST_INTERVAL_S
            requested = self.state.probe_requested
            try:
                await asyncio.wait_for(requested.wait(), timeout=interval)
            except TimeoutError:
                pass
            requested.clear()

    async def probe_once(self) -> None:
        st = self.state
        if st.engine_state != "running":
            return
        incarnation = st.engine_incarnation
        try:
            models = await self.client.list_models()
        except ProbeError as exc:
            self._probe_failed("models", exc)
            return
        if st.engine_incarnation != incarnation:
            return  # the engine restarted while we were asking; this answer is stale
        if st.consecutive_probe_failures >= UNHEALTHY_AFTER_FAILURES:
            log.info("engine_answering_again", after_failures=st.consecutive_probe_failures)
        st.consecutive_probe_failures = 0
        st.engine_answering = True
        st.models = models
        st.model_listed = self.model in models
        try:
            text = await self.client.metrics_text()
        except ProbeError as exc:
            self.metrics.probe_failures.labels(endpoint="metrics").inc()
            log.debug("engine_metrics_failed", error=str(exc))
            st.engine_load = msgspec.structs.replace(st.engine_load, models=models)
        else:
            parsed = parse_prometheus_text(text)
            if parsed.garbage_lines:
                self.metrics.garbage_lines.inc(parsed.garbage_lines)
            st.engine_load = engine_load(parsed, models, self.model)
            self.metrics.set_engine_load(st.engine_load)
            self._track_progress()
        if st.model_listed and st.warmed_incarnation != incarnation and not st.draining:
            await self._warm_up(incarnation)

    def _track_progress(self) -> None:
        st, load = self.state, self.state.engine_load
        was_stalled = st.progress is not None and st.progress.stalled
        sample = ProgressSample(requests_running=load.requests_running,
                                generation_tokens_total=load.generation_tokens_total)
        st.progress = observe_progress(st.progress, sample, time.monotonic(), self.stall_after_s)
        self.metrics.engine_stalled.set(1 if st.progress.stalled else 0)
        if st.progress.stalled and not was_stalled:
            log.warning("engine_stalled", requests_running=load.requests_running,
                        generation_tokens_total=load.generation_tokens_total,
                        silent_for_s=round(st.progress.silent_for_s(time.monotonic()), 3))
        elif was_stalled and not st.progress.stalled:
            log.info("engine_progressing_again", requests_running=load.requests_running)

    async def _warm_up(self, incarnation: int) -> None:
        try:
            await self.client.warm_up(self.model)
        except ProbeError as exc:
            self.metrics.probe_failures.labels(endpoint="warm_up").inc()
            log.warning("engine_warm_up_failed", error=str(exc))
            return
        if self.state.engine_incarnation == incarnation:
            self.state.warmed_incarnation = incarnation
            log.info("engine_warmed_up", incarnation=incarnation)

    def _probe_failed(self, endpoint: str, exc: ProbeError) -> None:
        st = self.state
        st.consecutive_probe_failures += 1
        self.metrics.probe_failures.labels(endpoint=endpoint).inc()
        # A loading engine refuses connections for minutes; only a ready one going quiet is news.
        if st.ever_ready and st.consecutive_probe_failures == UNHEALTHY_AFTER_FAILURES:
            log.warning("engine_not_responding", failures=st.consecutive_probe_failures, error=str(exc))
        else:
            log.debug("engine_probe_failed", endpoint=endpoint, error=str(exc))
