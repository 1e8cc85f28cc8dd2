"""Guessing is throttled per client address: passwords, API keys, invitation and reset tokens -> 429 + Retry-After."""

from __future__ import annotations

from services.api.keys import KEY_PREFIX

LIMIT = 20  # IdentitySettings.key_max_failures (default)


async def test_failed_api_keys_from_one_client_get_429_with_retry_after(idp):
    me = await idp.user("keys-bf@example.com")
    await idp.org(me, "bf-org")
    good = (await me.client.post("/api_keys", json={"name": "real"})).json()["key"]
    guesser = idp.client()
    for i in range(LIMIT):
        guess = KEY_PREFIX + good[len(KEY_PREFIX):-4] + f"{i:04x}"  # shares all but the last characters
        resp = await guesser.get("/instances", headers={"Authorization": f"Bearer {guess}"})
        assert resp.status_code == 401, (i, resp.text)
    blocked = await guesser.get("/instances", headers={"Authorization": f"Bearer {KEY_PREFIX}{'0' * 64}"})
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
    assert blocked.headers["content-type"].startswith("application/problem+json")
    # X-API-Key and guessed session tokens are counted and blocked the same way.
    assert (await guesser.get("/instances", headers={"X-API-Key": good})).status_code == 429
    assert (await guesser.get("/auth/me", headers={"Authorization": "Bearer not-a-session"})).status_code == 429


async def test_invitation_and_reset_token_guessing_is_throttled(idp):
    me = await idp.user("tok-bf@example.com")
    for _ in range(LIMIT):
        resp = await me.client.post("/organizations/invitations/accept", json={"token": "g" * 43})
        assert resp.status_code == 422
    assert (await me.client.post("/organizations/invitations/accept", json={"token": "g" * 43})).status_code == 429
    blocked = await idp.client().post("/auth/password-reset/reset",
                                      json={"token": "abc", "new_password": "long enough password"})
    assert blocked.status_code == 429 and "Retry-After" in blocked.headers


async def test_login_failures_get_429_for_the_address_and_the_account(idp):
    me = await idp.user("login-bf@example.com")
    attacker = idp.client()
    for _ in range(10):  # ApiSettings.login_max_failures (default)
        assert (await attacker.post("/auth/login", json={"email": me.email, "password": "wrong guess"})).status_code == 401
    blocked = await attacker.post("/auth/login", json={"email": me.email, "password": me.password})
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) >= 1
    assert "set-cookie" not in blocked.headers
