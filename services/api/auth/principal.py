"""Who is calling: a person (session cookie or ``Bearer <session token>``) or a program (API key).

``provide_principal`` is an app-wide dependency: a handler that names ``principal`` (or
``org_id``, which depends on it) requires authentication. The organisation always comes from
the credential: the API key's org, or the session user's current membership. Never from the
path, the query or the body.

An API key acts as its owner, in its organisation, with its owner's *current* role there: a key
whose owner left the organisation or was deleted stops working on the management API at once,
and its scopes are cut to what the owner's role still holds (``roles.scopes_for_role``).
Failed API keys are counted per client address; past the limit the client gets 429.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from litestar import Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from services.api.keys import KEY_PREFIX

from .. import db
from ..context import client_ip
from ..errors import Problem
from ..state import resources
from .origin import same_origin as origin_rule
from .roles import scopes_for_role
from .sessions import SESSION_COOKIE

MANAGE_SCOPE = "manage"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["user", "api_key"]
    user_id: str
    org_id: str | None
    org_role: str | None = None
    email: str | None = None
    is_admin: bool = False
    session_id: str | None = None
    key_id: str | None = None
    scopes: tuple[str, ...] = ()
    via_cookie: bool = False

    @property
    def actor(self) -> str:
        return f"user:{self.user_id}" if self.kind == "user" else f"api_key:{self.key_id}"


def _unauthorized(detail: str = "authentication required") -> NotAuthorizedException:
    return NotAuthorizedException(detail=detail)


async def _from_session_token(request: Request, token: str, *, via_cookie: bool) -> Principal | None:
    info = await resources(request).sessions.load(token)
    if info is None:
        return None
    return Principal(kind="user", user_id=info.user_id, org_id=info.org_id, org_role=info.org_role, email=info.email,
                     is_admin=info.is_admin, session_id=info.session_id, via_cookie=via_cookie)


_KEY_OWNER_SQL = """
SELECT u.is_admin, m.role FROM rm.users u
JOIN rm.memberships m ON m.user_id = u.id AND m.organization_id = $2 AND m.removed_at IS NULL
WHERE u.id = $1 AND u.deleted_at IS NULL
"""


def _key_limiter(request: Request):
    runtime = getattr(request.app.state, "identity", None)
    return runtime.key_limiter if runtime is not None else None


def _throttle_keys(request: Request) -> None:
    limiter = _key_limiter(request)
    wait = limiter.retry_after(f"ip:{client_ip(request)}") if limiter is not None else 0
    if wait:
        raise Problem(429, "too many failed API keys from this address; try again later", type_="rate-limited",
                      headers={"Retry-After": str(wait)})


def _key_failed(request: Request) -> None:
    limiter = _key_limiter(request)
    if limiter is not None:
        limiter.failed(f"ip:{client_ip(request)}")


async def _from_api_key(request: Request, raw_key: str) -> Principal | None:
    _throttle_keys(request)
    # One SHA-256 of the whole presented key, then a dict lookup of the digest: the time taken
    # does not depend on how many leading characters match a real key.
    found = resources(request).keycache.authenticate(raw_key)
    if found is None or not found.user_id:
        _key_failed(request)
        return None
    owner = await db.fetchrow(resources(request).pool, _KEY_OWNER_SQL, str(found.user_id), str(found.org_id))
    if owner is None:
        _key_failed(request)
        return None
    scopes = frozenset(found.scopes) & scopes_for_role(owner["role"])
    return Principal(kind="api_key", user_id=str(found.user_id), org_id=str(found.org_id), org_role=owner["role"],
                     is_admin=owner["is_admin"], key_id=str(found.key_id), scopes=tuple(sorted(scopes)))


async def authenticate(request: Request) -> Principal | None:
    """The caller's principal, ``None`` without credentials; raises 401 for bad ones."""
    cached = request.scope.get("state", {}).get("principal")
    if cached is not None:
        return cached
    principal: Principal | None = None
    authorization = request.headers.get("authorization")
    api_key_header = request.headers.get("x-api-key")
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise _unauthorized("use Authorization: Bearer <API key or session token>")
        if credential.startswith(KEY_PREFIX):
            principal = await _from_api_key(request, credential)
        else:
            _throttle_keys(request)
            principal = await _from_session_token(request, credential, via_cookie=False)
            if principal is None:
                _key_failed(request)
        if principal is None:
            raise _unauthorized("invalid or revoked credentials")
    elif api_key_header:
        principal = await _from_api_key(request, api_key_header.strip())
        if principal is None:
            raise _unauthorized("invalid or revoked credentials")
    else:
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            principal = await _from_session_token(request, token, via_cookie=True)
    if principal is not None:
        request.scope.setdefault("state", {})["principal"] = principal
    return principal


def same_origin(request: Request) -> bool:
    """Whether a browser request comes from our own origin (or an allowed one); non-browsers pass (origin.py)."""
    headers = request.headers
    return origin_rule(headers.get("origin"), headers.get("sec-fetch-site"), headers.get("host", ""),
                       resources(request).api.allowed_origins)


def check_csrf(request: Request) -> None:
    if request.method not in _SAFE_METHODS and not same_origin(request):
        raise PermissionDeniedException(detail="cross-origin request refused")


async def provide_principal(request: Request) -> Principal:
    principal = await authenticate(request)
    if principal is None:
        raise _unauthorized()
    if principal.via_cookie:
        check_csrf(request)
    if principal.kind == "api_key" and MANAGE_SCOPE not in principal.scopes:
        raise PermissionDeniedException(detail="this API key has no 'manage' scope")
    return principal


async def provide_org_id(principal: Principal) -> str:
    if not principal.org_id:
        raise PermissionDeniedException(detail="you are not a member of any organization")
    return principal.org_id


def require_user(principal: Principal) -> Principal:
    if principal.kind != "user":
        raise PermissionDeniedException(detail="this endpoint needs a signed-in user, not an API key")
    return principal


def require_org_role(principal: Principal, *roles: str) -> str:
    """The caller's organisation when their role there is one of ``roles``; 403 otherwise."""
    if not principal.org_id:
        raise PermissionDeniedException(detail="you are not a member of any organization")
    if principal.org_role not in roles:
        raise PermissionDeniedException(
            detail=f"this needs the role {' or '.join(roles)} in the organization (yours: {principal.org_role})")
    return principal.org_id


def require_admin(principal: Principal) -> Principal:
    """A platform administrator (global role ``admin``): catalog writes, global settings, users."""
    if not principal.is_admin:
        raise PermissionDeniedException(detail="this needs a platform administrator")
    return principal
