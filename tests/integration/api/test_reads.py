"""Reads: catalog, instances and action logs, always scoped by the caller's organisation."""

from __future__ import annotations

from datetime import datetime, timezone

from contracts.ids import new_id

from .conftest import TYPE_L4, TYPE_MOCK, ZONE_LOCAL, ZONE_PAR2, add_member, insert_instance


async def _two_orgs(api):
    a = await add_member(api.js, api.pool, "a@example.com", slug="org-a")
    b = await add_member(api.js, api.pool, "b@example.com", slug="org-b")
    return a, b


async def test_catalog_reads_use_the_original_paths_and_fields(api):
    a, _ = await _two_orgs(api)
    await api.login(a)
    providers = (await api.client.get("/providers")).json()
    assert {p["code"] for p in providers} == {"mock", "scaleway", "oldcloud"}
    assert [p["code"] for p in (await api.client.get("/providers", params={"active": "false"})).json()] == ["oldcloud"]
    regions = (await api.client.get("/regions", params={"provider_code": "scaleway"})).json()
    assert [r["code"] for r in regions] == ["fr-par"]
    zones = (await api.client.get("/zones")).json()
    assert {"id", "code", "name", "region_id", "provider_id", "is_active"} <= set(zones[0])
    types = {t["code"]: t for t in (await api.client.get("/instance_types")).json()}
    assert types["mock-local-small"]["cost_per_hour"] == "0.3600"
    assert {"gpu_count", "vram_per_gpu_gb", "cpu_count", "ram_gb", "bandwidth_bps", "allocation_params"} <= set(
        types["L4-1-24G"])
    models = (await api.client.get("/models")).json()
    assert any(m["model_id"] == "mock-echo-model" and m["metadata"] == {"provider_restriction": "mock"}
               for m in models)
    in_zone = (await api.client.get(f"/zones/{ZONE_PAR2}/instance_types")).json()
    assert [t["id"] for t in in_zone] == [TYPE_L4]  # the inactive H100 is not offered
    assert [t["id"] for t in (await api.client.get(f"/zones/{ZONE_LOCAL}/instance_types")).json()] == [TYPE_MOCK]
    assert (await api.client.get("/zones/not-a-uuid/instance_types")).status_code == 422


async def test_instances_are_scoped_by_org_and_join_the_last_heartbeat(api):
    a, b = await _two_orgs(api)
    mine = await insert_instance(api.pool, a.org_id)
    archived = await insert_instance(api.pool, a.org_id, status="archived", archived=True)
    theirs = await insert_instance(api.pool, b.org_id)
    await api.pool.execute(
        """INSERT INTO public.worker_heartbeats (instance_id, org_id, status, model, received_at, stream_seq, payload)
           VALUES ($1, $2, 'ready', 'mock-echo-model', $3, 7, $4)""",
        mine, a.org_id, datetime.now(timezone.utc), {"status": "ready", "engine": {"requests_running": 1}},
    )
    await api.login(a)
    listed = (await api.client.get("/instances")).json()
    assert [i["id"] for i in listed] == [mine]
    row = listed[0]
    assert row["organization_id"] == a.org_id and row["worker_status"] == "ready" and row["last_heartbeat_at"]
    assert row["cost_per_hour"] == "0.3600" and row["progress_percent"] == 100
    assert [i["id"] for i in (await api.client.get("/instances", params={"archived": "true"})).json()] == [archived]

    detail = await api.client.get(f"/instances/{mine}")
    assert detail.status_code == 200
    assert detail.json()["last_heartbeat"]["engine"]["requests_running"] == 1
    other = await api.client.get(f"/instances/{theirs}")
    assert other.status_code == 404 and other.headers["content-type"].startswith("application/problem+json")
    bad = await api.client.get("/instances/1;DROP TABLE x")
    assert bad.status_code in (404, 422)
    assert (await api.client.get("/instances/zzz")).status_code == 422


async def test_action_logs_are_scoped_by_org_and_filterable(api):
    a, b = await _two_orgs(api)
    inst = await insert_instance(api.pool, a.org_id)
    now = datetime.now(timezone.utc)
    rows = [(1, a.org_id, inst, "REQUEST_CREATE"), (2, a.org_id, inst, "INSTANCE_READY"),
            (3, a.org_id, None, "API_KEY_CREATED"), (4, b.org_id, None, "REQUEST_CREATE")]
    for seq, org, instance_id, action in rows:
        await api.pool.execute(
            """INSERT INTO rm.action_logs (seq, id, org_id, instance_id, action_type, event_type, component, status,
                   actor, correlation_id, created_at)
               VALUES ($1, $2, $3, $4, $5, 'x.y', 'orchestrator', 'success', 'system:test', 'c', $6)""",
            seq, new_id(), org, instance_id, action, now,
        )
    await api.login(a)
    all_rows = (await api.client.get("/action_logs")).json()
    assert [r["seq"] for r in all_rows] == [3, 2, 1]
    assert [r["action_type"] for r in (await api.client.get("/action_logs", params={"instance_id": inst})).json()] == [
        "INSTANCE_READY", "REQUEST_CREATE"]
    assert len((await api.client.get("/action_logs", params={"limit": 1})).json()) == 1
    assert (await api.client.get("/action_logs", params={"limit": 5000})).status_code == 422
    assert (await api.client.get("/action_logs", params={"instance_id": "evt.>"})).status_code == 422


async def test_ops_endpoints_openapi_and_metrics(api):
    assert (await api.client.get("/healthz")).json()["status"] == "ok"
    assert (await api.client.get("/readyz")).status_code == 200
    spec = (await api.client.get("/api-docs/openapi.json")).json()
    assert {"/deployments", "/instances/{instance_id}", "/events/stream", "/auth/login"} <= set(spec["paths"])
    assert set(spec["components"]["securitySchemes"]) == {"session", "bearer"}
    assert (await api.client.get("/api-docs/swagger")).status_code == 200
    redirect = await api.client.get("/swagger-ui", follow_redirects=False)
    assert redirect.status_code in (301, 302, 307, 308) and redirect.headers["location"] == "/api-docs/swagger"
    await api.client.get("/instances")
    text = (await api.client.get("/metrics")).text
    assert 'inventiv_api_http_requests_total{method="GET",route="/instances",status="401"}' in text
    assert "inventiv_api_sse_clients" in text
    missing = await api.client.get("/no/such/route")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
