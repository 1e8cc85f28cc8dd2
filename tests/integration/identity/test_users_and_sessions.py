"""Accounts (platform administrators), my sessions, password change and reset by mail."""

from __future__ import annotations

import asyncio
import re

from .conftest import PASSWORD


async def test_admin_manages_users_and_new_users_are_not_admins(idp):
    admin = idp.admin
    created = await admin.client.post("/users", json={"email": "New@Example.com", "password": PASSWORD,
                                                      "first_name": "Nina"})
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["email"] == "new@example.com" and user["is_admin"] is False and user["role"] == "user"
    listed = (await admin.client.get("/users", params={"q": "nina"})).json()
    assert [u["email"] for u in listed] == ["new@example.com"]
    updated = await admin.client.put(f"/users/{user['id']}", json={"last_name": "Simone", "is_admin": True})
    assert updated.status_code == 200 and updated.json()["is_admin"] is True and updated.json()["last_name"] == "Simone"
    detail = (await admin.client.get(f"/users/{user['id']}")).json()
    assert detail["first_name"] == "Nina" and detail["memberships"] == []
    # Non-admins get 403 on every /users route.
    nina = await idp.person("new@example.com")
    plain = await idp.user("plain@example.com")
    for method, path in (("GET", "/users"), ("GET", f"/users/{user['id']}"), ("DELETE", f"/users/{user['id']}"),
                         ("PUT", f"/users/{user['id']}"), ("POST", "/users")):
        body = {"email": "q@example.com", "password": PASSWORD} if method == "POST" else {}
        resp = await plain.client.request(method, path, json=body if method in ("POST", "PUT") else None)
        assert resp.status_code == 403, (method, path, resp.text)
    # An admin never deletes (or demotes) themselves.
    assert (await admin.client.delete(f"/users/{admin.user_id}")).status_code == 409
    assert (await admin.client.put(f"/users/{admin.user_id}", json={"is_admin": False})).status_code == 409
    # Deleting an account ends its sessions.
    assert (await nina.client.get("/auth/me")).status_code == 200
    assert (await admin.client.delete(f"/users/{user['id']}")).status_code == 204
    assert (await nina.client.get("/auth/me")).status_code == 401
    assert (await admin.client.get(f"/users/{user['id']}")).status_code == 404
    # The address can be used again, for a new (non-admin) account.
    again = await admin.client.post("/users", json={"email": "new@example.com", "password": PASSWORD})
    assert again.status_code == 201 and again.json()["is_admin"] is False and again.json()["first_name"] == ""


async def test_user_creation_refuses_weak_passwords_bad_emails_and_duplicates(idp):
    admin = idp.admin
    for body, field in (({"email": "weak@example.com", "password": "short"}, "password"),
                        ({"email": "weak@example.com", "password": "aaaaaaaaaaaaaaa"}, "password"),
                        ({"email": "not an email", "password": PASSWORD}, "email"),
                        ({"email": "a@b", "password": PASSWORD}, "email"),
                        ({"email": "x@example.com", "password": PASSWORD, "first_name": "<b>"}, "first_name")):
        resp = await admin.client.post("/users", json=body)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.json()["errors"][0]["field"] == field
        assert body["password"] not in resp.text
    results = await asyncio.gather(*(admin.client.post("/users", json={"email": "dup@example.com",
                                                                       "password": PASSWORD}) for _ in range(4)))
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409]
    assert all(r.json()["errors"][0]["field"] == "email" for r in results if r.status_code == 409)
    await idp.settled()
    assert await idp.pool.fetchval("SELECT count(*) FROM rm.users WHERE email LIKE '%weak%' OR email = 'x@example.com'") == 0


async def test_list_and_revoke_my_sessions(idp):
    me = await idp.user("sessions@example.com")
    laptop = await idp.person("sessions@example.com")
    phone = await idp.person("sessions@example.com")
    sessions = (await me.client.get("/auth/sessions")).json()
    assert len(sessions) == 3 and sum(s["is_current"] for s in sessions) == 1
    current = next(s for s in sessions if s["is_current"])
    assert (await me.client.post(f"/auth/sessions/{current['id']}/revoke")).status_code == 409
    laptop_id = next(s["id"] for s in (await laptop.client.get("/auth/sessions")).json() if s["is_current"])
    assert (await me.client.post(f"/auth/sessions/{laptop_id}/revoke")).status_code == 204
    assert (await laptop.client.get("/auth/me")).status_code == 401
    # Someone else's session is not mine to revoke: 404, and it keeps working.
    other = await idp.user("other-sessions@example.com")
    other_id = (await other.client.get("/auth/sessions")).json()[0]["id"]
    assert (await me.client.post(f"/auth/sessions/{other_id}/revoke")).status_code == 404
    assert (await other.client.get("/auth/me")).status_code == 200
    revoked = await me.client.post("/auth/sessions/revoke_others")
    assert revoked.status_code == 200 and revoked.json() == {"revoked": 1}
    assert (await phone.client.get("/auth/me")).status_code == 401
    assert (await me.client.get("/auth/me")).status_code == 200


async def test_change_password_revokes_other_sessions(idp):
    me = await idp.user("changer@example.com")
    elsewhere = await idp.person("changer@example.com")
    wrong = await me.client.put("/auth/me/password", json={"current_password": "not it at all!!",
                                                           "new_password": "another fine passphrase"})
    assert wrong.status_code == 403 and wrong.json()["errors"][0]["field"] == "current_password"
    weak = await me.client.put("/auth/me/password", json={"current_password": PASSWORD, "new_password": "short"})
    assert weak.status_code == 422 and weak.json()["errors"][0]["field"] == "new_password"
    ok = await me.client.put("/auth/me/password", json={"current_password": PASSWORD,
                                                        "new_password": "another fine passphrase"})
    assert ok.status_code == 204, ok.text
    assert (await me.client.get("/auth/me")).status_code == 200
    assert (await elsewhere.client.get("/auth/me")).status_code == 401
    old = await idp.client().post("/auth/login", json={"email": me.email, "password": PASSWORD})
    assert old.status_code == 401
    new = await idp.client().post("/auth/login", json={"email": me.email, "password": "another fine passphrase"})
    assert new.status_code == 200


def _token(mail) -> str:
    return re.search(r"token=([A-Za-z0-9_.\-%]+)", mail.text).group(1)


async def test_password_reset_by_mail_single_use_and_anti_enumeration(idp):
    me = await idp.user("forgetful@example.com")
    anon = idp.client()
    known = await anon.post("/auth/password-reset/request", json={"email": "Forgetful@Example.com"})
    unknown = await anon.post("/auth/password-reset/request", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    mail = await idp.mail("password_reset", "forgetful@example.com")
    token = _token(mail)
    assert idp.mails(to="nobody@example.com") == []

    weak = await anon.post("/auth/password-reset/reset", json={"token": token, "new_password": "short"})
    assert weak.status_code == 422 and weak.json()["errors"][0]["field"] == "new_password"
    both = await asyncio.gather(*(idp.client().post("/auth/password-reset/reset",
                                                    json={"token": token, "new_password": f"new passphrase {i}!"})
                                  for i in range(2)))
    assert sorted(r.status_code for r in both) == [204, 422], [r.text for r in both]
    winner = next(i for i, r in enumerate(both) if r.status_code == 204)
    # Every session of the account was signed out; the new password works, once-used token does not.
    assert (await me.client.get("/auth/me")).status_code == 401
    login = await anon.post("/auth/login", json={"email": me.email, "password": f"new passphrase {winner}!"})
    assert login.status_code == 200
    reused = await anon.post("/auth/password-reset/reset", json={"token": token, "new_password": "yet another one!!"})
    assert reused.status_code == 422 and reused.json()["errors"][0]["field"] == "token"
    for bogus in ("abc", token[:-1] + ("A" if token[-1] != "A" else "B")):
        resp = await anon.post("/auth/password-reset/reset", json={"token": bogus, "new_password": "whatever works!"})
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "token"


async def test_a_newer_password_change_kills_older_reset_tokens(idp):
    me = await idp.user("twice-reset@example.com")
    await idp.client().post("/auth/password-reset/request", json={"email": me.email})
    token = _token(await idp.mail("password_reset", me.email))
    ok = await me.client.put("/auth/me/password", json={"current_password": PASSWORD,
                                                        "new_password": "changed meanwhile!"})
    assert ok.status_code == 204
    late = await idp.client().post("/auth/password-reset/reset", json={"token": token, "new_password": "too late now!"})
    assert late.status_code == 422


async def test_deleting_an_account_removes_it_everywhere_but_never_orphans_an_organization(idp):
    owner = await idp.user("sole-owner@example.com")
    await idp.org(owner, "sole")
    member = await idp.user("deleted-member@example.com")
    await idp.join(owner, member, "admin")
    key = (await member.client.post("/api_keys", json={"name": "k"})).json()["key"]
    refused = await idp.admin.client.delete(f"/users/{owner.user_id}")
    assert refused.status_code == 409 and "sole" in refused.json()["detail"]
    assert (await owner.client.get("/auth/me")).status_code == 200
    assert (await idp.admin.client.delete(f"/users/{member.user_id}")).status_code == 204
    assert (await idp.client().get("/instances", headers={"Authorization": f"Bearer {key}"})).status_code == 401
    members = (await owner.client.get("/organizations/current/members")).json()
    assert [m["email"] for m in members] == ["sole-owner@example.com"]
    audit = (await owner.client.get("/audit", params={"action": "membership.removed"})).json()["items"]
    assert audit[0]["details"]["reason"] == "user_deleted"
