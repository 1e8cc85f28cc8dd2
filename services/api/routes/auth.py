"""``/auth/login``, ``/auth/logout``, ``/auth/me``."""

from __future__ import annotations

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import NotAuthorizedException
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from .. import db
from ..auth.passwords import verify_password_async
from ..auth.principal import Principal, authenticate, check_csrf
from ..auth.sessions import SESSION_COOKIE, first_membership
from ..context import client_ip
from ..errors import Problem
from ..schemas import LoginRequest, UserView
from ..state import resources

_BAD_CREDENTIALS = "invalid email or password"


def _secure(request: Request) -> bool:
    forced = resources(request).api.cookie_secure
    return forced if forced is not None else request.url.scheme == "https"


async def _organization(request: Request, org_id: str | None) -> tuple[str | None, str | None]:
    if not org_id:
        return None, None
    row = await db.fetchrow(resources(request).pool, "SELECT name, slug FROM rm.organizations WHERE id = $1", org_id)
    return (row["name"], row["slug"]) if row else (None, None)


@post("/auth/login", status_code=HTTP_200_OK, tags=["auth"], summary="Sign in; sets the session cookie")
async def login(request: Request, data: LoginRequest) -> Response[UserView]:
    check_csrf(request)
    res = resources(request)
    email = data.email.strip().lower()
    ip = client_ip(request)
    limiter = res.login_limiter
    wait = limiter.retry_after(f"email:{email}", f"ip:{ip}")
    if wait:
        raise Problem(429, "too many failed sign-ins; try again later", type_="rate-limited",
                      headers={"Retry-After": str(wait)})
    user = await db.fetchrow(
        res.pool, "SELECT id, email, password_hash, is_admin FROM rm.users WHERE lower(email) = $1", email)
    ok = await verify_password_async(user["password_hash"] if user else None, data.password)
    if not ok or user is None:
        limiter.failed(f"email:{email}", f"ip:{ip}")
        raise NotAuthorizedException(detail=_BAD_CREDENTIALS)
    limiter.succeeded(f"email:{email}")
    user_id = str(user["id"])
    membership = await first_membership(res.pool, user_id)
    org_id, org_role = membership if membership else (None, None)
    _, token, expires_at = await res.sessions.create_session(
        user_id=user_id, org_id=org_id, ip=ip, user_agent=request.headers.get("user-agent"),
        ttl_s=res.api.session_ttl_s,
    )
    name, slug = await _organization(request, org_id)
    view = UserView(id=user_id, email=user["email"], username=user["email"],
                    role="admin" if user["is_admin"] else "user", is_admin=user["is_admin"], organization_id=org_id,
                    organization_name=name, organization_slug=slug, organization_role=org_role)
    cookie = Cookie(key=SESSION_COOKIE, value=token, httponly=True, samesite="lax", secure=_secure(request), path="/",
                    max_age=res.api.session_ttl_s, expires=int(expires_at.timestamp()))
    return Response(view, cookies=[cookie], headers={"Cache-Control": "no-store"})


@post("/auth/logout", status_code=HTTP_204_NO_CONTENT, tags=["auth"], summary="Revoke the current session")
async def logout(request: Request) -> Response[None]:
    """Idempotent: revokes the presented session if any, and always clears the cookie."""
    principal = None
    try:
        principal = await authenticate(request)
    except NotAuthorizedException:
        principal = None
    if principal is not None and principal.session_id:
        if principal.via_cookie:
            check_csrf(request)
        await resources(request).sessions.revoke(principal.session_id)
    clear = Cookie(key=SESSION_COOKIE, value="", httponly=True, samesite="lax", secure=_secure(request), path="/",
                   max_age=0, expires=0)
    return Response(None, status_code=HTTP_204_NO_CONTENT, cookies=[clear])


@get("/auth/me", tags=["auth"], summary="The signed-in user (or the API key's owner) and current organization")
async def me(request: Request, principal: Principal) -> UserView:
    res = resources(request)
    user = await db.fetchrow(res.pool, "SELECT email, is_admin FROM rm.users WHERE id = $1", principal.user_id)
    if user is None:
        raise NotAuthorizedException(detail="this account no longer exists")
    name, slug = await _organization(request, principal.org_id)
    role = principal.org_role
    if role is None and principal.org_id:
        role = await db.fetchval(
            res.pool, "SELECT role FROM rm.memberships WHERE organization_id = $1 AND user_id = $2",
            principal.org_id, principal.user_id)
    return UserView(id=principal.user_id, email=user["email"], username=user["email"],
                    role="admin" if user["is_admin"] else "user", is_admin=user["is_admin"],
                    organization_id=principal.org_id, organization_name=name, organization_slug=slug,
                    organization_role=role, auth_method="session" if principal.kind == "user" else "api_key",
                    api_key_id=principal.key_id)


route_handlers = [login, logout, me]
