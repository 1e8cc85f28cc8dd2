"""Two tenants for the proof tests: what org B holds, and a snapshot of it to prove nothing changed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from contracts import codec

from .conftest import Idp, Person

# rm tables and the column naming their tenant.
TENANT_TABLES = {"instances": "org_id", "memberships": "organization_id", "invitations": "org_id",
                 "api_keys": "org_id", "audit_log": "org_id", "organizations": "id", "action_logs": "org_id"}


@dataclass
class Tenant:
    org_id: str
    owner: Person
    member: Person
    instance_id: str
    key_id: str
    key: str
    key_prefix: str
    invitation_id: str
    invitation_email: str
    session_id: str
    secrets: set[str] = field(default_factory=set)


async def make_tenant(idp: Idp, slug: str, name: str) -> Tenant:
    owner = await idp.user(f"owner-of-{slug}@example.com")
    resp = await owner.client.post("/organizations", json={"name": name, "slug": slug})
    assert resp.status_code == 201, resp.text
    org_id = resp.json()["id"]
    member = await idp.user(f"member-of-{slug}@example.com")
    await idp.join(owner, member, "user")
    key = (await owner.client.post("/api_keys", json={"name": f"{slug}-key"})).json()
    invitation_email = f"invitee-of-{slug}@example.com"
    invitation = (await owner.client.post("/organizations/current/invitations",
                                          json={"email": invitation_email})).json()
    instance_id = await idp.instance(org_id)
    session_id = next(s["id"] for s in (await owner.client.get("/auth/sessions")).json() if s["is_current"])
    tenant = Tenant(org_id=org_id, owner=owner, member=member, instance_id=instance_id, key_id=key["id"], key=key["key"],
                    key_prefix=key["prefix"], invitation_id=invitation["id"], invitation_email=invitation_email,
                    session_id=session_id)
    tenant.secrets = {org_id, name, slug, owner.email, owner.user_id, member.email, member.user_id, instance_id,
                      key["id"], key["key"], key["prefix"], invitation["id"], invitation_email, invitation["token"],
                      session_id}
    return tenant


async def snapshot(idp: Idp, tenant: Tenant) -> dict:
    """Everything of ``tenant`` in the read model, its sessions, its events and commands."""
    await idp.settled()
    out: dict = {}
    for table, column in TENANT_TABLES.items():
        rows = await idp.pool.fetch(f"SELECT * FROM rm.{table} WHERE {column}::text = $1 ORDER BY 1", tenant.org_id)
        out[table] = json.dumps([dict(r) for r in rows], default=str, sort_keys=True)
    people = [tenant.owner.user_id, tenant.member.user_id]
    out["users"] = json.dumps([dict(r) for r in await idp.pool.fetch(
        "SELECT * FROM rm.users WHERE id = ANY($1::uuid[]) ORDER BY id", people)], default=str)
    out["sessions"] = json.dumps([dict(r) for r in await idp.pool.fetch(
        "SELECT id, revoked_at, current_organization_id, personal_workspace FROM user_sessions "
        "WHERE user_id = ANY($1::uuid[]) ORDER BY id", people)], default=str)
    info = await idp.js.stream_info("EVENTS", subjects_filter=f"evt.{tenant.org_id}.>")
    out["events"] = sorted((info.state.subjects or {}).items())
    out["commands"] = await tenant_commands(idp, tenant.org_id)
    return out


async def tenant_commands(idp: Idp, org_id: str) -> int:
    from services.runtime.natsio import read_subject

    return sum(1 for m in await read_subject(idp.js, "COMMANDS", "cmd.>") if codec.decode_command(m.data).org_id == org_id)


def leaks(text: str, secrets: set[str], *, sent: str = "") -> list[str]:
    """Secrets of the other tenant found in ``text`` that the caller did not send itself."""
    low, sent_low = text.lower(), sent.lower()
    return sorted(s for s in secrets if s and s.lower() in low and s.lower() not in sent_low)
