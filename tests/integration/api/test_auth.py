"""Sign-in, sessions, API keys: through HTTP, against real NATS and Postgres."""

from __future__ import annotations

from services.api.bootstrap_admin import ensure_admin
from tests.helpers import wait_until

from .conftest import add_member, project_identity

PROBLEM = "application/problem+json"


async def test_login_me_logout(api):
    alice = await add_member(api.js, api.pool, "Alice@Example.com", slug="acme")
    resp = await api.client.post("/auth/login", json={"email": "alice@example.com", "password": alice.password})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["id"] == alice.user_id and body["email"] == "alice@example.com" and body["role"] == "user"
    assert body["organization_id"] == alice.org_id and body["organization_role"] == "owner"
    cookie = resp.headers["set-cookie"]
    assert "inventiv_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert "Secure" not in cookie  # plain http here; https requests get Secure

    me = await api.client.get("/auth/me")
    assert me.status_code == 200 and me.json()["organization_slug"] == "acme"

    out = await api.client.post("/auth/logout")
    assert out.status_code == 204
    # The server-side session is revoked: replaying the old cookie does not work.
    token = resp.cookies.get("inventiv_session")
    again = await api.client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert again.status_code == 401 and again.headers["content-type"].startswith(PROBLEM)
    assert (await api.client.get("/auth/me")).status_code == 401


async def test_session_token_works_as_bearer_and_https_sets_secure(api):
    bob = await add_member(api.js, api.pool, "bob@example.com", slug="bobs")
    token = await api.session_token(bob)
    me = await api.client.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["auth_method"] == "session"
    https = await api.client.post("https://testserver.local/auth/login",
                                  json={"email": bob.email, "password": bob.password})
    assert "Secure" in https.headers["set-cookie"]


async def test_bad_passwords_and_unknown_users_get_the_same_generic_401(api):
    carol = await add_member(api.js, api.pool, "carol@example.com", slug="carols")
    wrong = await api.client.post("/auth/login", json={"email": carol.email, "password": "nope"})
    unknown = await api.client.post("/auth/login", json={"email": "nobody@example.com", "password": "nope"})
    for resp in (wrong, unknown):
        assert resp.status_code == 401
        assert resp.headers["content-type"].startswith(PROBLEM)
        body = resp.json()
        assert body["status"] == 401 and body["detail"] == "invalid email or password"
        assert "Traceback" not in resp.text
    assert "set-cookie" not in wrong.headers


async def test_login_failures_are_throttled(nats_server, nats_client, api_db, pool, tmp_path):
    from litestar.testing import AsyncTestClient

    from .conftest import make_app

    app = make_app(nats_server, api_db, tmp_path, login_max_failures=3)
    async with AsyncTestClient(app) as client:
        dave = await add_member(nats_client.jetstream(), pool, "dave@example.com", slug="daves")
        for _ in range(3):
            assert (await client.post("/auth/login", json={"email": dave.email, "password": "x"})).status_code == 401
        blocked = await client.post("/auth/login", json={"email": dave.email, "password": dave.password})
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0


async def test_requests_without_credentials_or_with_bad_ones_are_refused(api):
    assert (await api.client.get("/instances")).status_code == 401
    for header in ("Bearer sk-inv-" + "0" * 64, "Bearer not-a-session", "Basic abc", "Bearer "):
        resp = await api.client.get("/instances", headers={"Authorization": header})
        assert resp.status_code == 401, header
        assert resp.headers["content-type"].startswith(PROBLEM)


async def test_api_key_works_at_once_and_stops_working_when_revoked(api):
    erin = await add_member(api.js, api.pool, "erin@example.com", slug="erins")
    await api.login(erin)
    created = await api.client.post("/api_keys", json={"name": "ci"})
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert key.startswith("sk-inv-") and body["prefix"] == key[:15] and body["organization_id"] == erin.org_id
    assert set(body) >= {"id", "name", "key", "prefix", "created_at"}
    bearer = {"Authorization": f"Bearer {key}"}

    # Works on the very next request, before any projection.
    me = await api.client.get("/auth/me", headers=bearer)
    assert me.status_code == 200 and me.json()["auth_method"] == "api_key" and me.json()["api_key_id"] == body["id"]
    assert (await api.client.get("/instances", headers=bearer)).status_code == 200

    # Listed without its secret once projected.
    await project_identity(api.pool, api.js)
    listed = (await api.client.get("/api_keys")).json()
    assert [k["id"] for k in listed] == [body["id"]]
    assert "key" not in listed[0] and key not in str(listed)

    # A key cannot mint keys.
    assert (await api.client.post("/api_keys", json={"name": "x"}, headers=bearer)).status_code == 403

    revoked = await api.client.delete(f"/api_keys/{body['id']}")
    assert revoked.status_code == 204
    await wait_until(lambda: _status(api, bearer), timeout_s=5, message="revoked key refused")
    assert (await api.client.delete(f"/api_keys/{body['id']}")).status_code == 204  # idempotent


async def _status(api, headers) -> bool:
    return (await api.client.get("/instances", headers=headers)).status_code == 401


async def test_api_keys_of_another_org_or_bad_ids_are_not_found(api):
    frank = await add_member(api.js, api.pool, "frank@example.com", slug="franks")
    grace = await add_member(api.js, api.pool, "grace@example.com", slug="graces")
    await api.login(frank)
    key_id = (await api.client.post("/api_keys", json={"name": "f"})).json()["id"]
    api.client.cookies.clear()
    await api.login(grace)
    assert (await api.client.delete(f"/api_keys/{key_id}")).status_code == 404
    bad = await api.client.delete("/api_keys/not-a-uuid")
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "key_id"


async def test_cookie_writes_from_another_origin_are_refused(api):
    heidi = await add_member(api.js, api.pool, "heidi@example.com", slug="heidis")
    await api.login(heidi)
    evil = await api.client.post("/api_keys", json={"name": "x"}, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    same = await api.client.post("/api_keys", json={"name": "x"}, headers={"Origin": "http://testserver.local"})
    assert same.status_code == 201


async def test_ensure_admin_is_idempotent_and_the_admin_can_sign_in(api):
    generated = await ensure_admin(api.js, email="Root@Example.com", password=None)
    assert generated and len(generated) >= 16
    assert await ensure_admin(api.js, email="root@example.com", password=None) is None
    assert await ensure_admin(api.js, email="root@example.com", password="other") is None
    info = await api.js.stream_info("EVENTS")
    assert info.state.messages == 3  # user, organisation, membership: once
    await project_identity(api.pool, api.js)
    resp = await api.client.post("/auth/login", json={"email": "root@example.com", "password": generated})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["role"] == "admin" and body["organization_slug"] == "inventiv-it"
    assert body["organization_role"] == "owner"
