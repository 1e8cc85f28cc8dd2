"""Worker status evaluation: the whole policy as a table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.health import HealthInputs, evaluate_status

READY = dict(engine_state="running", engine_answering=True, model_listed=True, warmed=True)


@pytest.mark.parametrize(("inputs", "status", "reason"), [
    (dict(), "starting", "engine_not_running"),
    (dict(engine_state="running"), "starting", "engine_loading"),
    (dict(engine_state="running", consecutive_probe_failures=50), "starting", "engine_loading"),
    (dict(engine_state="running", engine_answering=True), "starting", "model_not_listed"),
    (dict(engine_state="running", engine_answering=True, model_listed=True), "starting", "warming_up"),
    (dict(engine_state="restarting"), "starting", "engine_restarting"),
    (READY, "ready", None),
    (dict(READY, ever_ready=True), "ready", None),
    (dict(READY, ever_ready=True, consecutive_probe_failures=2), "ready", None),
    (dict(READY, ever_ready=True, consecutive_probe_failures=3), "unhealthy", "engine_not_responding"),
    (dict(ever_ready=True, engine_state="restarting"), "unhealthy", "engine_restarting"),
    (dict(ever_ready=True, engine_state="running"), "unhealthy", "engine_loading"),
    (dict(ever_ready=True, engine_state="running", engine_answering=True, model_listed=True), "unhealthy",
     "warming_up"),
    (dict(ever_ready=True, engine_state="running", engine_answering=True, warmed=True), "unhealthy",
     "model_not_listed"),
    (dict(READY, ever_ready=True, stalled=True), "unhealthy", "stalled"),
    (dict(READY, stalled=True), "starting", "stalled"),
    (dict(READY, ever_ready=True, stalled=True, consecutive_probe_failures=3), "unhealthy", "engine_not_responding"),
    (dict(READY, ever_ready=True, stalled=True, draining=True), "draining", "shutdown_requested"),
    (dict(READY, draining=True), "draining", "shutdown_requested"),
    (dict(engine_state="stopped", draining=True, ever_ready=True), "draining", "shutdown_requested"),
    (dict(engine_state="failed"), "failed", "engine_gave_up"),
    (dict(engine_state="failed", draining=True, ever_ready=True), "failed", "engine_gave_up"),
])
def test_status_table(inputs, status, reason):
    verdict = evaluate_status(HealthInputs(**inputs))
    assert (verdict.status, verdict.reason) == (status, reason)


@given(st.builds(HealthInputs,
                 draining=st.booleans(),
                 engine_state=st.sampled_from(["not_started", "running", "restarting", "failed", "stopped"]),
                 engine_answering=st.booleans(),
                 model_listed=st.booleans(),
                 warmed=st.booleans(),
                 ever_ready=st.booleans(),
                 consecutive_probe_failures=st.integers(0, 100),
                 stalled=st.booleans()))
def test_invariants(inputs):
    verdict = evaluate_status(inputs)
    # ready needs a listed, warmed model on a running engine making progress; only ready carries no reason.
    if verdict.status == "ready":
        assert inputs.engine_state == "running" and inputs.engine_answering
        assert inputs.model_listed and inputs.warmed and not inputs.stalled
        assert verdict.reason is None and not inputs.draining
    else:
        assert verdict.reason
    # A worker that was never ready is never "unhealthy", and one that was is never "starting" again.
    assert not (verdict.status == "unhealthy" and not inputs.ever_ready)
    assert not (verdict.status == "starting" and inputs.ever_ready)
    if inputs.draining and inputs.engine_state != "failed":
        assert verdict.status == "draining"
