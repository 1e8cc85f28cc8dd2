"""Organisations and members through HTTP: create, list, switch, roles, removal, last owner."""

from __future__ import annotations

import asyncio

from services.api.bootstrap_admin import DEFAULT_ORG_SLUG

PROBLEM = "application/problem+json"


async def test_create_list_switch_and_personal_workspace(idp):
    ada = await idp.user("ada@example.com")
    created = await ada.client.post("/organizations", json={"name": "Acme Labs"})
    assert created.status_code == 201, created.text
    org = created.json()
    assert org["slug"] == "acme-labs" and org["role"] == "owner" and org["member_count"] == 1
    # It became the session's current organisation.
    current = (await ada.client.get("/organizations/current")).json()
    assert current["workspace"] == "organization" and current["organization"]["id"] == org["id"]
    assert (await ada.client.get("/auth/me")).json()["organization_role"] == "owner"

    second = await ada.client.post("/organizations", json={"name": "Beta", "slug": "beta-co", "set_as_current": False})
    assert second.status_code == 201
    mine = (await ada.client.get("/organizations")).json()
    assert [(o["slug"], o["role"], o["is_current"]) for o in mine] == [("acme-labs", "owner", True),
                                                                       ("beta-co", "owner", False)]

    personal = await ada.client.put("/organizations/current", json={"organization_id": None})
    assert personal.status_code == 200 and personal.json() == {"workspace": "personal", "organization": None}
    me = (await ada.client.get("/auth/me")).json()
    assert me["organization_id"] is None
    # Organisation routes need an organisation: Personal has none.
    assert (await ada.client.get("/organizations/current/members")).status_code == 403

    back = await ada.client.put("/organizations/current", json={"organization_id": second.json()["id"]})
    assert back.status_code == 200 and back.json()["organization"]["slug"] == "beta-co"
    # A new sign-in starts in the organisation used last.
    again = await idp.person("ada@example.com")
    assert (await again.client.get("/auth/me")).json()["organization_slug"] == "beta-co"


async def test_switching_to_an_organization_you_are_not_in_is_a_404(idp):
    eve = await idp.user("eve@example.com")
    resp = await eve.client.put("/organizations/current", json={"organization_id": idp.default_org})
    assert resp.status_code == 404 and resp.headers["content-type"].startswith(PROBLEM)


async def test_slugs_are_unique_even_under_concurrent_creation(idp):
    people = [await idp.user(f"racer{i}@example.com") for i in range(4)]
    results = await asyncio.gather(*(p.client.post("/organizations", json={"name": "Race", "slug": "race"})
                                     for p in people))
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 409, 409, 409], [r.text for r in results]
    for r in results:
        if r.status_code == 409:
            assert r.json()["errors"][0]["field"] == "slug"
    taken = await people[0].client.post("/organizations", json={"name": "x", "slug": DEFAULT_ORG_SLUG})
    assert taken.status_code == 409
    await idp.settled()
    assert await idp.pool.fetchval("SELECT count(*) FROM rm.organizations WHERE slug = 'race'") == 1
    assert await idp.pool.fetchval(
        "SELECT count(*) FROM rm.memberships m JOIN rm.organizations o ON o.id = m.organization_id "
        "WHERE o.slug = 'race'") == 1


async def test_unsafe_slugs_and_names_are_422_naming_the_field(idp):
    ada = await idp.user("ada2@example.com")
    for slug in ("a", "-lead", "UPPER", "dots.here", "evt.>", "x" * 64, "spa ce"):
        resp = await ada.client.post("/organizations", json={"name": "Fine", "slug": slug})
        assert resp.status_code == 422, (slug, resp.text)
        assert [e["field"] for e in resp.json()["errors"]] == ["slug"]
    bad_name = await ada.client.post("/organizations", json={"name": "<script>", "slug": "fine-slug"})
    assert bad_name.status_code == 422 and bad_name.json()["errors"][0]["field"] == "name"
    await idp.settled()
    assert await idp.pool.fetchval("SELECT count(*) FROM rm.organizations") == 1  # only the default one


async def test_roles_delegation_and_last_owner(idp):
    owner = await idp.user("owner@example.com")
    await idp.org(owner, "deleg")
    admin, manager, user = [await idp.user(f"{r}@example.com") for r in ("admin", "manager", "user")]
    for who, role in ((admin, "admin"), (manager, "manager"), (user, "user")):
        await idp.join(owner, who, role)
    members = (await owner.client.get("/organizations/current/members")).json()
    assert [m["role"] for m in members] == ["owner", "admin", "manager", "user"]

    async def put_role(actor, target, role):
        return (await actor.client.put(f"/organizations/current/members/{target.user_id}", json={"role": role}))

    # admin toggles admin <-> user only; manager toggles manager <-> user only.
    assert (await put_role(admin, user, "admin")).status_code == 200
    assert (await put_role(admin, user, "user")).status_code == 200
    assert (await put_role(admin, user, "manager")).status_code == 403
    assert (await put_role(admin, user, "owner")).status_code == 403
    assert (await put_role(manager, user, "manager")).status_code == 200
    assert (await put_role(manager, user, "admin")).status_code == 403
    assert (await put_role(manager, user, "user")).status_code == 200
    assert (await put_role(manager, admin, "user")).status_code == 403
    assert (await put_role(user, manager, "user")).status_code == 403
    # The last owner can be neither demoted nor removed, not even by themselves.
    last = await put_role(owner, owner, "admin")
    assert last.status_code == 409 and last.json()["type"].endswith("/last-owner")
    assert (await owner.client.delete(f"/organizations/current/members/{owner.user_id}")).status_code == 409
    assert (await owner.client.post("/organizations/current/leave")).status_code == 409
    # With a second owner, the first may step down.
    assert (await put_role(owner, admin, "owner")).status_code == 200
    assert (await put_role(owner, owner, "user")).status_code == 200
    # Removal rules: a manager removes users, not admins; anyone leaves.
    assert (await manager.client.delete(f"/organizations/current/members/{admin.user_id}")).status_code == 403
    assert (await manager.client.delete(f"/organizations/current/members/{user.user_id}")).status_code == 204
    assert (await manager.client.post("/organizations/current/leave")).status_code == 204
    roles = {m["email"]: m["role"] for m in (await admin.client.get("/organizations/current/members")).json()}
    assert roles == {"admin@example.com": "owner", "owner@example.com": "user"}
    # The one who left has no current organisation any more (Personal fallback).
    assert (await manager.client.get("/auth/me")).json()["organization_id"] is None


async def test_two_owners_demoting_each_other_at_once_leave_one_owner(idp):
    a = await idp.user("a-owner@example.com")
    await idp.org(a, "duo")
    b = await idp.user("b-owner@example.com")
    await idp.join(a, b, "owner")
    for _ in range(3):
        ra, rb = await asyncio.gather(
            a.client.put(f"/organizations/current/members/{b.user_id}", json={"role": "user"}),
            b.client.put(f"/organizations/current/members/{a.user_id}", json={"role": "user"}))
        codes = sorted((ra.status_code, rb.status_code))
        await idp.settled()
        owners = await idp.pool.fetch(
            "SELECT user_id FROM rm.memberships m JOIN rm.organizations o ON o.id = m.organization_id "
            "WHERE o.slug = 'duo' AND role = 'owner' AND removed_at IS NULL")
        assert len(owners) >= 1, codes
        # Restore two owners for the next round.
        survivor = a if str(owners[0]["user_id"]) == a.user_id else b
        other = b if survivor is a else a
        if len(owners) == 1:
            assert codes in ([200, 403], [200, 409]), codes
            assert (await survivor.client.put(f"/organizations/current/members/{other.user_id}",
                                              json={"role": "owner"})).status_code == 200


async def test_member_removed_loses_access_and_keys(idp):
    owner = await idp.user("boss@example.com")
    org_id = await idp.org(owner, "keys-org")
    worker = await idp.user("worker@example.com")
    await idp.join(owner, worker, "manager")
    key = (await worker.client.post("/api_keys", json={"name": "ci"})).json()["key"]
    auth = {"Authorization": f"Bearer {key}"}
    assert (await worker.client.get("/instances", headers=auth)).status_code == 200
    assert (await owner.client.delete(f"/organizations/current/members/{worker.user_id}")).status_code == 204
    # The key is revoked (every cache) and the session no longer sees the organisation.
    assert (await idp.client().get("/instances", headers=auth)).status_code == 401
    assert (await worker.client.get("/auth/me")).json()["organization_id"] is None
    await idp.settled()
    revoked = await idp.pool.fetchval("SELECT revoked_at FROM rm.api_keys WHERE org_id = $1", org_id)
    assert revoked is not None
