"""``/organizations/current/members``: list, change a role, remove (the original's delegation rules).

Decisions are taken on the organisation's membership events (the authoritative state, not the
read model) and appended with optimistic concurrency over all of them (``membership_rules``).
A user id that is not a member of the caller's organisation is a 404, whether it exists elsewhere
or not.
"""

from __future__ import annotations

from litestar import Request, delete, get, put
from litestar.status_codes import HTTP_204_NO_CONTENT

from contracts.events import MemberRoleChanged

from ..auth import queries
from ..auth.identity_store import append_in_scope, load_scope, members_scope, with_retries
from ..auth.membership_rules import Refusal, decide_role_change, fold_roster
from ..auth.principal import Principal, require_user
from ..auth.schemas import MemberRoleUpdate, MemberView
from ..auth.writes import envelope, problem, settled
from ..errors import Problem
from ..state import resources
from ..validation import path_uuid
from .organizations import remove_member


@get("/organizations/current/members", tags=["organizations"],
     summary="Members of the current organization, owners first")
async def list_members(request: Request, principal: Principal, org_id: str) -> list[MemberView]:
    return await queries.members_of(resources(request).pool, org_id)


@put("/organizations/current/members/{user_id:str}", tags=["organizations"],
     summary="Change a member's role (owner: any; admin: admin<->user; manager: manager<->user)")
async def change_member_role(request: Request, user_id: str, data: MemberRoleUpdate, principal: Principal,
                             org_id: str) -> MemberView:
    require_user(principal)
    target = path_uuid("user_id", user_id)
    res = resources(request)

    async def attempt() -> int:
        scope = await load_scope(res.js, members_scope(org_id))
        try:
            previous = decide_role_change(fold_roster(scope.events), principal.user_id, target, data.role)
        except Refusal as refusal:
            raise problem(refusal) from None
        if previous is None:
            return 0
        changed = MemberRoleChanged(**envelope(request, principal, org_id), organization_id=org_id, user_id=target,
                                    role=data.role, previous_role=previous)  # type: ignore[arg-type]
        return await append_in_scope(res.js, changed, scope)

    await settled(request, await with_retries(attempt, what="the organization's members"))
    view = await queries.member_of(res.pool, org_id, target)
    if view is None:
        raise Problem(404, "no such member", type_="not-found")
    return view


@delete("/organizations/current/members/{user_id:str}", status_code=HTTP_204_NO_CONTENT, tags=["organizations"],
        summary="Remove a member (owner: anyone; admin: admins and users; manager: managers and users; "
                "anyone: themselves); the last owner stays")
async def remove_member_route(request: Request, user_id: str, principal: Principal, org_id: str) -> None:
    require_user(principal)
    await remove_member(request, principal, org_id, path_uuid("user_id", user_id))


route_handlers = [list_members, change_member_role, remove_member_route]
