"""Heartbeat building and jitter: what goes on the wire decodes with the shared codec."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from agent.heartbeat import build_heartbeat, jittered_interval
from agent.metrics import AgentMetrics
from agent.state import AgentState
from contracts.codec import decode_heartbeat, encode
from contracts.heartbeats import EngineLoad, GpuSample, SystemSample


@given(st.floats(min_value=0.05, max_value=300), st.floats(min_value=0, max_value=1, exclude_max=True))
def test_jitter_stays_within_ten_percent(base, r):
    value = jittered_interval(base, r)
    assert base * 0.9 - 1e-9 <= value <= base * 1.1 + 1e-9


def test_a_heartbeat_round_trips_through_the_codec():
    state = AgentState(AgentMetrics())
    state.engine_load = EngineLoad(requests_running=2, kv_cache_usage=0.3, models=("m",))
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    hb = build_heartbeat(state, model="m", interval_s=4.0, version="1.2.3", sha256="ab" * 32,
                         gpus=(GpuSample(index=0, utilization_pct=50.0),), system=SystemSample(cpu_pct=1.0), now=now)
    decoded = decode_heartbeat(encode(hb))
    assert decoded == hb
    assert decoded.status == "starting" and decoded.reason == "engine_not_running"
    assert decoded.engine.models == ("m",) and decoded.sent_at == now


def test_status_changes_wake_the_heartbeat_loop():
    state = AgentState(AgentMetrics())
    state.status_changed.clear()
    state.engine_started(pid=123, incarnation=1)
    assert state.status_changed.is_set() and state.reason == "engine_loading"
    state.status_changed.clear()
    state.refresh()  # nothing changed: no wake-up
    assert not state.status_changed.is_set()
    state.engine_answering = True
    state.model_listed = True
    state.warmed_incarnation = 1
    state.refresh()
    assert state.status == "ready" and state.ever_ready and state.status_changed.is_set()
    state.engine_stopped("restarting")
    assert (state.status, state.reason) == ("unhealthy", "engine_restarting")
