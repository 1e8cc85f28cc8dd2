"""Sessions that must not work (expired, revoked, tampered, foreign) and cross-origin writes (CSRF)."""

from __future__ import annotations

import secrets

import pytest

from services.api.auth.sessions import token_digest


async def _auth_me(idp, cookie: str):
    return await idp.client(cookies={"inventiv_session": cookie}).get("/auth/me")


async def _write(idp, cookie: str):
    return await idp.client(cookies={"inventiv_session": cookie}).post("/api_keys", json={"name": "nope"})


async def test_expired_revoked_tampered_and_foreign_cookies_are_401(idp):
    me = await idp.user("cookie@example.com")
    await idp.org(me, "cookie-org")
    good = me.token
    assert (await _auth_me(idp, good)).status_code == 200

    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    foreign = secrets.token_urlsafe(32)  # a well-formed token this deployment never issued
    for bad in (tampered, foreign, good + "x", "", "a" * 300):
        assert (await _auth_me(idp, bad)).status_code == 401, bad
        assert (await _write(idp, bad)).status_code == 401, bad

    expiring = await idp.person("cookie@example.com")
    await idp.pool.execute("UPDATE user_sessions SET expires_at = now() - interval '1 second' WHERE token_sha256 = $1",
                           token_digest(expiring.token))
    assert (await _auth_me(idp, expiring.token)).status_code == 401
    assert (await _write(idp, expiring.token)).status_code == 401

    leaving = await idp.person("cookie@example.com")
    token = leaving.token
    assert (await leaving.client.post("/auth/logout")).status_code == 204
    assert (await _auth_me(idp, token)).status_code == 401
    # As a Bearer token too.
    assert (await idp.client().get("/auth/me", headers={"Authorization": f"Bearer {token}"})).status_code == 401
    assert (await _auth_me(idp, good)).status_code == 200  # the other session was untouched


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"}, {"Origin": "null"},
                                     {"Sec-Fetch-Site": "cross-site"}])
async def test_cookie_authenticated_writes_from_a_foreign_origin_are_refused(idp, headers):
    me = await idp.user(f"csrf-{len(headers)}-{list(headers.values())[0][:4]}@example.com".replace(":", ""))
    org_id = await idp.org(me, f"csrf-{abs(hash(str(headers))) % 10**6}")
    await idp.settled()
    before = (await idp.js.stream_info("EVENTS")).state.last_seq
    for method, path, body in (("POST", "/api_keys", {"name": "csrf"}),
                               ("POST", "/organizations/current/invitations", {"email": "x@example.com"}),
                               ("PUT", "/organizations/current", {"organization_id": None}),
                               ("DELETE", f"/organizations/current/members/{me.user_id}", None),
                               ("POST", "/auth/sessions/revoke_others", None),
                               ("PUT", "/auth/me/password", {"current_password": "a perfectly fine passphrase",
                                                             "new_password": "attacker chose this one"})):
        resp = await me.client.request(method, path, json=body, headers=headers)
        assert resp.status_code == 403, (method, path, resp.text)
    assert (await idp.js.stream_info("EVENTS")).state.last_seq == before
    assert (await me.client.get("/auth/me")).json()["organization_id"] == org_id
    # Reads are fine, and the same write from our own origin works.
    assert (await me.client.get("/api_keys", headers=headers)).status_code == 200
    same = await me.client.post("/api_keys", json={"name": "ok"}, headers={"Origin": idp.url})
    assert same.status_code == 201
    # A foreign origin cannot sign someone in (login CSRF) either.
    login = await idp.client().post("/auth/login", json={"email": me.email, "password": me.password},
                                    headers=headers)
    assert login.status_code == 403
