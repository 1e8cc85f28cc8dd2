"""GET /audit: every identity change of the organisation, for its owners and admins only."""

from __future__ import annotations


async def test_audit_log_records_identity_changes_scoped_to_the_org(idp):
    owner = await idp.user("a-owner@example.com")
    org_id = await idp.org(owner, "audited")
    admin = await idp.user("a-admin@example.com")
    manager = await idp.user("a-manager@example.com")
    await idp.join(owner, admin, "admin")
    await idp.join(owner, manager, "manager")
    key = (await manager.client.post("/api_keys", json={"name": "k"})).json()
    await manager.client.delete(f"/api_keys/{key['id']}")
    await owner.client.patch("/organizations/current", json={"name": "Audited Ltd"})

    page = await admin.client.get("/audit")
    assert page.status_code == 200, page.text
    items = page.json()["items"]
    actions = [i["action"] for i in items]
    for expected in ("organization.created", "membership.added", "invitation.created", "invitation.accepted",
                     "membership.role_changed", "api_key.created", "api_key.revoked", "organization.renamed"):
        assert expected in actions, (expected, actions)
    role_change = next(i for i in items if i["action"] == "membership.role_changed"
                       and i["target_email"] == "a-manager@example.com")
    assert role_change["actor_email"] == "a-owner@example.com" and role_change["details"]["role"] == "manager"
    assert all(i["seq"] > j["seq"] for i, j in zip(items, items[1:]))  # newest first
    assert key["key"] not in page.text and "token_hash" not in page.text and "key_hash" not in page.text
    only = (await owner.client.get("/audit", params={"action": "api_key.revoked"})).json()["items"]
    assert [i["action"] for i in only] == ["api_key.revoked"]
    paged = (await owner.client.get("/audit", params={"limit": 2})).json()
    older = (await owner.client.get("/audit", params={"before_seq": paged["next_before_seq"]})).json()["items"]
    assert older and all(i["seq"] < paged["next_before_seq"] for i in older)

    # Managers and users cannot read it; another organisation's owner sees only their own.
    assert (await manager.client.get("/audit")).status_code == 403
    stranger = await idp.user("a-stranger@example.com")
    await idp.org(stranger, "elsewhere")
    theirs = (await stranger.client.get("/audit")).json()["items"]
    assert theirs and all(i["target_id"] != org_id and "audited" not in str(i["details"]) for i in theirs)
    # Account-level events: platform administrators only.
    assert (await owner.client.get("/audit", params={"scope": "global"})).status_code == 403
    accounts = (await idp.admin.client.get("/audit", params={"scope": "global"})).json()["items"]
    assert {"user.created"} <= {i["action"] for i in accounts}
    assert all("password_hash" not in i["details"] for i in accounts)
