"""API keys: scopes bounded by the creator's role, expiry, rename, revoke, last use, org visibility."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from services.finops import store as finops_store
from tests.helpers import wait_until


async def test_scopes_are_bounded_by_the_creators_role(idp):
    owner = await idp.user("k-owner@example.com")
    await idp.org(owner, "key-scopes")
    user = await idp.user("k-user@example.com")
    await idp.join(owner, user, "user")
    default = await user.client.post("/api_keys", json={"name": "mine"})
    assert default.status_code == 201 and default.json()["scopes"] == ["inference"]
    more = await user.client.post("/api_keys", json={"name": "greedy", "scopes": ["inference", "manage"]})
    assert more.status_code == 403 and more.json()["errors"][0]["field"] == "scopes"
    bogus = await user.client.post("/api_keys", json={"name": "x", "scopes": ["root"]})
    assert bogus.status_code == 422
    both = await owner.client.post("/api_keys", json={"name": "ops", "scopes": ["manage", "inference"]})
    assert both.status_code == 201 and both.json()["scopes"] == ["inference", "manage"]
    inference_only = await owner.client.post("/api_keys", json={"name": "chat", "scopes": ["inference"]})
    key = inference_only.json()["key"]
    # A key without 'manage' cannot use the management API.
    assert (await idp.client().get("/instances", headers={"Authorization": f"Bearer {key}"})).status_code == 403
    # Keys cannot mint keys.
    manage_key = both.json()["key"]
    minted = await idp.client().post("/api_keys", json={"name": "child"}, headers={"Authorization": f"Bearer {manage_key}"})
    assert minted.status_code == 403


async def test_a_demoted_owner_s_key_loses_the_manage_scope_at_once(idp):
    owner = await idp.user("k-o2@example.com")
    await idp.org(owner, "key-demote")
    second = await idp.user("k-o3@example.com")
    await idp.join(owner, second, "owner")
    key = (await second.client.post("/api_keys", json={"name": "ops"})).json()["key"]
    auth = {"Authorization": f"Bearer {key}"}
    assert (await idp.client().get("/instances", headers=auth)).status_code == 200
    assert (await owner.client.put(f"/organizations/current/members/{second.user_id}",
                                   json={"role": "user"})).status_code == 200
    assert (await idp.client().get("/instances", headers=auth)).status_code == 403


async def test_expiry_rename_revoke_and_listing(idp):
    owner = await idp.user("k-o4@example.com")
    org_id = await idp.org(owner, "key-life")
    member = await idp.user("k-m4@example.com")
    await idp.join(owner, member, "manager")
    past = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    refused = await member.client.post("/api_keys", json={"name": "old", "expires_at": past})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "expires_at"
    soon = datetime.now(timezone.utc) + timedelta(days=30)
    made = await member.client.post("/api_keys", json={"name": "ci", "expires_at": soon.isoformat()})
    assert made.status_code == 201, made.text
    key_id, key = made.json()["id"], made.json()["key"]
    renamed = await member.client.put(f"/api_keys/{key_id}", json={"name": "ci-renamed"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "ci-renamed"
    listed = (await member.client.get("/api_keys")).json()
    assert [(k["name"], k["is_active"]) for k in listed] == [("ci-renamed", True)] and "key" not in listed[0]
    assert datetime.fromisoformat(listed[0]["expires_at"]) == soon
    # Owners and admins see every key of the organisation; others only theirs.
    await owner.client.post("/api_keys", json={"name": "owner-key"})
    assert {k["name"] for k in (await owner.client.get("/api_keys")).json()} == {"ci-renamed", "owner-key"}
    assert {k["name"] for k in (await member.client.get("/api_keys")).json()} == {"ci-renamed"}
    owner_key_id = next(k["id"] for k in (await owner.client.get("/api_keys")).json() if k["name"] == "owner-key")
    assert (await member.client.delete(f"/api_keys/{owner_key_id}")).status_code == 404
    # Revocation: refused at once by this process's cache.
    auth = {"Authorization": f"Bearer {key}"}
    assert (await idp.client().get("/instances", headers=auth)).status_code == 200
    assert (await owner.client.delete(f"/api_keys/{key_id}")).status_code == 204
    assert (await idp.client().get("/instances", headers=auth)).status_code == 401
    assert (await owner.client.delete(f"/api_keys/{key_id}")).status_code == 204  # idempotent
    await idp.settled()
    assert await idp.pool.fetchval("SELECT revoked_at IS NOT NULL FROM rm.api_keys WHERE id = $1 AND org_id = $2",
                                   key_id, org_id)


async def test_last_used_comes_from_finops_usage(idp):
    owner = await idp.user("k-o5@example.com")
    org_id = await idp.org(owner, "key-usage")
    key_id = (await owner.client.post("/api_keys", json={"name": "used"})).json()["id"]
    listed = (await owner.client.get("/api_keys")).json()
    assert listed[0]["last_used_at"] is None  # FinOps tables absent: unknown, not an error
    async with idp.pool.acquire() as conn:
        await finops_store.create_schema(conn, "finops")
        minute = datetime(2026, 5, 1, 12, 34, tzinfo=timezone.utc)
        await conn.execute(
            """INSERT INTO finops.usage_minute (org_id, bucket_minute, api_key_id, model, requests, error_requests,
                   prompt_tokens, completion_tokens) VALUES ($1, $2, $3, 'm', 1, 0, 1, 1)""", org_id, minute, key_id)
    listed = await wait_until(lambda: _listed(owner), timeout_s=10, message="last used")
    assert datetime.fromisoformat(listed[0]["last_used_at"]) == minute


async def _listed(owner):
    keys = (await owner.client.get("/api_keys")).json()
    return keys if keys and keys[0]["last_used_at"] else None


async def test_per_key_proxy_limits_are_set_by_owners_and_admins_only(idp):
    owner = await idp.user("k-o6@example.com")
    await idp.org(owner, "key-limits")
    manager = await idp.user("k-m6@example.com")
    await idp.join(owner, manager, "manager")
    limited = await owner.client.post("/api_keys", json={"name": "slow", "requests_per_minute": 5,
                                                         "max_concurrent_requests": 2})
    assert limited.status_code == 201 and limited.json()["requests_per_minute"] == 5
    listed = (await owner.client.get("/api_keys")).json()
    assert (listed[0]["requests_per_minute"], listed[0]["max_concurrent_requests"]) == (5, 2)
    refused = await manager.client.post("/api_keys", json={"name": "fast", "requests_per_minute": 10_000})
    assert refused.status_code == 403 and refused.json()["errors"][0]["field"] == "requests_per_minute"
    zero = await owner.client.post("/api_keys", json={"name": "unlimited", "max_concurrent_requests": 0})
    assert zero.status_code == 422 and zero.json()["errors"][0]["field"] == "max_concurrent_requests"
    # The proxy's key cache in this process holds the limits.
    principal = idp.app.state.keycache.authenticate(limited.json()["key"])
    assert (principal.requests_per_minute, principal.max_concurrent_requests) == (5, 2)
