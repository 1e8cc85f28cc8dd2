"""The worker status reported in heartbeats, computed from what the agent observed. Pure.

Order matters and is the whole policy:
1. ``failed``    the supervisor gave up restarting the engine (nothing will fix itself);
2. ``draining``  shutdown was requested (stop routing here, in-flight requests finish);
3. before the worker was ever ready: ``starting`` until the engine answers, lists the model
   AND a warm-up completion produced a token (a listed model can still fail its first request);
4. after it was ready: ``unhealthy`` (with a reason) while the engine is down, restarting,
   not answering, not listing the model, stalled (requests running, no token produced for
   ``stall_after_s``, see ``progress.py``) or not yet warmed up again, else ``ready``.

An engine that was ready once and restarts reports ``unhealthy``, not ``starting``: the
orchestrator's ``ready`` state must be left, and "starting" would look like a fresh boot.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from contracts.heartbeats import WorkerStatus

EngineState = Literal["not_started", "running", "restarting", "failed", "stopped"]

# Probes in a row that must fail before a ready worker is declared unhealthy: one slow
# /metrics answer under load is not an outage.
UNHEALTHY_AFTER_FAILURES = 3


class HealthInputs(msgspec.Struct, frozen=True, kw_only=True):
    draining: bool = False
    engine_state: EngineState = "not_started"
    # The current engine process answered /v1/models at least once (it is up, maybe still loading).
    engine_answering: bool = False
    # The current engine process lists our model on /v1/models (latest successful probe).
    model_listed: bool = False
    # A warm-up completion produced a token on the current engine process.
    warmed: bool = False
    # The worker reached ready at least once since the agent started.
    ever_ready: bool = False
    consecutive_probe_failures: int = 0
    # Requests are running and the engine's generation counter has not moved for too long.
    stalled: bool = False


class HealthVerdict(msgspec.Struct, frozen=True, kw_only=True):
    status: WorkerStatus
    reason: str | None = None


def evaluate_status(inputs: HealthInputs, unhealthy_after: int = UNHEALTHY_AFTER_FAILURES) -> HealthVerdict:
    if inputs.engine_state == "failed":
        return HealthVerdict(status="failed", reason="engine_gave_up")
    if inputs.draining:
        return HealthVerdict(status="draining", reason="shutdown_requested")
    problem = _problem(inputs, unhealthy_after)
    if problem is None:
        return HealthVerdict(status="ready")
    return HealthVerdict(status="unhealthy" if inputs.ever_ready else "starting", reason=problem)


def _problem(inputs: HealthInputs, unhealthy_after: int) -> str | None:
    if inputs.engine_state in ("not_started", "stopped"):
        return "engine_not_running"
    if inputs.engine_state == "restarting":
        return "engine_restarting"
    if inputs.ever_ready and inputs.consecutive_probe_failures >= unhealthy_after:
        return "engine_not_responding"
    if not inputs.engine_answering:
        return "engine_loading"
    if not inputs.model_listed:
        return "model_not_listed"
    if inputs.stalled:
        return "stalled"
    if not inputs.warmed:
        return "warming_up"
    return None
