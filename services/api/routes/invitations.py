"""``/organizations/current/invitations`` (create, list, revoke) and accepting one by its token.

The token (256 random bits) is returned once and mailed to the invitee; only its SHA-256 is
stored. Accepting needs a signed-in account whose e-mail address is the invited one. An
invitation is single-use: ``invitation.accepted`` is appended with optimistic concurrency on
the invitation's own events, so two concurrent accepts cannot both succeed; the membership is
then added in the organisation's membership scope (an accept interrupted in between is
completed when the same person retries). Unknown, expired, revoked or used tokens are 422s
naming ``token``; guessing is throttled per client address like API keys.
"""

from __future__ import annotations

from datetime import timedelta

from litestar import Request, delete, get, post
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from contracts.events import InvitationAccepted, InvitationCreated, InvitationRevoked, MemberAdded
from contracts.ids import new_id

from .. import db
from ..auth import queries, tokens
from ..auth.identity_store import aggregate_scope, append_in_scope, load_scope, members_scope, with_retries
from ..auth.inputs import normalize_email
from ..auth.membership_rules import decide_join, fold_roster
from ..auth.principal import Principal, check_csrf, require_org_role, require_user
from ..auth.roles import INVITE_ROLES, can_invite, can_manage_invitation
from ..auth.runtime import identity
from ..auth.schemas import InvitationAccept, InvitationCreate, InvitationPreview, InvitationView, OrganizationView
from ..auth.schemas import InvitationCreated as InvitationCreatedView
from ..auth.writes import envelope, settled
from ..context import client_ip, utcnow
from ..errors import Problem, field_error
from ..mail import messages
from ..state import resources
from ..validation import path_uuid

_LIST = """
SELECT i.id, i.email, i.role, i.invited_by_user_id, u.email AS invited_by_email, i.created_at, i.expires_at,
       i.accepted_at, i.revoked_at
FROM rm.invitations i LEFT JOIN rm.users u ON u.id = i.invited_by_user_id
WHERE i.org_id = $1 AND ($2::uuid IS NULL OR i.id = $2::uuid)
ORDER BY i.created_at DESC, i.id
"""


def _status(row, now) -> str:
    if row["accepted_at"] is not None:
        return "accepted"
    if row["revoked_at"] is not None:
        return "revoked"
    return "expired" if row["expires_at"] <= now else "pending"


def _view(row, now) -> InvitationView:
    return InvitationView(id=str(row["id"]), email=row["email"], role=row["role"], status=_status(row, now),
                          invited_by_user_id=str(row["invited_by_user_id"]), invited_by_email=row["invited_by_email"],
                          created_at=row["created_at"], expires_at=row["expires_at"], accepted_at=row["accepted_at"])


@get("/organizations/current/invitations", tags=["organizations"],
     summary="Invitations of the current organization (owner, admin, manager)")
async def list_invitations(request: Request, principal: Principal) -> list[InvitationView]:
    org_id = require_org_role(principal, *INVITE_ROLES)
    now = utcnow()
    return [_view(r, now) for r in await db.fetch(resources(request).pool, _LIST, org_id, None)]


@post("/organizations/current/invitations", status_code=HTTP_201_CREATED, tags=["organizations"],
      summary="Invite someone by e-mail with a role and an expiry; the token is returned once and mailed")
async def create_invitation(request: Request, data: InvitationCreate, principal: Principal) -> InvitationCreatedView:
    require_user(principal)
    org_id = require_org_role(principal, *INVITE_ROLES)
    email = normalize_email(data.email)
    if not can_invite(principal.org_role, data.role):
        raise Problem(403, f"a {principal.org_role} cannot invite a {data.role}", type_="forbidden")
    res = resources(request)
    taken = await db.fetchval(
        res.pool, """SELECT 1 FROM rm.memberships m JOIN rm.users u ON u.id = m.user_id AND u.deleted_at IS NULL
                     WHERE m.organization_id = $1 AND m.removed_at IS NULL AND lower(u.email) = $2""", org_id, email)
    if taken:
        raise field_error("email", "is already a member of this organization", status_code=409, type_="conflict")
    token = tokens.new_secret()
    invitation_id = new_id()
    created = InvitationCreated(
        **envelope(request, principal, org_id), invitation_id=invitation_id, organization_id=org_id, email=email,
        role=data.role, token_hash=tokens.digest(token), expires_at=utcnow() + timedelta(days=data.expires_in_days),
        invited_by_user_id=principal.user_id)
    scope = await load_scope(res.js, aggregate_scope(org_id, "invitation", invitation_id))
    await settled(request, await append_in_scope(res.js, created, scope))
    org_name = await db.fetchval(res.pool, "SELECT name FROM rm.organizations WHERE id = $1", org_id) or "an organization"
    runtime = identity(request)
    runtime.send_later(messages.invitation(to=email, public_url=runtime.settings.public_url, token=token,
                                           organization=org_name, role=data.role, expires_at=created.expires_at))
    return InvitationCreatedView(id=invitation_id, email=email, role=data.role, status="pending",
                                 invited_by_user_id=principal.user_id, invited_by_email=principal.email,
                                 created_at=created.occurred_at, expires_at=created.expires_at, token=token)


@delete("/organizations/current/invitations/{invitation_id:str}", status_code=HTTP_204_NO_CONTENT,
        tags=["organizations"], summary="Revoke a pending invitation (idempotent)")
async def revoke_invitation(request: Request, invitation_id: str, principal: Principal) -> None:
    require_user(principal)
    org_id = require_org_role(principal, *INVITE_ROLES)
    invitation_id = path_uuid("invitation_id", invitation_id)
    res = resources(request)

    async def attempt() -> int:
        scope = await load_scope(res.js, aggregate_scope(org_id, "invitation", invitation_id))
        created = next((e for e in scope.events if isinstance(e, InvitationCreated)), None)
        if created is None:  # another organisation's, or none at all
            raise Problem(404, "no such invitation", type_="not-found")
        if not can_manage_invitation(principal.org_role, created.role):
            raise Problem(403, f"a {principal.org_role} cannot revoke an invitation for a {created.role}",
                          type_="forbidden")
        if any(isinstance(e, InvitationAccepted) for e in scope.events):
            raise Problem(409, "this invitation was already accepted", type_="conflict")
        if any(isinstance(e, InvitationRevoked) for e in scope.events):
            return 0
        revoked = InvitationRevoked(**envelope(request, principal, org_id), invitation_id=invitation_id,
                                    organization_id=org_id)
        return await append_in_scope(res.js, revoked, scope)

    await settled(request, await with_retries(attempt, what="the invitation"))


def _bad_token(message: str) -> Problem:
    return field_error("token", message)


async def _by_token(request: Request, token: str):
    """The invitation a token opens (id, org) or a 422 naming ``token``; failures are throttled per address."""
    limiter = identity(request).key_limiter
    ip_key = f"ip:{client_ip(request)}"
    wait = limiter.retry_after(ip_key)
    if wait:
        raise Problem(429, "too many invalid invitation tokens; try again later", type_="rate-limited",
                      headers={"Retry-After": str(wait)})
    row = None
    if tokens.looks_like_token(token):
        row = await db.fetchrow(resources(request).pool, _BY_TOKEN, tokens.digest(token))
    if row is None:
        limiter.failed(ip_key)
        raise _bad_token("is not a valid invitation token")
    return row


_BY_TOKEN = """
SELECT i.id, i.org_id, i.email, i.role, i.expires_at, i.accepted_at, i.revoked_at, o.name AS organization_name
FROM rm.invitations i JOIN rm.organizations o ON o.id = i.org_id WHERE i.token_hash = $1
"""


@post("/organizations/invitations/lookup", status_code=HTTP_200_OK, tags=["organizations"],
      summary="What an invitation token is for (organization, role, address), without signing in")
async def lookup_invitation(request: Request, data: InvitationAccept) -> InvitationPreview:
    check_csrf(request)
    row = await _by_token(request, data.token)
    return InvitationPreview(organization_name=row["organization_name"], email=row["email"], role=row["role"],
                             status=_status(row, utcnow()), expires_at=row["expires_at"])


@post("/organizations/invitations/accept", status_code=HTTP_200_OK, tags=["organizations"],
      summary="Accept an invitation with its token, signed in as the invited e-mail address")
async def accept_invitation(request: Request, data: InvitationAccept, principal: Principal) -> OrganizationView:
    require_user(principal)
    res = resources(request)
    row = await _by_token(request, data.token)
    org_id, invitation_id = str(row["org_id"]), str(row["id"])

    async def attempt() -> int:
        scope = await load_scope(res.js, aggregate_scope(org_id, "invitation", invitation_id))
        created = next(e for e in scope.events if isinstance(e, InvitationCreated))
        if created.email != (principal.email or "").lower():
            raise Problem(403, "this invitation is for another e-mail address; sign in with that one",
                          type_="wrong-account")
        accepted = next((e for e in scope.events if isinstance(e, InvitationAccepted)), None)
        if any(isinstance(e, InvitationRevoked) for e in scope.events):
            raise _bad_token("was revoked")
        members = await load_scope(res.js, members_scope(org_id))
        must_join = decide_join(fold_roster(members.events), principal.user_id)
        if accepted is not None and (accepted.user_id != principal.user_id or not must_join):
            raise _bad_token("has already been used")
        if accepted is None:
            if created.expires_at <= utcnow():
                raise _bad_token("has expired")
            await append_in_scope(res.js, InvitationAccepted(**envelope(request, principal, org_id),
                                                             invitation_id=invitation_id, organization_id=org_id,
                                                             user_id=principal.user_id), scope)
        if not must_join:
            return scope.last_seq
        joined = MemberAdded(**envelope(request, principal, org_id), organization_id=org_id, user_id=principal.user_id,
                             role=created.role, invitation_id=invitation_id)
        return await append_in_scope(res.js, joined, members)

    await settled(request, await with_retries(attempt, what="the invitation"))
    if principal.session_id:
        await res.sessions.switch_workspace(principal.session_id, org_id)
    view = await queries.organization_of(res.pool, principal.user_id, org_id)
    if view is None:
        raise Problem(503, "the membership is being recorded; retry shortly", type_="read-model-lagging",
                      headers={"Retry-After": "1"})
    return view


route_handlers = [list_invitations, create_invitation, revoke_invitation, lookup_invitation, accept_invitation]
