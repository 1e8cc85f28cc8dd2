"""``/users``: accounts, managed by platform administrators only.

An account's id is derived from its e-mail address (``derived_id("user-email", email)``, as the
bootstrap does) and its first event is appended with "no history yet" as the expected
sequence: two concurrent creations of one address hit the same aggregate and exactly one
succeeds (the other gets 409 naming ``email``). The address therefore cannot change; a deleted
account's address can be used again (the new account continues the same aggregate).

New accounts are never administrators unless an administrator says so (``is_admin: true``).
An administrator cannot delete or demote themselves (someone must stay able to manage users).
Deleting an account removes it from its organisations (refused while it is the last owner of
one), revokes its API keys and sessions.
"""

from __future__ import annotations

from litestar import Request, delete, get, post, put
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from contracts import codec, subjects
from contracts.events import MemberAdded, MemberRemoved, UserCreated, UserDeleted, UserPasswordChanged, UserUpdated
from contracts.ids import GLOBAL_ORG, derived_id
from services.runtime.eventstore import EVENTS_STREAM, ConcurrencyConflict
from services.runtime.natsio import read_subject

from .. import db
from ..auth.identity_store import append_in_scope, load_scope, members_scope, user_scope, with_retries
from ..auth.inputs import check_password, check_person_name, normalize_email
from ..auth.membership_rules import fold_roster
from ..auth.passwords import hash_password_async
from ..auth.principal import Principal, require_admin, require_user
from ..auth.schemas import UserCreate, UserDetail, UserMembership, UserUpdate
from ..auth.user_state import fold_user
from ..auth.writes import envelope, revoke_member_keys, settled
from ..errors import Problem, field_error
from ..state import resources
from ..validation import path_uuid

_USER = """
SELECT id, email, first_name, last_name, is_admin, created_at, updated_at FROM rm.users
WHERE deleted_at IS NULL AND ($1::uuid IS NULL OR id = $1::uuid)
  AND ($2::text IS NULL OR email ILIKE '%' || $2 || '%' OR first_name ILIKE '%' || $2 || '%'
       OR last_name ILIKE '%' || $2 || '%')
ORDER BY email LIMIT $3 OFFSET $4
"""
_MEMBERSHIPS = """
SELECT m.organization_id, o.name, o.slug, m.role FROM rm.memberships m JOIN rm.organizations o ON o.id = m.organization_id
WHERE m.user_id = $1 AND m.removed_at IS NULL ORDER BY lower(o.name), o.id
"""


def user_id_for(email: str) -> str:
    return derived_id("user-email", email)


def _admin(principal: Principal) -> Principal:
    return require_admin(require_user(principal))


async def _detail(request: Request, user_id: str, *, memberships: bool = True) -> UserDetail:
    pool = resources(request).pool
    row = await db.fetchrow(pool, _USER, user_id, None, 1, 0)
    if row is None:
        raise Problem(404, "no such user", type_="not-found")
    orgs = await db.fetch(pool, _MEMBERSHIPS, user_id) if memberships else []
    return UserDetail(
        id=str(row["id"]), email=row["email"], username=row["email"], first_name=row["first_name"],
        last_name=row["last_name"], role="admin" if row["is_admin"] else "user", is_admin=row["is_admin"],
        created_at=row["created_at"], updated_at=row["updated_at"],
        memberships=[UserMembership(organization_id=str(o["organization_id"]), organization_name=o["name"],
                                    organization_slug=o["slug"], role=o["role"]) for o in orgs])


@get("/users", tags=["users"], summary="Every account (platform administrators)")
async def list_users(request: Request, principal: Principal,
                     q: str | None = Parameter(default=None, max_length=100, description="search e-mail and names"),
                     limit: int = Parameter(default=100, ge=1, le=500),
                     offset: int = Parameter(default=0, ge=0, le=1_000_000)) -> list[UserDetail]:
    _admin(principal)
    rows = await db.fetch(resources(request).pool, _USER, None, q, limit, offset)
    return [UserDetail(id=str(r["id"]), email=r["email"], username=r["email"], first_name=r["first_name"],
                       last_name=r["last_name"], role="admin" if r["is_admin"] else "user", is_admin=r["is_admin"],
                       created_at=r["created_at"], updated_at=r["updated_at"]) for r in rows]


@post("/users", status_code=HTTP_201_CREATED, tags=["users"],
      summary="Create an account (platform administrators); not an administrator unless is_admin is true")
async def create_user(request: Request, data: UserCreate, principal: Principal) -> UserDetail:
    _admin(principal)
    email = normalize_email(data.email)
    password = check_password(data.password)
    first, last = check_person_name(data.first_name, "first_name"), check_person_name(data.last_name, "last_name")
    res = resources(request)
    user_id = user_id_for(email)
    password_hash = await hash_password_async(password)
    scope = await load_scope(res.js, user_scope(user_id))
    if fold_user(scope.events).exists:
        raise field_error("email", "is already used by another account", status_code=409, type_="conflict")
    created = UserCreated(**envelope(request, principal, GLOBAL_ORG), user_id=user_id, email=email,
                          password_hash=password_hash, is_admin=data.is_admin, first_name=first, last_name=last)
    try:
        seq = await append_in_scope(res.js, created, scope)
    except ConcurrencyConflict:
        raise field_error("email", "is already used by another account", status_code=409, type_="conflict") from None
    await settled(request, seq)
    return await _detail(request, user_id)


@get("/users/{user_id:str}", tags=["users"], summary="One account and its organizations (platform administrators)")
async def get_user(request: Request, user_id: str, principal: Principal) -> UserDetail:
    _admin(principal)
    return await _detail(request, path_uuid("user_id", user_id))


@put("/users/{user_id:str}", tags=["users"],
     summary="Change an account's names, administrator flag or password (platform administrators)")
async def update_user(request: Request, user_id: str, data: UserUpdate, principal: Principal) -> UserDetail:
    _admin(principal)
    user_id = path_uuid("user_id", user_id)
    if data.is_admin is False and user_id == principal.user_id:
        raise field_error("is_admin", "you cannot remove your own administrator role", status_code=409,
                          type_="conflict")
    password_hash = await hash_password_async(check_password(data.password)) if data.password is not None else None
    res = resources(request)

    async def attempt() -> int:
        scope = await load_scope(res.js, user_scope(user_id))
        state = fold_user(scope.events)
        if not state.exists:
            raise Problem(404, "no such user", type_="not-found")
        first = state.first_name if data.first_name is None else check_person_name(data.first_name, "first_name")
        last = state.last_name if data.last_name is None else check_person_name(data.last_name, "last_name")
        is_admin = state.is_admin if data.is_admin is None else data.is_admin
        seq = 0
        if (first, last, is_admin) != (state.first_name, state.last_name, state.is_admin):
            seq = await append_in_scope(res.js, UserUpdated(**envelope(request, principal, GLOBAL_ORG), user_id=user_id,
                                                            is_admin=is_admin, first_name=first, last_name=last), scope)
        if password_hash is not None:
            seq = await append_in_scope(res.js, UserPasswordChanged(**envelope(request, principal, GLOBAL_ORG),
                                                                    user_id=user_id, password_hash=password_hash,
                                                                    reason="admin"), scope)
        return seq

    seq = await with_retries(attempt, what="the account")
    if password_hash is not None:  # a password set by someone else ends every session of the account
        await res.sessions.revoke_all(user_id)
    await settled(request, seq)
    return await _detail(request, user_id)


@delete("/users/{user_id:str}", status_code=HTTP_204_NO_CONTENT, tags=["users"],
        summary="Delete an account (platform administrators; never yourself)")
async def delete_user(request: Request, user_id: str, principal: Principal) -> None:
    _admin(principal)
    user_id = path_uuid("user_id", user_id)
    if user_id == principal.user_id:
        raise Problem(409, "you cannot delete your own account", type_="conflict")
    res = resources(request)
    if not fold_user((await load_scope(res.js, user_scope(user_id))).events).exists:
        raise Problem(404, "no such user", type_="not-found")
    orgs = await organizations_of_user(res.js, user_id)
    last = 0
    for org_id in orgs:
        last = max(last, await _leave(request, principal, org_id, user_id))
        last = max(last, await revoke_member_keys(request, principal, org_id, user_id))

    async def attempt() -> int:
        scope = await load_scope(res.js, user_scope(user_id))
        if not fold_user(scope.events).exists:
            return 0
        return await append_in_scope(res.js, UserDeleted(**envelope(request, principal, GLOBAL_ORG), user_id=user_id),
                                     scope)

    last = max(last, await with_retries(attempt, what="the account"))
    await res.sessions.revoke_all(user_id)
    await settled(request, last)


async def organizations_of_user(js, user_id: str) -> list[str]:
    """Where ``user_id`` is a member, from the membership events of every organisation (authoritative)."""
    roles: dict[str, bool] = {}
    for message in await read_subject(js, EVENTS_STREAM, f"evt.*.membership.{subjects.token(user_id)}.*"):
        event = codec.decode_event(message.data)
        if isinstance(event, MemberAdded):
            roles[event.organization_id] = True
        elif isinstance(event, MemberRemoved):
            roles[event.organization_id] = False
    return [org for org, member in roles.items() if member]


async def _leave(request: Request, principal: Principal, org_id: str, user_id: str) -> int:
    """Remove a member whose account is being deleted; refused while they are the last owner there."""
    res = resources(request)

    async def attempt() -> int:
        scope = await load_scope(res.js, members_scope(org_id))
        roster = fold_roster(scope.events)
        role = roster.role_of(user_id)
        if role is None:
            return 0
        if role == "owner" and roster.owners() == [user_id]:
            slug = await db.fetchval(res.pool, "SELECT slug FROM rm.organizations WHERE id = $1", org_id)
            raise Problem(409, f"this account is the last owner of the organization {slug!s}; make someone else "
                               "owner there first", type_="last-owner")
        return await append_in_scope(res.js, MemberRemoved(**envelope(request, principal, org_id), organization_id=org_id,
                                                           user_id=user_id, reason="user_deleted"), scope)

    return await with_retries(attempt, what="the organization's members")


route_handlers = [list_users, create_user, get_user, update_user, delete_user]
