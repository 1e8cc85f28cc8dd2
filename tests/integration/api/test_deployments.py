"""POST /deployments and DELETE /instances: validation, exactly one durable command, idempotency."""

from __future__ import annotations

import json

import pytest

from contracts import codec, headers
from contracts.commands import ProvisionInstance, TerminateInstance

from .conftest import MODEL_ECHO, TYPE_MOCK, ZONE_LOCAL, add_member, insert_instance

PROBLEM = "application/problem+json"
GOOD = {"model": "mock-echo-model", "instance_type": "mock-local-small", "zone": "local"}


@pytest.fixture
async def owner(api):
    member = await add_member(api.js, api.pool, "ops@example.com", slug="ops")
    await api.login(member)
    return member


async def test_happy_path_publishes_exactly_one_command_with_envelope_headers(api, owner):
    resp = await api.client.post("/deployments", json=GOOD, headers={"X-Request-Id": "req-123"})
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "provisioning" and body["correlation_id"] == "req-123"
    assert resp.headers["location"] == f"/instances/{body['instance_id']}"
    assert resp.headers["x-request-id"] == "req-123"
    assert await api.commands_count() == 1

    stored = await api.js.get_msg("COMMANDS", seq=1)
    assert stored.subject == "cmd.instance.provision"
    command = codec.decode_command(stored.data)
    assert isinstance(command, ProvisionInstance)
    assert command.id == body["command_id"] and command.instance_id == body["instance_id"]
    assert command.org_id == owner.org_id and command.actor == f"user:{owner.user_id}"
    placement = command.placement
    assert (placement.provider_code, placement.zone_code, placement.instance_type_code) == ("mock", "local",
                                                                                          "mock-local-small")
    assert placement.zone_id == ZONE_LOCAL and placement.instance_type_id == TYPE_MOCK
    assert placement.model_id == MODEL_ECHO and placement.model_name == "mock-echo-model"
    assert str(placement.hourly_price_eur) == "0.3600"
    h = stored.headers
    assert h[headers.MSG_ID] == command.id
    assert h[headers.CORRELATION_ID] == "req-123" and h[headers.CAUSATION_ID] == "req-123"
    assert h[headers.ACTOR] == f"user:{owner.user_id}" and h[headers.ORG] == owner.org_id
    assert h[headers.MESSAGE_TYPE] == "instance.provision" and h[headers.SCHEMA] == "1"


async def test_ids_and_codes_and_the_original_field_names_are_accepted(api, owner):
    by_ids = {"model_id": MODEL_ECHO, "instance_type": TYPE_MOCK, "zone": ZONE_LOCAL, "provider_code": "mock"}
    assert (await api.client.post("/deployments", json=by_ids)).status_code == 202
    assert await api.commands_count() == 1


async def test_an_api_key_deploys_as_itself(api, owner):
    key = await api.api_key(owner)
    resp = await api.client.post("/deployments", json=GOOD, headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 202, resp.text
    command = codec.decode_command((await api.js.get_msg("COMMANDS", seq=1)).data)
    assert command.actor.startswith("api_key:") and command.org_id == owner.org_id


async def test_idempotency_key_retry_returns_the_same_ids_and_stores_one_message(api, owner):
    hdr = {"Idempotency-Key": "deploy-0001"}
    first = await api.client.post("/deployments", json=GOOD, headers=hdr)
    second = await api.client.post("/deployments", json=GOOD, headers=hdr)
    assert first.status_code == second.status_code == 202
    assert first.json()["instance_id"] == second.json()["instance_id"]
    assert first.json()["command_id"] == second.json()["command_id"]
    assert await api.commands_count() == 1
    # The same key for something else is refused, and stores nothing.
    other = dict(GOOD, model="retired/model")
    assert (await api.client.post("/deployments", json=other, headers=hdr)).status_code == 422
    reuse = await api.client.post("/deployments", json=dict(GOOD, startup_timeout_s=600), headers=hdr)
    assert reuse.status_code == 422 and reuse.json()["errors"][0]["field"] == "Idempotency-Key"
    assert await api.commands_count() == 1


async def test_the_same_idempotency_key_in_two_orgs_makes_two_deployments(api, owner):
    first = await api.client.post("/deployments", json=GOOD, headers={"Idempotency-Key": "k1"})
    api.client.cookies.clear()
    other = await add_member(api.js, api.pool, "other@example.com", slug="other")
    await api.login(other)
    second = await api.client.post("/deployments", json=GOOD, headers={"Idempotency-Key": "k1"})
    assert first.status_code == second.status_code == 202
    assert first.json()["instance_id"] != second.json()["instance_id"]
    assert await api.commands_count() == 2


BAD_BODIES = [
    # (body bytes, status, field named in the problem)
    (b'{"model": "mock-echo-model", "zone": ', 400, "body"),
    (b"not json at all", 400, "body"),
    (b"", 422, "body"),
    (b"[]", 422, "body"),
    (json.dumps(dict(GOOD, org_id="00000000-0000-0000-0000-000000000000")).encode(), 422, "org_id"),
    (json.dumps(dict(GOOD, upstream_url="http://169.254.169.254/")).encode(), 422, "upstream_url"),
    (json.dumps(dict(GOOD, zone=5)).encode(), 422, "zone"),
    (json.dumps({"model": "mock-echo-model", "zone": "local"}).encode(), 422, "instance_type"),
    (json.dumps(dict(GOOD, zone="local\u0000")).encode(), 422, "zone"),
    (json.dumps(dict(GOOD, zone="evt.>")).encode(), 422, "zone"),
    (json.dumps(dict(GOOD, startup_timeout_s=-1)).encode(), 422, "startup_timeout_s"),
    (json.dumps(dict(GOOD, model="no-such-model")).encode(), 422, "model"),
    (json.dumps({"model_id": "00000000-0000-0000-0000-000000000001", "instance_type": "mock-local-small",
                 "zone": "local"}).encode(), 422, "model_id"),
    (json.dumps(dict(GOOD, model="retired/model")).encode(), 422, "model"),
    (json.dumps(dict(GOOD, zone="mars-1")).encode(), 422, "zone"),
    (json.dumps(dict(GOOD, zone="old-1")).encode(), 422, "zone"),
    (json.dumps(dict(GOOD, instance_type="no-such-type")).encode(), 422, "instance_type"),
    (json.dumps(dict(GOOD, instance_type="L4-1-24G")).encode(), 422, "instance_type"),  # another provider's type
    (json.dumps({"model": "Qwen/Qwen2.5-7B-Instruct", "instance_type": "H100-1-80G", "zone": "fr-par-2"}).encode(),
     422, "instance_type"),  # inactive type
    (json.dumps({"model": "Qwen/Qwen2.5-7B-Instruct", "instance_type": "L4-1-24G", "zone": "fr-par-3"}).encode(),
     422, "instance_type"),  # not available in that zone
    (json.dumps({"model": "meta-llama/Llama-3.1-70B-Instruct", "instance_type": "L4-1-24G",
                 "zone": "fr-par-2"}).encode(), 422, "model"),  # 160 GB > 24 GB
    (json.dumps({"model": "Qwen/Qwen2.5-7B-Instruct", "instance_type": "mock-local-small",
                 "zone": "local"}).encode(), 422, "model"),  # the mock provider runs mock models only
    (json.dumps({"model": "mock-echo-model", "instance_type": "L4-1-24G", "zone": "fr-par-2"}).encode(),
     422, "model"),  # a mock-only model elsewhere
    (json.dumps(dict(GOOD, provider_code="nope")).encode(), 422, "provider_code"),
    (json.dumps(dict(GOOD, model="a", model_id="b")).encode(), 422, "model"),
]


async def test_bad_input_is_refused_with_a_problem_naming_the_field_and_nothing_is_published(api, owner):
    # One app for every case (each case is independent: nothing may be published by any of them).
    failures = []
    for body, status, field in BAD_BODIES:
        resp = await api.client.post("/deployments", content=body, headers={"Content-Type": "application/json"})
        problem = resp.json() if resp.headers.get("content-type", "").startswith(PROBLEM) else {}
        named = [e["field"] for e in problem.get("errors", [])] or [str(problem.get("detail", "")).split(":")[0]]
        if (resp.status_code != status or problem.get("status") != status or field not in named
                or "Traceback" in resp.text):
            failures.append((body[:80], resp.status_code, resp.text[:300]))
    assert not failures, failures
    assert await api.commands_count() == 0


async def test_oversized_body_is_413_and_nothing_is_published(api, owner):
    body = json.dumps(dict(GOOD, model="x" * 200_000))
    resp = await api.client.post("/deployments", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 413 and resp.headers["content-type"].startswith(PROBLEM)
    assert await api.commands_count() == 0


async def test_unsafe_idempotency_keys_are_400_and_nothing_is_published(api, owner):
    for key in ["bad\r\nInjected: 1", "x" * 129, "has space", "sem;colon", "nul\x00"]:
        resp = await api.client.post("/deployments", json=GOOD, headers={"Idempotency-Key": key})
        assert resp.status_code == 400, (key, resp.text)
        assert resp.json()["errors"][0]["field"] == "Idempotency-Key"
        assert "Injected" not in resp.headers
    assert await api.commands_count() == 0


async def test_terminate_publishes_for_own_instances_only(api, owner):
    mine = await insert_instance(api.pool, owner.org_id)
    resp = await api.client.delete(f"/instances/{mine}")
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "terminating" and resp.json()["instance_id"] == mine
    command = codec.decode_command((await api.js.get_msg("COMMANDS", seq=1)).data)
    assert isinstance(command, TerminateInstance) and command.instance_id == mine

    stranger = await add_member(api.js, api.pool, "stranger@example.com", slug="strangers")
    theirs = await insert_instance(api.pool, stranger.org_id)
    assert (await api.client.delete(f"/instances/{theirs}")).status_code == 404
    assert (await api.client.delete("/instances/00000000-0000-0000-0000-000000000000")).status_code == 404
    bad = await api.client.delete("/instances/..%2f*")
    assert bad.status_code in (404, 422)
    bad = await api.client.delete("/instances/abc.def")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "instance_id"
    assert await api.commands_count() == 1


async def test_terminate_finds_an_instance_the_projector_has_not_folded_yet(api, owner):
    accepted = (await api.client.post("/deployments", json=GOOD)).json()
    # The orchestrator would append instance.requested; do it by hand (no projection here).
    from datetime import datetime, timedelta, timezone

    from contracts.events import InstanceRequested
    from contracts.ids import new_id
    from services.runtime.eventstore import JetStreamEventStore

    command = codec.decode_command((await api.js.get_msg("COMMANDS", seq=1)).data)
    now = datetime.now(timezone.utc)
    await JetStreamEventStore(api.js).append(InstanceRequested(
        id=new_id(), org_id=owner.org_id, actor=command.actor, correlation_id="c", causation_id=command.id,
        occurred_at=now, instance_id=accepted["instance_id"], placement=command.placement,
        startup_deadline=now + timedelta(hours=1)), expected_last_seq=0)
    resp = await api.client.delete(f"/instances/{accepted['instance_id']}")
    assert resp.status_code == 202, resp.text
