"""Properties over random lifecycles drawn from the transition table.

- status and progress of the row are what the lifecycle table says;
- one history row per status change, one action-log row per event;
- projecting again (redeliveries, a whole replay, events arriving twice) changes nothing;
- how events are cut into batches changes nothing.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import ids
from services.orchestrator.domain import lifecycle

from .builders import instance_event, new_tables, project_in_memory, snapshot

PHASES = ["ssh_ready", "installing", "engine_starting", "agent_started", "custom_phase"]
ALL_TAGS = sorted(set(lifecycle.TRANSITIONS) - {"command.rejected"}) + ["instance.failed"]


@st.composite
def lifecycles(draw):
    """A list of instance events for one instance: mostly legal moves, some forbidden ones."""
    org, iid = ids.new_id(), ids.new_id()
    events = [instance_event("instance.requested", org, iid)]
    status = lifecycle.PROVISIONING
    for _ in range(draw(st.integers(0, 14))):
        legal = [(t, None) for t, (allowed, _) in lifecycle.TRANSITIONS.items()
                 if status in allowed and t not in ("instance.requested", "command.rejected")]  # fmt: skip
        legal += [("instance.failed", fs) for fs, allowed in lifecycle.FAILURE_FROM.items() if status in allowed]
        if draw(st.integers(0, 9)) == 0 or not legal:
            tag = draw(st.sampled_from(ALL_TAGS))
            fs = draw(st.sampled_from(sorted(lifecycle.FAILURE_FROM))) if tag == "instance.failed" else None
        else:
            tag, fs = draw(st.sampled_from(legal))
        events.append(instance_event(tag, org, iid, failure_status=fs, phase=draw(st.sampled_from(PHASES))))
        try:
            status = lifecycle.next_status(status, tag, fs)
        except lifecycle.IllegalTransition:
            pass
    if draw(st.booleans()):
        events.append(instance_event("command.rejected", org, iid))
    return iid, events


def reference(events):
    """Status, phase, server_created and status changes by folding next_status directly."""
    status, phase, server, changes = None, None, False, 0
    for e in events:
        tag = e.__struct_config__.tag
        if tag == "command.rejected":
            continue
        try:
            after = lifecycle.next_status(status, tag, getattr(e, "status", None) if tag == "instance.failed" else None)
        except lifecycle.IllegalTransition:
            continue
        if tag == "instance.install_phase_reached":
            phase = e.phase
        if tag == "instance.reinstall_requested":
            phase = None  # a new install generation starts from no phase
        if tag == "instance.server_created":
            server = True
        changes += after != status
        status = after
    return status, phase, server, changes


def project_all(numbered, cuts=()):
    tables = new_tables()
    start = 0
    for cut in sorted(set(cuts)) + [len(numbered)]:
        if cut > start:
            project_in_memory(tables, numbered[start:cut])
            start = cut
    return tables


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lifecycles())
def test_status_progress_history_match_the_lifecycle(case):
    iid, events = case
    numbered = list(enumerate(events, start=1))
    tables = project_all(numbered)
    status, phase, server, changes = reference(events)
    row = tables.table("instances")[(iid,)]
    assert row["status"] == status
    assert row["progress_percent"] == lifecycle.progress_percent(status, phase, server)
    assert row["is_archived"] == (status == lifecycle.ARCHIVED)
    assert len(tables.rows("instance_state_history")) == changes
    assert sorted(r["seq"] for r in tables.rows("action_logs")) == [n for n, _ in numbered]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lifecycles(), st.data())
def test_replays_and_duplicates_change_nothing(case, data):
    _, events = case
    numbered = list(enumerate(events, start=1))
    once = snapshot(project_all(numbered))

    # Every event delivered one to three times, then the whole log again (no checkpoint to help).
    noisy = [item for item in numbered for _ in range(data.draw(st.integers(1, 3)))] + numbered
    tables = new_tables()
    for item in noisy:
        project_in_memory(tables, [item])
    assert snapshot(tables) == once

    # Old events arriving after newer ones.
    late = data.draw(st.lists(st.sampled_from(numbered), max_size=5))
    project_in_memory(tables, late)
    assert snapshot(tables) == once


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lifecycles(), st.data())
def test_batching_does_not_matter(case, data):
    _, events = case
    numbered = list(enumerate(events, start=1))
    cuts = data.draw(st.lists(st.integers(1, max(1, len(numbered) - 1)), max_size=6))
    one_by_one = snapshot(project_all(numbered, cuts=range(1, len(numbered))))
    assert snapshot(project_all(numbered, cuts=cuts)) == one_by_one
    assert snapshot(project_all(numbered)) == one_by_one
