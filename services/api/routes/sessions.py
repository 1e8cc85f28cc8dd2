"""``/auth/sessions`` (list and revoke my sessions) and ``/auth/me`` updates (names, password).

Changing the password revokes every other session of the account; the one that changed it
stays signed in.
"""

from __future__ import annotations

from litestar import Request, get, post, put
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from contracts.events import UserPasswordChanged, UserUpdated
from contracts.ids import GLOBAL_ORG
from services.runtime.eventstore import ConcurrencyConflict

from ..auth.identity_store import append_in_scope, load_scope, user_scope, with_retries
from ..auth.inputs import check_password, check_person_name
from ..auth.passwords import hash_password_async, verify_password_async
from ..auth.principal import Principal, require_user
from ..auth.schemas import PasswordChange, ProfileUpdate, RevokedSessions, SessionView, UserDetail
from ..auth.user_state import fold_user
from ..auth.writes import envelope, settled
from ..errors import Problem, field_error
from ..state import resources
from ..validation import path_uuid
from .users import _detail


@get("/auth/sessions", tags=["auth"], summary="Your live sessions (where, since when, which one is this)")
async def list_sessions(request: Request, principal: Principal) -> list[SessionView]:
    require_user(principal)
    rows = await resources(request).sessions.list_live(principal.user_id)
    return [SessionView(id=str(r["id"]), ip_address=r["ip_address"], user_agent=r["user_agent"],
                        created_at=r["created_at"], last_used_at=r["last_used_at"], expires_at=r["expires_at"],
                        organization_id=None if r["personal_workspace"] or r["current_organization_id"] is None
                        else str(r["current_organization_id"]),
                        is_current=str(r["id"]) == principal.session_id) for r in rows]


@post("/auth/sessions/{session_id:str}/revoke", status_code=HTTP_204_NO_CONTENT, tags=["auth"],
      summary="Revoke one of your other sessions (sign out elsewhere); use /auth/logout for this one")
async def revoke_session(request: Request, session_id: str, principal: Principal) -> None:
    require_user(principal)
    session_id = path_uuid("session_id", session_id)
    if session_id == principal.session_id:
        raise Problem(409, "this is the session you are using; sign out with /auth/logout", type_="conflict")
    if not await resources(request).sessions.revoke_own(principal.user_id, session_id):
        raise Problem(404, "no such session", type_="not-found")


@post("/auth/sessions/revoke_others", status_code=HTTP_200_OK, tags=["auth"],
      summary="Revoke every session of yours except this one")
async def revoke_other_sessions(request: Request, principal: Principal) -> RevokedSessions:
    require_user(principal)
    count = await resources(request).sessions.revoke_all(principal.user_id, keep=principal.session_id)
    return RevokedSessions(revoked=count)


@put("/auth/me/password", status_code=HTTP_204_NO_CONTENT, tags=["auth"],
     summary="Change your password (the current one is required); signs out your other sessions")
async def change_password(request: Request, data: PasswordChange, principal: Principal) -> None:
    require_user(principal)
    new_password = check_password(data.new_password, "new_password")
    res = resources(request)
    # Guessing the current password with a stolen session counts against the account like sign-ins do.
    throttle = f"email:{(principal.email or '').lower()}"
    wait = res.login_limiter.retry_after(throttle)
    if wait:
        raise Problem(429, "too many wrong passwords; try again later", type_="rate-limited",
                      headers={"Retry-After": str(wait)})
    scope = await load_scope(res.js, user_scope(principal.user_id))
    state = fold_user(scope.events)
    if not state.exists or not await verify_password_async(state.password_hash, data.current_password):
        res.login_limiter.failed(throttle)
        raise field_error("current_password", "is not your current password", status_code=403, type_="forbidden")
    changed = UserPasswordChanged(**envelope(request, principal, GLOBAL_ORG), user_id=principal.user_id,
                                  password_hash=await hash_password_async(new_password), reason="change")
    # Checked against the history the current password was verified on: a concurrent change wins once.
    try:
        seq = await append_in_scope(res.js, changed, scope)
    except ConcurrencyConflict:
        raise Problem(409, "your account changed concurrently; retry", type_="conflict") from None
    await res.sessions.revoke_all(principal.user_id, keep=principal.session_id)
    await settled(request, seq)


@put("/auth/me", tags=["auth"], summary="Update your names (the e-mail address identifies the account)")
async def update_profile(request: Request, data: ProfileUpdate, principal: Principal) -> UserDetail:
    require_user(principal)
    res = resources(request)

    async def attempt() -> int:
        scope = await load_scope(res.js, user_scope(principal.user_id))
        state = fold_user(scope.events)
        first = state.first_name if data.first_name is None else check_person_name(data.first_name, "first_name")
        last = state.last_name if data.last_name is None else check_person_name(data.last_name, "last_name")
        if (first, last) == (state.first_name, state.last_name):
            return 0
        return await append_in_scope(res.js, UserUpdated(**envelope(request, principal, GLOBAL_ORG),
                                                         user_id=principal.user_id, is_admin=state.is_admin,
                                                         first_name=first, last_name=last), scope)

    await settled(request, await with_retries(attempt, what="your account"))
    return await _detail(request, principal.user_id)


route_handlers = [list_sessions, revoke_session, revoke_other_sessions, change_password, update_profile]
