"""Projections by example: one lifecycle, failures, refusals, identity."""

from __future__ import annotations

from contracts import ids
from contracts.events import ApiKeyRevoked, event_tag
from services.orchestrator.domain import lifecycle
from services.projector.projections import EventMeta, project, project_batch, project_unreadable
from services.projector.rowops import InsertIfAbsent, Update, Upsert

from .builders import (
    HAPPY_PATH,
    env,
    happy_path,
    identity_events,
    instance_event,
    meta_for,
    new_tables,
    project_in_memory,
)


def _one(tables, iid):
    return tables.table("instances")[(iid,)]


def test_happy_path_rows_history_and_action_log():
    org, iid = ids.new_id(), ids.new_id()
    events = happy_path(org, iid)
    tables = new_tables()
    progress = []
    for seq, event in enumerate(events, start=1):
        project_in_memory(tables, [(seq, event)])
        row = _one(tables, iid)
        progress.append((row["status"], row["progress_percent"]))
    assert progress == [
        ("provisioning", 5), ("booting", 30), ("booting", 30), ("installing", 45), ("starting", 80), ("ready", 100),
        ("terminating", 0), ("terminating", 0), ("terminating", 0), ("terminated", 0), ("archived", 0),
    ]  # fmt: skip
    row = _one(tables, iid)
    assert row["org_id"] == org and row["provider_server_id"] == "srv-" + iid[:8]
    assert row["ip_address"] == "10.0.0.7" and row["upstream_url"] == "http://10.0.0.7:8000"
    assert row["is_archived"] is True and row["deletion_reason"] == "USER_REQUEST"
    assert row["created_at"] == events[0].occurred_at and row["boot_started_at"] == events[1].occurred_at
    assert row["ready_at"] == events[5].occurred_at and row["terminated_at"] == events[9].occurred_at
    assert row["billing_started_at"] == events[2].occurred_at and row["billing_stopped_at"] == events[8].occurred_at
    assert row["last_event_seq"] == len(events) and row["updated_at"] == events[-1].occurred_at

    history = [(h["seq"], h["from_status"], h["to_status"]) for h in tables.rows("instance_state_history")]
    assert sorted(history) == [
        (1, None, "provisioning"), (2, "provisioning", "booting"), (4, "booting", "installing"),
        (5, "installing", "starting"), (6, "starting", "ready"), (7, "ready", "terminating"),
        (10, "terminating", "terminated"), (11, "terminated", "archived"),
    ]  # fmt: skip
    logs = sorted(tables.rows("action_logs"), key=lambda r: r["seq"])
    assert [r["action_type"] for r in logs] == [
        "REQUEST_CREATE", "PROVIDER_CREATE", "INSTANCE_COST_START", "WORKER_SSH_ACCESSIBLE", "WORKER_STARTING",
        "INSTANCE_READY", "REQUEST_TERMINATE", "PROVIDER_TERMINATE", "INSTANCE_COST_STOP", "INSTANCE_TERMINATED",
        "ARCHIVE_INSTANCE",
    ]  # fmt: skip
    assert all(r["status"] == "success" for r in logs)
    assert [r["event_type"] for r in logs] == HAPPY_PATH
    assert logs[0]["component"] == "api" and logs[1]["component"] == "orchestrator"
    assert (logs[5]["instance_status_before"], logs[5]["instance_status_after"]) == ("starting", "ready")
    assert logs[1]["metadata"]["provider_server_id"] == "srv-" + iid[:8]
    assert logs[0]["metadata"]["placement"]["hourly_price_eur"] == "1.2500"


def test_failure_sets_error_fields_and_logs_failed():
    org, iid = ids.new_id(), ids.new_id()
    tables = new_tables()
    events = [instance_event("instance.requested", org, iid), instance_event("instance.server_created", org, iid),
              instance_event("instance.failed", org, iid, failure_status="startup_failed")]  # fmt: skip
    project_in_memory(tables, list(enumerate(events, start=1)))
    row = _one(tables, iid)
    assert row["status"] == "startup_failed" and row["progress_percent"] == 0
    assert row["error_code"] == "STARTUP_TIMEOUT" and row["error_message"] == "no heartbeat before the deadline"
    assert row["failed_at"] == events[2].occurred_at
    log = tables.table("action_logs")[(3,)]
    assert (log["action_type"], log["status"]) == ("INSTANCE_STARTUP_FAILED", "failed")
    assert log["error_code"] == "STARTUP_TIMEOUT"


def test_forbidden_transition_is_logged_failed_and_leaves_the_row():
    org, iid = ids.new_id(), ids.new_id()
    tables = new_tables()
    project_in_memory(tables, [(1, instance_event("instance.requested", org, iid))])
    before = dict(_one(tables, iid))
    project_in_memory(tables, [(2, instance_event("instance.ready", org, iid)),
                               (3, instance_event("instance.requested", org, iid))])  # fmt: skip
    assert _one(tables, iid) == before
    for seq in (2, 3):
        log = tables.table("action_logs")[(seq,)]
        assert log["status"] == "failed" and log["error_code"] == "INVALID_TRANSITION"
        assert log["instance_status_before"] == log["instance_status_after"] == "provisioning"
    assert len(tables.rows("instance_state_history")) == 1


def test_event_for_unknown_instance_is_logged_failed():
    org, iid = ids.new_id(), ids.new_id()
    tables = new_tables()
    project_in_memory(tables, [(1, instance_event("instance.ready", org, iid))])
    assert tables.rows("instances") == []
    log = tables.table("action_logs")[(1,)]
    assert log["status"] == "failed" and log["instance_id"] == iid and log["instance_status_before"] is None


def test_command_rejected_is_a_failed_action_with_the_current_status():
    org, iid = ids.new_id(), ids.new_id()
    tables = new_tables()
    project_in_memory(tables, [(1, instance_event("instance.requested", org, iid)),
                               (2, instance_event("command.rejected", org, iid))])  # fmt: skip
    log = tables.table("action_logs")[(2,)]
    assert (log["action_type"], log["status"], log["error_code"]) == ("COMMAND_REJECTED", "failed", "UNKNOWN_INSTANCE")
    assert log["instance_status_before"] == log["instance_status_after"] == "provisioning"
    assert log["metadata"]["command_type"] == "instance.terminate"
    assert _one(tables, iid)["last_event_seq"] == 1


def test_event_from_another_org_does_not_touch_the_instance():
    org, other, iid = ids.new_id(), ids.new_id(), ids.new_id()
    tables = new_tables()
    project_in_memory(tables, [(1, instance_event("instance.requested", org, iid)),
                               (2, instance_event("instance.server_created", other, iid))])  # fmt: skip
    assert _one(tables, iid)["status"] == "provisioning"
    assert tables.table("action_logs")[(2,)]["error_code"] == "INVALID_EVENT"


def test_payload_stored_under_the_wrong_subject_is_refused():
    org, iid = ids.new_id(), ids.new_id()
    event = instance_event("instance.requested", org, iid)
    ops = project(event, EventMeta(1, f"evt.{ids.new_id()}.instance.{iid}.requested"), {})
    assert len(ops) == 1 and isinstance(ops[0], InsertIfAbsent)
    assert ops[0].row["status"] == "failed" and "belongs on" in ops[0].row["error_message"]


def test_ids_that_are_not_uuids_are_refused_not_crashed_on():
    org = ids.new_id()
    event = instance_event("instance.requested", org, "not-a-uuid")
    ops = project(event, meta_for(event, 1), {})
    assert [type(o) for o in ops] == [InsertIfAbsent]
    assert ops[0].row["error_code"] == "INVALID_EVENT" and ops[0].row["instance_id"] is None


def test_price_out_of_column_range_is_refused():
    from decimal import Decimal

    import msgspec

    org, iid = ids.new_id(), ids.new_id()
    event = instance_event("instance.requested", org, iid)
    placement = msgspec.structs.replace(event.placement, hourly_price_eur=Decimal("1e9"))
    event = msgspec.structs.replace(event, placement=placement)
    ops = project(event, meta_for(event, 1), {})
    assert [o.row["error_code"] for o in ops] == ["INVALID_EVENT"]


def test_unreadable_message_becomes_a_failed_log_row():
    iid, org = ids.new_id(), ids.new_id()
    meta = EventMeta(7, f"evt.{org}.instance.{iid}.requested", None)
    ops = project_batch([(None, meta, {"Inventiv-Type": "instance.requested"}, "cannot decode: bad")], {})
    assert len(ops) == 1
    row = ops[0].row
    assert (row["seq"], row["action_type"], row["status"], row["org_id"], row["instance_id"]) == (
        7, "INVALID_EVENT", "failed", org, iid)
    assert project_unreadable(meta, None, "x")[0].row["actor"] == "unknown"


def test_identity_tables_and_revocation():
    org, user, key = ids.new_id(), ids.new_id(), ids.new_id()
    events = identity_events(org, user, key)
    tables = new_tables()
    project_in_memory(tables, list(enumerate(events, start=1)))
    assert tables.table("users")[(user,)]["email"].endswith("@example.com")
    assert tables.table("organizations")[(org,)]["created_by_user_id"] == user
    assert tables.table("memberships")[(org, user)]["role"] == "owner"
    api_key = tables.table("api_keys")[(key,)]
    assert api_key["revoked_at"] == events[4].occurred_at and api_key["scopes"] == ["inference", "manage"]
    logs = sorted(tables.rows("action_logs"), key=lambda r: r["seq"])
    assert [r["action_type"] for r in logs] == ["USER_CREATED", "ORG_CREATED", "ORG_MEMBER_ADDED", "API_KEY_CREATED",
                                                "API_KEY_REVOKED"]  # fmt: skip
    # Secrets never reach the searchable log.
    assert all("password_hash" not in r["metadata"] and "key_hash" not in r["metadata"] for r in logs)
    # A second revocation keeps the first time.
    again = ApiKeyRevoked(**env(org), key_id=key)
    project_in_memory(tables, [(6, again)])
    assert tables.table("api_keys")[(key,)]["revoked_at"] == events[4].occurred_at


def test_revocation_filed_under_another_org_matches_nothing():
    org, user, key = ids.new_id(), ids.new_id(), ids.new_id()
    events = identity_events(org, user, key)[:4]
    tables = new_tables()
    project_in_memory(tables, list(enumerate(events, start=1)))
    project_in_memory(tables, [(5, ApiKeyRevoked(**env(ids.new_id()), key_id=key))])
    assert tables.table("api_keys")[(key,)]["revoked_at"] is None


def test_row_ops_are_the_documented_kinds():
    org, iid = ids.new_id(), ids.new_id()
    event = instance_event("instance.requested", org, iid)
    ops = project(event, meta_for(event, 1), {})
    assert [type(o) for o in ops] == [Upsert, InsertIfAbsent, InsertIfAbsent]
    assert ops[0].seq == 1 and ops[0].key == ("id",)
    revoke = project(ApiKeyRevoked(**env(org), key_id=ids.new_id()), EventMeta(2, ""), {})
    assert isinstance(revoke[0], InsertIfAbsent) and revoke[0].row["error_code"] == "INVALID_EVENT"  # subject mismatch


def test_every_transition_table_tag_has_an_action_type():
    from services.projector.projections.action_log import ACTION_TYPES

    for tag in lifecycle.TRANSITIONS:
        assert tag in ACTION_TYPES, tag
    assert event_tag(instance_event("instance.failed", ids.new_id(), ids.new_id())) == "instance.failed"


def test_update_run_semantics():
    tables = new_tables()
    tables.apply([InsertIfAbsent("api_keys", {"id": "k", "org_id": "o", "revoked_at": None, "last_event_seq": 1},
                                 key=("id",))])  # fmt: skip
    tables.apply([Update("api_keys", {"id": "k", "org_id": "o"}, {"revoked_at": "t1"}, 3, frozenset({"revoked_at"})),
                  Update("api_keys", {"id": "k", "org_id": "o"}, {"revoked_at": "t0"}, 2, frozenset({"revoked_at"}))])
    assert tables.table("api_keys")[("k",)]["revoked_at"] == "t1"


def test_a_catalog_observation_replaces_the_zone_row():
    from decimal import Decimal

    from contracts.events import CatalogOffersObserved, ProviderOffer
    from datetime import datetime, timezone

    T0 = datetime(2026, 11, 21, tzinfo=timezone.utc)
    event = CatalogOffersObserved(
        id="e1", org_id="system", actor="system:orchestrator", correlation_id="c", causation_id="c",
        occurred_at=T0, provider_code="scaleway", zone_code="fr-par-2",
        offers=(ProviderOffer(name="L4-1-24G", hourly_price_eur=Decimal("0.85"), gpu_count=1),))
    meta = EventMeta(seq=7, subject="evt.system.catalog.scaleway-fr-par-2.offers_observed", timestamp=T0)
    [op] = project(event, meta, {})
    assert op.table == "provider_offers" and op.key == ("provider_code", "zone_code")
    assert op.row["offers"][0]["name"] == "L4-1-24G" and op.row["offers"][0]["hourly_price_eur"] == "0.85"
    assert op.row["last_event_seq"] == 7
