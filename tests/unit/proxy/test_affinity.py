"""Session affinity (rendezvous hashing inside policy.choose): stability, fallback, spread."""

from __future__ import annotations

from collections import Counter

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from services.api.proxy.affinity import home, ranked
from services.api.proxy.policy import choose
from services.api.proxy.routing_table import RoutingSnapshot, WorkerState

NOW = 1_000_000.0
STALE = 30.0


def _w(i: str, **kw) -> WorkerState:
    base = dict(instance_id=i, org_id="org-a", model="m", upstream_url=f"http://{i}:8000", hb_status="ready",
                hb_received_at=NOW - 1)
    base.update(kw)
    return WorkerState(**base)


def snap(workers) -> RoutingSnapshot:
    return RoutingSnapshot({"m": tuple(workers)} if workers else {}, STALE)


def pick(workers, session, **kw):
    c = choose(snap(workers), "m", kw.pop("outstanding", {}), NOW, kw.pop("penalised", {}), session, **kw)
    return None if c is None else c.instance_id


fleet_st = st.lists(st.integers(0, 60).map(lambda i: f"i{i}"), min_size=2, max_size=10, unique=True).map(
    lambda ids: [_w(i) for i in sorted(ids)])
sessions_st = st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=30, unique=True)
UNROUTABLE = [dict(hb_status="draining"), dict(hb_status="unhealthy"), dict(hb_received_at=NOW - STALE - 1),
              dict(instance_status="unavailable")]


@settings(max_examples=200, deadline=None)
@given(fleet_st, sessions_st, st.data())
def test_removing_a_worker_only_moves_the_sessions_that_were_on_it(fleet, sessions, data):
    gone = data.draw(st.sampled_from(fleet)).instance_id
    remaining = [w for w in fleet if w.instance_id != gone]
    for s in sessions:
        before = pick(fleet, s)
        after = pick(remaining, s)
        if before != gone:
            assert after == before
        else:
            assert after == ranked(s, [w.instance_id for w in fleet])[1]  # its next worker, by hash


@settings(max_examples=200, deadline=None)
@given(fleet_st, sessions_st, st.data())
def test_an_unroutable_home_sends_its_sessions_to_their_next_worker_and_nobody_else_moves(fleet, sessions, data):
    bad = data.draw(st.sampled_from(fleet)).instance_id
    how = data.draw(st.sampled_from(UNROUTABLE))
    degraded = [msgspec.structs.replace(w, **how) if w.instance_id == bad else w for w in fleet]
    for s in sessions:
        before = choose(snap(fleet), "m", {}, NOW, {}, s)
        after = choose(snap(degraded), "m", {}, NOW, {}, s)
        assert before.reason == "session_affinity"
        assert after.instance_id != bad
        if before.instance_id != bad:
            assert after.instance_id == before.instance_id and after.reason == "session_affinity"
        else:
            assert after.instance_id == ranked(s, [w.instance_id for w in fleet])[1]
            assert after.reason == "session_fallback"
        # When the home comes back, so does the session.
        assert choose(snap(fleet), "m", {}, NOW, {}, s) == before


@settings(max_examples=200, deadline=None)
@given(fleet_st, sessions_st, st.integers(61, 99))
def test_adding_a_worker_only_takes_sessions_to_the_new_one(fleet, sessions, new):
    grown = fleet + [_w(f"i{new}")]
    for s in sessions:
        after = pick(grown, s)
        assert after == pick(fleet, s) or after == f"i{new}"


@settings(max_examples=200, deadline=None)
@given(fleet_st, st.text(min_size=1, max_size=12), st.data())
def test_penalised_or_already_tried_home_falls_back_and_never_to_an_excluded_worker(fleet, s, data):
    home_id = home(s, [w.instance_id for w in fleet])
    others = [w.instance_id for w in fleet if w.instance_id != home_id]
    excluded = data.draw(st.lists(st.sampled_from(others), max_size=len(others) - 1, unique=True))
    c = choose(snap(fleet), "m", {}, NOW, {home_id: NOW + 5}, s, exclude=excluded)
    assert c is not None and c.instance_id != home_id and c.instance_id not in excluded
    assert c.reason == "session_fallback"


def test_sessions_spread_over_equal_workers():
    fleet = [_w(f"w{i}") for i in range(4)]
    counts = Counter(pick(fleet, f"conversation-{n}") for n in range(4000))
    assert set(counts) == {w.instance_id for w in fleet}
    assert all(800 <= c <= 1200 for c in counts.values()), counts  # 1000 each expected


def test_a_busy_home_overflows_to_the_least_loaded_worker():
    fleet = [_w("a"), _w("b"), _w("c")]
    s = next(f"s{n}" for n in range(100) if home(f"s{n}", ["a", "b", "c"]) == "a")
    assert choose(snap(fleet), "m", {"a": 4}, NOW, {}, s).reason == "session_affinity"  # within the slack
    c = choose(snap(fleet), "m", {"a": 5, "b": 1}, NOW, {}, s)
    assert c.instance_id == "c" and c.reason == "session_overflow"


def test_sessions_are_per_org_key_and_other_orgs_workers_are_not_in_the_ring():
    fleet = [_w("a"), _w("b", org_id="org-b"), _w("c")]
    for n in range(50):
        c = choose(snap(fleet), "m", {}, NOW, {}, f"s{n}", allowed_orgs=("org-a",))
        assert c.instance_id in ("a", "c") and c.reason == "session_affinity"
