"""``/organizations``: create (unique slug), list mine with my role, the current workspace
(get, switch, rename), leave.

Slugs are unique under concurrency without a lock: an organisation's id is derived from its
slug (``derived_id("org-slug", slug)``, as the bootstrap does), and its first event is appended
with "this aggregate has no history yet" as the expected sequence. Two concurrent creations of
one slug address the same aggregate; JetStream accepts exactly one, the other gets 409 naming
``slug``. The creator's owner membership follows; a creation interrupted between the two is
completed when the same person retries it.
"""

from __future__ import annotations

from litestar import Request, get, patch, post, put
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from contracts.events import MemberAdded, MemberRemoved, OrganizationCreated, OrganizationRenamed
from contracts.ids import derived_id
from services.runtime.eventstore import ConcurrencyConflict

from ..auth import queries
from ..auth.identity_store import aggregate_scope, append_in_scope, load_scope, members_scope, with_retries
from ..auth.inputs import check_name, check_slug, slugify
from ..auth.membership_rules import Refusal, decide_removal, fold_roster
from ..auth.principal import Principal, require_org_role, require_user
from ..auth.roles import SETTINGS_ROLES
from ..auth.schemas import CurrentWorkspace, OrganizationCreate, OrganizationRename, OrganizationView, WorkspaceSwitch
from ..auth.writes import envelope, problem, revoke_member_keys, settled
from ..errors import Problem, field_error
from ..state import resources
from ..validation import path_uuid


def organization_id_for(slug: str) -> str:
    return derived_id("org-slug", slug)


def _slug_taken() -> Problem:
    return field_error("slug", "is already taken", status_code=409, type_="conflict")


@get("/organizations", tags=["organizations"], summary="Organizations you belong to, with your role")
async def list_organizations(request: Request, principal: Principal) -> list[OrganizationView]:
    pool = resources(request).pool
    if principal.kind == "api_key":  # a key sees the one organisation it belongs to
        return await queries.organizations_of(pool, principal.user_id, principal.org_id, only=principal.org_id)
    return await queries.organizations_of(pool, principal.user_id, principal.org_id)


@post("/organizations", status_code=HTTP_201_CREATED, tags=["organizations"],
      summary="Create an organization; you become its owner (and, by default, it becomes your current one)")
async def create_organization(request: Request, data: OrganizationCreate, principal: Principal) -> OrganizationView:
    require_user(principal)
    res = resources(request)
    name = check_name(data.name)
    slug = check_slug(data.slug if data.slug is not None else slugify(name))
    org_id = organization_id_for(slug)
    org_scope = await load_scope(res.js, aggregate_scope(org_id, "organization", org_id))
    if org_scope.events:
        first = org_scope.events[0]
        # Only our own creation, interrupted before the owner was added, may be completed.
        if not (isinstance(first, OrganizationCreated) and first.created_by_user_id == principal.user_id):
            raise _slug_taken()
    else:
        created = OrganizationCreated(**envelope(request, principal, org_id), organization_id=org_id, name=name,
                                      slug=slug, created_by_user_id=principal.user_id)
        try:
            await append_in_scope(res.js, created, org_scope)
        except ConcurrencyConflict:
            raise _slug_taken() from None
    members = await load_scope(res.js, members_scope(org_id))
    if members.events:
        raise _slug_taken()
    owner = MemberAdded(**envelope(request, principal, org_id), organization_id=org_id, user_id=principal.user_id,
                        role="owner")
    try:
        seq = await append_in_scope(res.js, owner, members)
    except ConcurrencyConflict:
        raise _slug_taken() from None
    await settled(request, seq)
    if data.set_as_current and principal.session_id:
        await res.sessions.switch_workspace(principal.session_id, org_id)
    view = await queries.organization_of(res.pool, principal.user_id, org_id)
    return view or OrganizationView(id=org_id, name=name, slug=slug, role="owner", member_count=1,
                                    created_at=owner.occurred_at, is_current=bool(data.set_as_current))


async def _current(request: Request, principal: Principal, org_id: str | None) -> CurrentWorkspace:
    if not org_id:
        return CurrentWorkspace(workspace="personal")
    view = await queries.organization_of(resources(request).pool, principal.user_id, org_id)
    return CurrentWorkspace(workspace="organization", organization=view) if view else CurrentWorkspace(
        workspace="personal")


@get("/organizations/current", tags=["organizations"], summary="Your current workspace: an organization or Personal")
async def get_current(request: Request, principal: Principal) -> CurrentWorkspace:
    return await _current(request, principal, principal.org_id)


@put("/organizations/current", tags=["organizations"],
     summary="Switch the session to one of your organizations, or to Personal with organization_id null")
async def switch_current(request: Request, data: WorkspaceSwitch, principal: Principal) -> CurrentWorkspace:
    require_user(principal)
    if not principal.session_id:
        raise Problem(403, "only a session can switch workspaces", type_="forbidden")
    res = resources(request)
    org_id = None
    if data.organization_id is not None:
        org_id = path_uuid("organization_id", data.organization_id)
        if await queries.active_role(res.pool, org_id, principal.user_id) is None:
            # Not yours, or does not exist: the same answer.
            raise Problem(404, "no such organization", type_="not-found")
    await res.sessions.switch_workspace(principal.session_id, org_id)
    return await _current(request, principal, org_id)


@patch("/organizations/current", tags=["organizations"], summary="Rename the current organization (owner, admin)")
async def rename_current(request: Request, data: OrganizationRename, principal: Principal) -> OrganizationView:
    require_user(principal)
    org_id = require_org_role(principal, *SETTINGS_ROLES)
    res = resources(request)
    name = check_name(data.name)

    async def attempt() -> int:
        scope = await load_scope(res.js, aggregate_scope(org_id, "organization", org_id))
        renamed = OrganizationRenamed(**envelope(request, principal, org_id), organization_id=org_id, name=name)
        return await append_in_scope(res.js, renamed, scope)

    await settled(request, await with_retries(attempt, what="the organization"))
    view = await queries.organization_of(res.pool, principal.user_id, org_id)
    if view is None:
        raise Problem(404, "no such organization", type_="not-found")
    return view


async def remove_member(request: Request, principal: Principal, org_id: str, target_id: str) -> None:
    """Remove ``target_id`` from ``org_id`` under the delegation rules, then revoke their keys there."""
    res = resources(request)

    async def attempt() -> int:
        scope = await load_scope(res.js, members_scope(org_id))
        try:
            reason = decide_removal(fold_roster(scope.events), principal.user_id, target_id)
        except Refusal as refusal:
            raise problem(refusal) from None
        return await append_in_scope(res.js, MemberRemoved(**envelope(request, principal, org_id), organization_id=org_id,
                                                           user_id=target_id, reason=reason), scope)

    seq = await with_retries(attempt, what="the organization's members")
    seq = max(seq, await revoke_member_keys(request, principal, org_id, target_id))
    await settled(request, seq)


@post("/organizations/current/leave", status_code=HTTP_204_NO_CONTENT, tags=["organizations"],
      summary="Leave the current organization (not as its last owner)")
async def leave_current(request: Request, principal: Principal, org_id: str) -> None:
    require_user(principal)
    await remove_member(request, principal, org_id, principal.user_id)


route_handlers = [list_organizations, create_organization, get_current, switch_current, rename_current, leave_current]
