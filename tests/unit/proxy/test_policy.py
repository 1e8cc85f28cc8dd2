"""policy.choose: properties over arbitrary fleets (Hypothesis) and a few worked examples."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.api.proxy.policy import choose, eligible, is_routable
from services.api.proxy.routing_table import RoutingSnapshot, WorkerState

NOW = 1_000_000.0
STALE = 30.0
ORGS = ("org-a", "org-b")

workers_st = st.lists(
    st.builds(
        lambda i, org, inst, hb, age, running, waiting, kv: WorkerState(
            instance_id=f"i{i}", org_id=org, model="m", upstream_url=f"http://10.0.0.{i}:8000",
            instance_status=inst, hb_status=hb, hb_received_at=None if age is None else NOW - age,
            requests_running=running, requests_waiting=waiting, kv_cache_usage=kv,
        ),
        st.integers(0, 40),
        st.sampled_from(ORGS),
        st.sampled_from(["ready", "ready", "ready", "unavailable"]),
        st.sampled_from(["ready", "ready", "ready", "draining", "unhealthy", "starting", None]),
        st.one_of(st.none(), st.floats(0, 60)),
        st.integers(0, 5).map(float),
        st.integers(0, 5).map(float),
        st.one_of(st.none(), st.sampled_from([0.0, 0.25, 0.5, 1.0])),
    ),
    max_size=12,
    unique_by=lambda w: w.instance_id,
).map(lambda ws: tuple(sorted(ws, key=lambda w: w.instance_id)))

outstanding_st = st.dictionaries(st.integers(0, 40).map(lambda i: f"i{i}"), st.integers(0, 6), max_size=12)
penalised_st = st.dictionaries(st.integers(0, 40).map(lambda i: f"i{i}"),
                               st.floats(NOW - 10, NOW + 10), max_size=6)


def snap(workers) -> RoutingSnapshot:
    return RoutingSnapshot({"m": tuple(workers)} if workers else {}, STALE)


@settings(max_examples=300, deadline=None)
@given(workers_st, outstanding_st, penalised_st, st.one_of(st.none(), st.text(min_size=1, max_size=8)),
       st.sampled_from([None, ("org-a",), ("org-b",)]), st.integers(0, 100))
def test_never_picks_an_ineligible_worker(workers, outstanding, penalised, session_key, allowed, tiebreak):
    choice = choose(snap(workers), "m", outstanding, NOW, penalised, session_key, allowed_orgs=allowed,
                    tiebreak=tiebreak)
    ok = eligible(snap(workers), "m", NOW, penalised, allowed_orgs=allowed)
    if choice is None:
        assert ok == []
        return
    w = next(w for w in workers if w.instance_id == choice.instance_id)
    assert is_routable(w, NOW, STALE)
    assert w.instance_status == "ready" and w.hb_status == "ready"
    assert NOW - w.hb_received_at <= STALE
    assert penalised.get(w.instance_id, 0) <= NOW
    assert allowed is None or w.org_id in allowed
    assert choice.upstream_url == w.upstream_url


@settings(max_examples=300, deadline=None)
@given(workers_st, outstanding_st, st.integers(0, 100))
def test_without_session_picks_least_outstanding_then_queue_then_kv(workers, outstanding, tiebreak):
    choice = choose(snap(workers), "m", outstanding, NOW, {}, tiebreak=tiebreak)
    ok = eligible(snap(workers), "m", NOW, {})
    if not ok:
        assert choice is None
        return

    def key(w):
        return (outstanding.get(w.instance_id, 0), w.requests_waiting,
                w.kv_cache_usage if w.kv_cache_usage is not None else 0.0, w.requests_running)

    best = min(key(w) for w in ok)
    chosen = next(w for w in ok if w.instance_id == choice.instance_id)
    assert key(chosen) == best
    assert choice.reason == "least_outstanding"


@settings(max_examples=200, deadline=None)
@given(workers_st, outstanding_st, st.text(min_size=1, max_size=8))
def test_session_pin_is_stable_and_load_capped(workers, outstanding, session_key):
    a = choose(snap(workers), "m", outstanding, NOW, {}, session_key, tiebreak=1)
    b = choose(snap(workers), "m", outstanding, NOW, {}, session_key, tiebreak=7)
    if a is not None and a.reason == "session_affinity":
        assert a == b  # the tiebreak counter never moves a pinned session
        ok = eligible(snap(workers), "m", NOW, {})
        least = min(outstanding.get(w.instance_id, 0) for w in ok)
        assert outstanding.get(a.instance_id, 0) <= least + 4


@settings(max_examples=100, deadline=None)
@given(workers_st, st.text(min_size=1, max_size=8))
def test_removing_another_worker_keeps_the_session_where_it_was(workers, session_key):
    before = choose(snap(workers), "m", {}, NOW, {}, session_key)
    if before is None:
        return
    others = [w for w in workers if w.instance_id != before.instance_id]
    for gone in others:
        remaining = [w for w in workers if w.instance_id != gone.instance_id]
        assert choose(snap(remaining), "m", {}, NOW, {}, session_key).instance_id == before.instance_id


def _w(i: str, **kw) -> WorkerState:
    base = dict(instance_id=i, org_id="org-a", model="m", upstream_url=f"http://{i}:8000",
                hb_status="ready", hb_received_at=NOW - 1)
    base.update(kw)
    return WorkerState(**base)


def test_equal_workers_take_turns():
    ws = (_w("a"), _w("b"), _w("c"))
    picked = {choose(snap(ws), "m", {}, NOW, {}, tiebreak=t).instance_id for t in range(3)}
    assert picked == {"a", "b", "c"}


def test_queue_depth_breaks_ties_then_kv():
    ws = (_w("a", requests_waiting=2), _w("b", requests_waiting=0, kv_cache_usage=0.9),
          _w("c", requests_waiting=0, kv_cache_usage=0.1))
    assert choose(snap(ws), "m", {}, NOW, {}).instance_id == "c"
    assert choose(snap(ws), "m", {"c": 1}, NOW, {}).instance_id == "b"


def test_stale_draining_penalised_and_excluded_are_skipped():
    ws = (_w("stale", hb_received_at=NOW - STALE - 0.001), _w("draining", hb_status="draining"),
          _w("pen"), _w("ex"), _w("unavail", instance_status="unavailable"), _w("nohb", hb_received_at=None))
    assert choose(snap(ws), "m", {}, NOW, {"pen": NOW + 1}, exclude=("ex",)) is None
    assert choose(snap(ws), "m", {}, NOW, {"pen": NOW - 1}, exclude=("ex",)).instance_id == "pen"
    assert choose(snap(ws), "other-model", {}, NOW, {}) is None
