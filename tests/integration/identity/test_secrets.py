"""Secrets never leave where they belong: not in logs, events, error bodies or the SSE stream.

One scenario uses every secret the identity API handles (passwords, wrong passwords, API keys,
invitation and reset tokens, session tokens), with failures on purpose, while an SSE stream of
the organisation is open. Then the whole captured output (stdout and stderr of this process:
the API's and projector's logs), every EVENTS message (payload and headers), every response
body and the SSE bytes are searched for each secret. The only places a secret may appear: the
one response that issues it (a new key, a new invitation) and the mail that delivers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

from services.runtime.natsio import read_subject

from .conftest import ADMIN_PASSWORD, PASSWORD


async def _follow(client, sink: list[bytes], ready: asyncio.Event) -> None:
    async with client.stream("GET", "/events/stream") as resp:
        assert resp.status_code == 200
        ready.set()
        async for chunk in resp.aiter_bytes():
            sink.append(chunk)


async def test_secrets_never_appear_in_logs_events_error_bodies_or_sse(idp, capfd):
    secrets: set[str] = {ADMIN_PASSWORD, PASSWORD}
    issued: dict[str, int] = {}  # secret -> id() of the one response allowed to carry it
    owner = await idp.user("sec-owner@example.com")
    await idp.org(owner, "secrets-org")
    sse: list[bytes] = []
    ready = asyncio.Event()
    follower = asyncio.create_task(_follow(owner.client, sse, ready))
    await asyncio.wait_for(ready.wait(), 20)

    wrong = "wrong-password-that-must-not-leak"
    secrets.add(wrong)
    assert (await idp.client().post("/auth/login", json={"email": owner.email, "password": wrong})).status_code == 401
    weak = "short-pw"  # < 12: refused, and never echoed
    secrets.add(weak)
    assert (await idp.admin.client.post("/users", json={"email": "weak@example.com", "password": weak})).status_code == 422
    stray = "stray-field-password-value"
    secrets.add(stray)
    assert (await idp.admin.client.post("/users", json={"email": "s@example.com", "password": PASSWORD,
                                                        "passwd": stray})).status_code == 422
    key_resp = await owner.client.post("/api_keys", json={"name": "scan"})
    key = key_resp.json()["key"]
    secrets.add(key)
    issued[key] = id(key_resp)
    assert (await idp.client().get("/instances", headers={"Authorization": f"Bearer {key}"})).status_code == 200
    assert (await idp.client().get("/instances", headers={"Authorization": f"Bearer {key[:-2]}ff"})).status_code == 401
    await owner.client.delete(f"/api_keys/{key_resp.json()['id']}")
    assert (await idp.client().get("/instances", headers={"Authorization": f"Bearer {key}"})).status_code == 401

    invite = await owner.client.post("/organizations/current/invitations", json={"email": "sec-guest@example.com"})
    token = invite.json()["token"]
    secrets.add(token)
    issued[token] = id(invite)
    guest = await idp.user("sec-guest@example.com")
    assert (await guest.client.post("/organizations/invitations/accept", json={"token": token})).status_code == 200
    assert (await guest.client.post("/organizations/invitations/accept", json={"token": token})).status_code == 422

    new_password = "brand new secret passphrase"
    secrets.add(new_password)
    assert (await guest.client.put("/auth/me/password", json={"current_password": PASSWORD,
                                                              "new_password": new_password})).status_code == 204
    await idp.client().post("/auth/password-reset/request", json={"email": owner.email})
    mail = await idp.mail("password_reset", owner.email)
    reset = re.search(r"token=([^\s&]+)", mail.text).group(1)
    reset_password = "reset to this secret passphrase"
    secrets |= {reset, reset_password}
    assert (await idp.client().post("/auth/password-reset/reset", json={"token": reset,
                                                                        "new_password": reset_password})).status_code == 204
    assert (await idp.client().post("/auth/password-reset/reset", json={"token": reset,
                                                                        "new_password": reset_password})).status_code == 422
    for person in (owner, guest, idp.admin):
        if person.token:
            secrets.add(person.token)
    await idp.settled()
    follower.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await follower

    captured = capfd.readouterr()
    logs = captured.out + captured.err
    events = await read_subject(idp.js, "EVENTS", "evt.>")
    stream = b"".join(m.data + repr(m.headers).encode() for m in events).decode(errors="replace")
    sse_text = b"".join(sse).decode(errors="replace")
    assert "api_key.revoked" in sse_text and len(logs) > 1000  # the scan looked at real material
    found = []
    for secret in sorted(secrets):
        for where, text in (("logs", logs), ("EVENTS", stream), ("SSE", sse_text)):
            if secret in text:
                found.append(f"{where} contains {secret[:12]}...")
        for resp in idp.responses:
            if secret in resp.text and issued.get(secret) != id(resp):
                found.append(f"response to {resp.request.method} {resp.request.url.path} contains {secret[:12]}...")
    assert not found, "\n".join(found)
