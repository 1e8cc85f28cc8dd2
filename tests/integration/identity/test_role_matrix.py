"""Each organisation role against each privileged action: the expected status, table-driven.

One organisation with an owner, an admin, a manager and a user (none a platform administrator);
every row is tried by every role. Actions that would change what later rows see are aimed at
throw-away targets created per row.
"""

from __future__ import annotations

import pytest

ROLES = ("owner", "admin", "manager", "user")
BAD_PLACEMENT = {"model": "no-such-model", "instance_type": "no-such-type", "zone": "no-such-zone"}

# action -> expected status per role (owner, admin, manager, user).
MATRIX = {
    "list instances": (200, 200, 200, 200),
    "deploy (reaches the catalog check)": (422, 422, 403, 403),
    "terminate an instance": (202, 202, 403, 403),
    "read the audit log": (200, 200, 403, 403),
    "list invitations": (200, 200, 200, 403),
    "invite a user": (201, 201, 201, 403),
    "invite an admin": (201, 403, 403, 403),
    "invite an owner": (201, 403, 403, 403),
    "make a user an admin": (200, 200, 403, 403),
    "make a user a manager": (200, 403, 200, 403),
    "make a user an owner": (200, 403, 403, 403),
    "demote the admin": (200, 200, 403, 403),
    "remove a manager": (204, 403, 204, 403),
    "key with the manage scope": (201, 201, 201, 403),
    "key with the inference scope": (201, 201, 201, 201),
    "rename the organization": (200, 200, 403, 403),
    "list users (platform admins)": (403, 403, 403, 403),
    "create a user (platform admins)": (403, 403, 403, 403),
    "reconcile the fleet (platform admins)": (403, 403, 403, 403),
}


@pytest.fixture
async def team(idp):
    owner = await idp.user("rm-owner@example.com")
    org_id = await idp.org(owner, "role-matrix")
    people = {"owner": owner}
    for role in ROLES[1:]:
        people[role] = await idp.user(f"rm-{role}@example.com")
        await idp.join(owner, people[role], role)
    return idp, org_id, people


async def _target(idp, org_id, role: str, tag: str) -> str:
    return await idp.quiet_member(org_id, f"target-{tag}@example.com", role)


async def _act(action: str, idp, org_id, people, actor, tag: str):
    c = actor.client
    if action == "list instances":
        return await c.get("/instances")
    if action == "deploy (reaches the catalog check)":
        return await c.post("/deployments", json=BAD_PLACEMENT)
    if action == "terminate an instance":
        return await c.delete(f"/instances/{await idp.instance(org_id)}")
    if action == "read the audit log":
        return await c.get("/audit")
    if action == "list invitations":
        return await c.get("/organizations/current/invitations")
    if action.startswith("invite an? ") or action.startswith("invite a"):
        role = action.rsplit(" ", 1)[1]
        return await c.post("/organizations/current/invitations", json={"email": f"inv-{tag}@example.com",
                                                                        "role": role})
    if action.startswith("make a user "):
        target = await _target(idp, org_id, "user", tag)
        return await c.put(f"/organizations/current/members/{target}",
                           json={"role": action.rsplit(" ", 1)[1]})
    if action == "demote the admin":
        target = await _target(idp, org_id, "admin", tag)
        return await c.put(f"/organizations/current/members/{target}", json={"role": "user"})
    if action == "remove a manager":
        target = await _target(idp, org_id, "manager", tag)
        return await c.delete(f"/organizations/current/members/{target}")
    if action.startswith("key with the "):
        scope = action.split()[3]
        return await c.post("/api_keys", json={"name": tag, "scopes": [scope]})
    if action == "rename the organization":
        return await c.patch("/organizations/current", json={"name": f"Role Matrix {tag}"})
    if action == "list users (platform admins)":
        return await c.get("/users")
    if action == "create a user (platform admins)":
        return await c.post("/users", json={"email": f"new-{tag}@example.com", "password": "long enough password"})
    if action == "reconcile the fleet (platform admins)":
        return await c.post("/reconcile")
    raise AssertionError(action)


async def test_role_matrix(team):
    idp, org_id, people = team
    failures = []
    for n, (action, expected) in enumerate(MATRIX.items()):
        for role, want in zip(ROLES, expected):
            resp = await _act(action, idp, org_id, people, people[role], f"{n}-{role}")
            if resp.status_code != want:
                failures.append(f"{role:8} {action}: {resp.status_code} (expected {want}) {resp.text[:160]}")
    assert not failures, "\n".join(failures)


async def test_last_owner_and_self_escalation(team):
    idp, _, people = team
    owner, admin = people["owner"], people["admin"]
    # Nobody grants themselves a role above theirs.
    for role, above in (("admin", "owner"), ("manager", "admin"), ("user", "manager")):
        who = people[role]
        resp = await who.client.put(f"/organizations/current/members/{who.user_id}", json={"role": above})
        assert resp.status_code == 403, (role, resp.text)
    # The last owner can be neither demoted (by anyone) nor removed.
    for actor in (owner, admin):
        resp = await actor.client.put(f"/organizations/current/members/{owner.user_id}", json={"role": "user"})
        assert resp.status_code in (403, 409) and resp.status_code == (409 if actor is owner else 403)
    assert (await owner.client.delete(f"/organizations/current/members/{owner.user_id}")).status_code == 409
    # Platform administrators are not members of other organisations by default.
    assert (await idp.admin.client.get("/organizations")).json()[0]["slug"] == "inventiv-it"
