"""``GET /audit``: who changed what in the organisation (identity events), newest first.

Readable by the organisation's owners and admins, for their current organisation only.
Platform administrators can also read account-level events (``scope=global``: accounts
created, updated, deleted, passwords changed or reset). Entries never contain a secret.
"""

from __future__ import annotations

from typing import Literal

from litestar import Request, get
from litestar.params import Parameter

from contracts.ids import GLOBAL_ORG

from .. import db
from ..auth.principal import Principal, require_admin, require_org_role
from ..auth.roles import AUDIT_ROLES
from ..auth.schemas import AuditEntry, AuditPage
from ..state import resources

_AUDIT = """
SELECT a.seq, a.action, a.actor, a.actor_user_id, au.email AS actor_email, a.target_type, a.target_id,
       a.target_user_id, tu.email AS target_email, a.details, a.correlation_id, a.created_at
FROM rm.audit_log a
LEFT JOIN rm.users au ON au.id = a.actor_user_id
LEFT JOIN rm.users tu ON tu.id = a.target_user_id
WHERE a.org_id = $1 AND ($2::bigint IS NULL OR a.seq < $2) AND ($3::text IS NULL OR a.action = $3)
ORDER BY a.seq DESC LIMIT $4
"""


@get("/audit", tags=["audit"], summary="The organization's identity audit log (owners, admins), newest first")
async def read_audit(
    request: Request,
    principal: Principal,
    audit_scope: Literal["organization", "global"] = Parameter(
        query="scope", default="organization", description="global: account events (platform administrators only)"),
    action: str | None = Parameter(default=None, max_length=64, pattern=r"^[a-z_]+\.[a-z_]+$",
                                   description="only this event type, e.g. membership.role_changed"),
    before_seq: int | None = Parameter(default=None, ge=1, description="page: entries older than this sequence"),
    limit: int = Parameter(default=100, ge=1, le=500),
) -> AuditPage:
    if audit_scope == "global":
        require_admin(principal)
        tenant = GLOBAL_ORG
    else:
        tenant = require_org_role(principal, *AUDIT_ROLES)
    rows = await db.fetch(resources(request).pool, _AUDIT, tenant, before_seq, action, limit)
    items = [AuditEntry(seq=r["seq"], action=r["action"], actor=r["actor"],
                        actor_user_id=str(r["actor_user_id"]) if r["actor_user_id"] else None,
                        actor_email=r["actor_email"], target_type=r["target_type"], target_id=r["target_id"],
                        target_user_id=str(r["target_user_id"]) if r["target_user_id"] else None,
                        target_email=r["target_email"], details=r["details"] or {}, correlation_id=r["correlation_id"],
                        created_at=r["created_at"]) for r in rows]
    return AuditPage(items=items, next_before_seq=items[-1].seq if len(items) == limit else None)


route_handlers = [read_audit]
