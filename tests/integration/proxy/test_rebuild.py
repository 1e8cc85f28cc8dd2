"""Start-up: the routing table and key cache rebuild from the read model + the streams, with no gap."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import httpx

from contracts import ids
from services.api.keys import generate_api_key, hash_api_key
from services.api.proxy.policy import eligible
from services.runtime import natsio

READ_MODEL_SQL = Path(__file__).resolve().parents[3] / "services" / "projector" / "sql" / "read_model.sql"
MSG = [{"role": "user", "content": "hello"}]


async def _create_rm(conn) -> None:
    await conn.execute(READ_MODEL_SQL.read_text().replace("{schema}", "rm"))


async def _insert_instance(conn, iid: str, org: str, model: str, url: str, status: str = "ready") -> None:
    now = datetime.now(timezone.utc)
    cols = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema='rm' AND table_name='instances'")
    row = dict(id=uuid.UUID(iid), org_id=uuid.UUID(org), status=status, provider_code="mock", region_code="r",
               zone_code="z", zone_id=uuid.uuid4(), instance_type_code="t", instance_type_id=uuid.uuid4(),
               gpu_count=1, model_id=uuid.uuid4(), model_name=model, hourly_price_eur=1, upstream_url=url,
               startup_deadline=now, created_at=now, updated_at=now, last_event_seq=1)
    row = {k: v for k, v in row.items() if k in {c["column_name"] for c in cols}}
    names = ", ".join(row)
    params = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    await conn.execute(f"INSERT INTO rm.instances ({names}) VALUES ({params})", *row.values())


async def _insert_key(conn, raw: str, org: str, *, revoked: bool = False) -> str:
    key_id = ids.new_id()
    # Keys belong to a member of their organisation: the key cache refuses any other.
    owner, now = uuid.uuid4(), datetime.now(timezone.utc)
    await conn.execute("INSERT INTO rm.users (id, email, password_hash, created_at) VALUES ($1, $2, 'x', $3)",
                       owner, f"{owner}@example.com", now)
    await conn.execute("INSERT INTO rm.memberships (organization_id, user_id, role, created_at) "
                       "VALUES ($1, $2, 'owner', $3)", uuid.UUID(org), owner, now)
    cols = {c["column_name"] for c in await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_schema='rm' AND table_name='api_keys'")}
    row = dict(id=uuid.UUID(key_id), org_id=uuid.UUID(org), user_id=owner, name="k", prefix=raw[:15],
               key_hash=hash_api_key(raw), scopes=["inference"], created_at=datetime.now(timezone.utc),
               revoked_at=datetime.now(timezone.utc) if revoked else None, last_event_seq=1)
    row = {k: v for k, v in row.items() if k in cols}
    names = ", ".join(row)
    params = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    await conn.execute(f"INSERT INTO rm.api_keys ({names}) VALUES ({params})", *row.values())
    return key_id


async def test_start_rebuilds_from_read_model_heartbeat_stream_and_events_after_the_checkpoint(
        harness, database_url):
    org = harness.org
    e_rm = await harness.engine("m1")
    e_new = await harness.engine("m1")
    e_ghost = await harness.engine("m1")
    conn = await asyncpg.connect(database_url)
    try:
        await _create_rm(conn)
        await conn.execute(
            "INSERT INTO public.models (id, name, model_id, context_length, metadata) VALUES ($1, $2, $3, $4, $5)",
            uuid.uuid4(), "Model One", "m1", 8192, json.dumps({"family": "test"}))
        # Before the checkpoint: an event the read model does NOT reflect. Starting from checkpoint + 1
        # must not replay it (the rows are the truth up to the checkpoint).
        ghost_id = await harness.ready(e_ghost.url, "m1")
        rm_id = ids.new_id()
        await _insert_instance(conn, rm_id, org, "m1", e_rm.url)
        await _insert_instance(conn, ids.new_id(), org, "m1", "http://127.0.0.1:1", status="terminated")
        raw_rm, raw_revoked = generate_api_key(), generate_api_key()
        await _insert_key(conn, raw_rm, org)
        await _insert_key(conn, raw_revoked, org, revoked=True)
        checkpoint = await natsio.stream_last_seq(harness.js, "EVENTS")
        await conn.execute("INSERT INTO rm.checkpoints (name, last_seq) VALUES ('read_model', $1)", checkpoint)
    finally:
        await conn.close()
    # After the checkpoint, before the proxy starts: must be caught up.
    new_id = await harness.ready(e_new.url, "m1", heartbeat=None)
    raw_new, _ = await harness.api_key(wait=False)
    # Heartbeats published before start live only in the HEARTBEATS stream.
    for iid in (rm_id, new_id, ghost_id):
        await harness.heartbeat(iid, "m1")

    await harness.start_proxy(database_url=database_url)

    # No waiting: start() returns once the snapshot and the catch-up are applied.
    table = harness.proxy.table
    assert sorted(w.instance_id for w in eligible(table.snapshot, "m1", time.time(), {})) == sorted([rm_id, new_id])
    keys = harness.stack.key_cache
    assert keys.authenticate(raw_rm) is not None and keys.authenticate(raw_new) is not None
    assert keys.authenticate(raw_revoked) is None

    async with httpx.AsyncClient(base_url=harness.base_url, headers={"Authorization": f"Bearer {raw_rm}"}) as http:
        models = (await http.get("/models")).json()
        assert models["data"][0]["id"] == "m1"
        assert models["data"][0]["max_model_len"] == 8192 and models["data"][0]["metadata"] == {"family": "test"}
        for _ in range(4):
            assert (await http.post("/chat/completions", json={"model": "m1", "messages": MSG})).status_code == 200
    assert e_rm.calls == 2 and e_new.calls == 2 and e_ghost.calls == 0
