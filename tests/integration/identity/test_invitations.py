"""Invitations through HTTP: create (mailed, token shown once), list, revoke, accept by the matching account."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from contracts.events import InvitationCreated
from contracts.ids import new_id
from services.api.auth import tokens
from services.runtime.eventstore import JetStreamEventStore


async def _invite(owner, email, role="user", **extra):
    return await owner.client.post("/organizations/current/invitations", json={"email": email, "role": role, **extra})


async def test_invite_mail_accept_and_list(idp):
    owner = await idp.user("inv-owner@example.com")
    org_id = await idp.org(owner, "inviters")
    resp = await _invite(owner, "Guest@Example.com", "manager", expires_in_days=3)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    token = body["token"]
    assert body["email"] == "guest@example.com" and body["role"] == "manager" and body["status"] == "pending"
    mail = await idp.mail("invitation", "guest@example.com")
    assert token in mail.text and "Inviters" in mail.text
    # The token is stored only as a digest.
    await idp.settled()
    row = await idp.pool.fetchrow("SELECT token_hash FROM rm.invitations WHERE id = $1", body["id"])
    assert row["token_hash"] == tokens.digest(token)
    listed = (await owner.client.get("/organizations/current/invitations")).json()
    assert [(i["email"], i["status"]) for i in listed] == [("guest@example.com", "pending")] and "token" not in listed[0]

    preview = await idp.client().post("/organizations/invitations/lookup", json={"token": token})
    assert preview.status_code == 200 and preview.json()["organization_name"] == "Inviters"
    assert preview.json()["email"] == "guest@example.com" and preview.json()["status"] == "pending"
    guest = await idp.user("guest@example.com")
    accepted = await guest.client.post("/organizations/invitations/accept", json={"token": token})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["id"] == org_id and accepted.json()["role"] == "manager"
    assert (await guest.client.get("/auth/me")).json()["organization_id"] == org_id
    # Single use.
    again = await guest.client.post("/organizations/invitations/accept", json={"token": token})
    assert again.status_code == 422 and again.json()["errors"][0]["field"] == "token"
    listed = (await owner.client.get("/organizations/current/invitations")).json()
    assert listed[0]["status"] == "accepted"


async def test_only_the_invited_account_can_accept(idp):
    owner = await idp.user("o2@example.com")
    await idp.org(owner, "only-me")
    token = (await _invite(owner, "right@example.com")).json()["token"]
    wrong = await idp.user("wrong@example.com")
    resp = await wrong.client.post("/organizations/invitations/accept", json={"token": token})
    assert resp.status_code == 403
    assert "right@example.com" not in resp.text
    assert (await wrong.client.get("/organizations")).json() == []


async def test_expired_revoked_unknown_tokens_are_422_naming_token(idp, nats_client):
    owner = await idp.user("o3@example.com")
    org_id = await idp.org(owner, "expiry")
    guest = await idp.user("late@example.com")
    # An invitation that expired a minute ago (written as its event: the API only makes future ones).
    token = tokens.new_secret()
    iid = new_id()
    expired = InvitationCreated(id=new_id(), org_id=org_id, actor=f"user:{owner.user_id}", correlation_id="t",
                                causation_id="t", occurred_at=datetime.now(timezone.utc) - timedelta(days=8),
                                invitation_id=iid, organization_id=org_id, email="late@example.com", role="user",
                                token_hash=tokens.digest(token),
                                expires_at=datetime.now(timezone.utc) - timedelta(minutes=1),
                                invited_by_user_id=owner.user_id)
    await JetStreamEventStore(nats_client.jetstream()).append(expired, expected_last_seq=0)
    await idp.settled()
    resp = await guest.client.post("/organizations/invitations/accept", json={"token": token})
    assert resp.status_code == 422 and resp.json()["errors"] == [
        {"field": "token", "message": "has expired"}]
    revoked_token = (await _invite(owner, "late@example.com")).json()
    assert (await owner.client.delete(f"/organizations/current/invitations/{revoked_token['id']}")).status_code == 204
    resp = await guest.client.post("/organizations/invitations/accept", json={"token": revoked_token["token"]})
    assert resp.status_code == 422 and resp.json()["errors"][0]["message"] == "was revoked"
    for bogus in ("nope", tokens.new_secret(), "x" * 200):
        resp = await guest.client.post("/organizations/invitations/accept", json={"token": bogus})
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "token", resp.text
    assert (await guest.client.get("/organizations")).json() == []


async def test_concurrent_accepts_of_one_token_make_one_membership(idp):
    owner = await idp.user("o4@example.com")
    await idp.org(owner, "race-inv")
    token = (await _invite(owner, "twice@example.com")).json()["token"]
    guest = await idp.user("twice@example.com")
    second = await idp.person("twice@example.com")
    results = await asyncio.gather(*(c.post("/organizations/invitations/accept", json={"token": token})
                                     for c in (guest.client, second.client)))
    assert sorted(r.status_code for r in results) == [200, 422], [r.text for r in results]
    await idp.settled()
    assert await idp.pool.fetchval(
        "SELECT count(*) FROM rm.memberships WHERE user_id = $1 AND removed_at IS NULL", guest.user_id) == 1


async def test_invitation_delegation_rules_and_bad_input(idp):
    owner = await idp.user("o5@example.com")
    await idp.org(owner, "inv-rules")
    manager = await idp.user("m5@example.com")
    user = await idp.user("u5@example.com")
    await idp.join(owner, manager, "manager")
    await idp.join(owner, user, "user")
    assert (await _invite(manager, "x@example.com", "admin")).status_code == 403
    assert (await _invite(manager, "x@example.com", "owner")).status_code == 403
    assert (await _invite(manager, "x@example.com", "manager")).status_code == 201
    assert (await _invite(owner, "y@example.com", "owner")).status_code == 201
    assert (await _invite(user, "z@example.com")).status_code == 403
    assert (await user.client.get("/organizations/current/invitations")).status_code == 403
    # A manager cannot revoke the owner-level invitation.
    owner_invite = next(i for i in (await owner.client.get("/organizations/current/invitations")).json()
                        if i["role"] == "owner")
    assert (await manager.client.delete(f"/organizations/current/invitations/{owner_invite['id']}")).status_code == 403
    for body, field in (({"email": "not-an-email"}, "email"), ({"email": "a@b.c", "expires_in_days": 0},
                        "expires_in_days"), ({"email": "a@b.co", "role": "emperor"}, "role")):
        resp = await owner.client.post("/organizations/current/invitations", json=body)
        assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == field, resp.text
    member = await _invite(owner, "u5@example.com")
    assert member.status_code == 409 and member.json()["errors"][0]["field"] == "email"
