"""Who is calling: a person (session cookie or ``Bearer <session token>``) or a program (API key).

``provide_principal`` is an app-wide dependency: a handler that names ``principal`` (or
``org_id``, which depends on it) requires authentication. The organisation always comes from
the credential: the API key's org, or the session user's current membership. Never from the
path, the query or the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from litestar import Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from services.api.keys import KEY_PREFIX

from ..state import resources
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


def _from_api_key(request: Request, raw_key: str) -> Principal | None:
    found = resources(request).keycache.authenticate(raw_key)
    if found is None:
        return None
    return Principal(kind="api_key", user_id=str(found.user_id or ""), org_id=str(found.org_id),
                     key_id=str(found.key_id), scopes=tuple(sorted(found.scopes)))


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
            principal = _from_api_key(request, credential)
        else:
            principal = await _from_session_token(request, credential, via_cookie=False)
        if principal is None:
            raise _unauthorized("invalid or revoked credentials")
    elif api_key_header:
        principal = _from_api_key(request, api_key_header.strip())
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
    """Whether a browser request comes from our own origin (or an allowed one); non-browsers pass."""
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site") in (None, "same-origin", "none")
    origin = origin.rstrip("/")
    if origin in resources(request).api.allowed_origins:
        return True
    host = request.headers.get("host", "")
    return origin != "null" and urlsplit(origin).netloc.lower() == host.lower()


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
