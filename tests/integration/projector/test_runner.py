"""The runner against real NATS and Postgres: rows, latency, idempotency, faults."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from contracts import codec, ids
from contracts.events import OrganizationCreated
from services.projector.read_model import ReadModelProjection
from services.projector.runner import StreamRecord, apply_batch, catch_up, read_checkpoint, wait_for_seq
from tests.helpers import wait_until
from tests.unit.projector.builders import env, happy_path, identity_events, instance_event

from .conftest import APP, append_all, table_rows


def _errors(kind: str) -> float:
    labels = {"projection": "read_model", "schema": "rm", "kind": kind}
    return REGISTRY.get_sample_value("inventiv_projection_errors_total", labels) or 0.0


async def test_events_become_rows_and_live_events_show_up_fast(store, pool, projector):
    org, user, key = ids.new_id(), ids.new_id(), ids.new_id()
    a, b = ids.new_id(), ids.new_id()
    seqs = await append_all(store, identity_events(org, user, key) + happy_path(org, a)[:6] + happy_path(org, b)[:2])
    projector.start()
    assert await wait_for_seq(pool, seqs[-1]) == seqs[-1]

    async with pool.acquire() as conn:
        ready = await conn.fetchrow("SELECT * FROM rm.instances WHERE id = $1", a)
        booting = await conn.fetchrow("SELECT * FROM rm.instances WHERE id = $1", b)
        assert (ready["status"], ready["progress_percent"]) == ("ready", 100)
        assert ready["upstream_url"] == "http://10.0.0.7:8000"
        assert str(ready["org_id"]) == org and ready["ready_at"] is not None and ready["last_event_seq"] == seqs[10]
        assert (booting["status"], booting["progress_percent"]) == ("booting", 30)
        history = await conn.fetch(
            "SELECT from_status, to_status FROM rm.instance_state_history WHERE instance_id = $1 ORDER BY seq", a
        )
        assert [tuple(h) for h in history] == [(None, "provisioning"), ("provisioning", "booting"),
                                               ("booting", "installing"), ("installing", "starting"),
                                               ("starting", "ready")]  # fmt: skip
        assert await conn.fetchval("SELECT count(*) FROM rm.action_logs") == len(seqs)
        key_row = await conn.fetchrow("SELECT * FROM rm.api_keys WHERE id = $1", key)
        assert key_row["revoked_at"] is not None and key_row["scopes"] == ["inference", "manage"]
        assert await conn.fetchval("SELECT role FROM rm.memberships WHERE user_id = $1", user) == "owner"
        log = await conn.fetchrow("SELECT * FROM rm.action_logs WHERE seq = $1", seqs[6])
        assert log["action_type"] == "PROVIDER_CREATE" and log["metadata"]["ip_address"] == "10.0.0.7"

    # Live: an appended event is in Postgres within tens of milliseconds.
    latencies = []
    for event in happy_path(org, b)[2:6]:
        t0 = time.perf_counter()
        seq = await store.append(event, expected_last_seq=None)
        await wait_for_seq(pool, seq, timeout_s=5)
        latencies.append(time.perf_counter() - t0)
    print(f"append -> visible latencies (s): {[round(x, 4) for x in latencies]}")
    assert sorted(latencies)[len(latencies) // 2] < 0.25

    applied = REGISTRY.get_sample_value("inventiv_projection_events_applied_total",
                                        {"projection": "read_model", "schema": "rm"})  # fmt: skip
    assert applied is not None and applied >= len(seqs)


async def test_replaying_and_redelivering_changes_nothing(nats_client, store, pool):
    org, iid = ids.new_id(), ids.new_id()
    user, key = ids.new_id(), ids.new_id()
    events = happy_path(org, iid) + identity_events(org, user, key)
    seqs = await append_all(store, events)
    projection = ReadModelProjection()
    assert await catch_up(nats_client, pool, projection, schema="rm") == seqs[-1]
    async with pool.acquire() as conn:
        before = await table_rows(conn)
        # Redelivery of a batch: everything is at or below the checkpoint.
        raw = await nats_client.jetstream().get_msg("EVENTS", seq=seqs[3])
        record = StreamRecord(raw.seq, raw.subject, raw.data, raw.headers or {}, None)
        assert await apply_batch(conn, projection, "rm", [record]) == (seqs[-1], 0)
        # A full replay with the checkpoint wound back: only the row guards protect now.
        await conn.execute("UPDATE rm.checkpoints SET last_seq = 0")
    assert await catch_up(nats_client, pool, projection, schema="rm") == seqs[-1]
    async with pool.acquire() as conn:
        assert await table_rows(conn) == before


async def test_rival_projectors_apply_each_event_once(store, pool, projector):
    orgs = [ids.new_id() for _ in range(4)]
    events = [e for org in orgs for e in happy_path(org, ids.new_id())]
    seqs = await append_all(store, events)
    for _ in range(3):
        projector.start(batch_size=7)
    await wait_for_seq(pool, seqs[-1])
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM rm.action_logs") == len(events)
        assert await conn.fetchval("SELECT count(*) FROM rm.instances WHERE status = 'archived'") == 4


async def test_killed_postgres_connections_resume_without_loss_or_duplicates(store, pool, projector, database_url):
    import asyncpg

    projector.start(batch_size=50)
    orgs = [ids.new_id() for _ in range(30)]
    admin = await asyncpg.connect(database_url)
    kills = 0
    last = 0
    try:
        for i, org in enumerate(orgs):
            seqs = await append_all(store, happy_path(org, ids.new_id()))
            last = seqs[-1]
            if i % 5 == 2:
                # Kill the projector's connections while it works.
                kills += len(await admin.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", APP))
        assert kills > 0
        await wait_for_seq(pool, last, timeout_s=20)
        # After resuming: every event exactly once, every instance complete.
        n = await admin.fetchval("SELECT count(*) FROM rm.action_logs")
        seq_set = await admin.fetchval("SELECT count(DISTINCT seq) FROM rm.action_logs")
        assert n == seq_set == last
        assert await admin.fetchval("SELECT count(*) FROM rm.instances WHERE status = 'archived'") == len(orgs)
        assert await admin.fetchval("SELECT count(*) FROM rm.instance_state_history") == 8 * len(orgs)
    finally:
        await admin.close()
    assert _errors("connection") + _errors("postgres") > 0


async def test_nats_restart_is_survived(nats_server, nats_client, store, pool, projector):
    org = ids.new_id()
    seqs = await append_all(store, happy_path(org, ids.new_id())[:3])
    projector.start()
    await wait_for_seq(pool, seqs[-1])
    nats_server.stop()
    nats_server.start()
    await wait_until(lambda: nats_client.is_connected, timeout_s=10, message="client reconnected")
    await wait_until(lambda: _jetstream_answers(nats_client), timeout_s=10, message="JetStream ready")
    seqs = await append_all(store, happy_path(ids.new_id(), ids.new_id()))
    await wait_for_seq(pool, seqs[-1], timeout_s=20)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM rm.action_logs") == seqs[-1]


async def _jetstream_answers(nc) -> bool:
    try:
        await nc.jetstream(timeout=0.5).stream_info("EVENTS")
        return True
    except Exception:
        return False


async def test_bad_events_are_logged_and_do_not_stop_the_projection(nats_client, store, pool, projector):
    js = nats_client.jetstream()
    org, iid, user = ids.new_id(), ids.new_id(), ids.new_id()
    # 1. Not an event at all.
    garbage = await js.publish(f"evt.{org}.instance.{iid}.requested", b"{not json", stream="EVENTS")
    # 2. A second organisation with the same slug: Postgres refuses it (unique slug).
    first = OrganizationCreated(**env(org), organization_id=org, name="A", slug="same-slug")
    other = ids.new_id()
    clash = OrganizationCreated(**env(other), organization_id=other, name="B", slug="same-slug")
    seqs = await append_all(store, [first, clash])
    # 3. A valid event after them.
    good = await store.append(instance_event("instance.requested", org, iid), expected_last_seq=None)
    projector.start()
    await wait_for_seq(pool, good)
    async with pool.acquire() as conn:
        logs = {r["seq"]: r for r in await conn.fetch("SELECT * FROM rm.action_logs")}
        assert (logs[garbage.seq]["action_type"], logs[garbage.seq]["status"]) == ("INVALID_EVENT", "failed")
        assert (logs[seqs[1]]["action_type"], logs[seqs[1]]["status"], logs[seqs[1]]["error_code"]) == (
            "ORG_CREATED", "failed", "PROJECTION_ERROR")
        assert logs[seqs[0]]["status"] == "success"
        assert await conn.fetchval("SELECT count(*) FROM rm.organizations") == 1
        assert await conn.fetchval("SELECT status FROM rm.instances WHERE id = $1", iid) == "provisioning"
    assert REGISTRY.get_sample_value("inventiv_projection_refused_events_total", {"projection": "read_model"}) >= 1


async def test_wait_for_seq_times_out_with_a_clear_error(pool):
    with pytest.raises(TimeoutError, match="checkpoint rm.read_model"):
        await wait_for_seq(pool, 10, timeout_s=0.05)
    assert await read_checkpoint(pool, "rm", "read_model") == 0


async def test_catch_up_stops_at_until_seq(nats_client, store, pool):
    seqs = await append_all(store, happy_path(ids.new_id(), ids.new_id()))
    progress = []
    assert await catch_up(nats_client, pool, ReadModelProjection(), schema="rm", until_seq=seqs[4],
                          progress=lambda done, total: progress.append((done, total))) == seqs[4]  # fmt: skip
    assert progress[0] == (0, seqs[4]) and progress[-1] == (seqs[4], seqs[4])
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT max(seq) FROM rm.action_logs") == seqs[4]


async def test_raw_subject_and_codec_agree():
    # The builders produce subjects the codec accepts (guards the fixtures above).
    event = instance_event("instance.ready", ids.new_id(), ids.new_id())
    assert codec.event_subject_for(event).endswith(".ready")
    await asyncio.sleep(0)


async def test_projector_does_not_write_into_a_schema_built_by_other_code(store, pool, projector):
    seqs = await append_all(store, happy_path(ids.new_id(), ids.new_id())[:2])
    async with pool.acquire() as conn:
        await conn.execute("UPDATE rm.meta SET projection_version = projection_version + 1")
    before = _errors("other")
    projector.start()
    await wait_until(lambda: _errors("other") > before, message="projector refused the schema")
    assert await read_checkpoint(pool, "rm", "read_model") == 0
    async with pool.acquire() as conn:
        await conn.execute("UPDATE rm.meta SET projection_version = projection_version - 1")
    await wait_for_seq(pool, seqs[-1], timeout_s=15)
