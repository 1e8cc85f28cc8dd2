"""Who a request acts as: an API key (a dict lookup in the key cache) or a session token.

Credentials: ``Authorization: Bearer <token>``, else ``X-API-Key: <key>``, else the session
cookie (when configured). A token that looks like an API key (``sk-inv-...``) is only ever
checked against the key cache; anything else goes to the API's session callback. The cookie,
which a browser attaches by itself, is only accepted from our own origin (the API's CSRF rule,
``services/api/auth/origin.py``): otherwise a page on another origin could spend the user's
money. The principal must carry the ``inference`` scope. Credentials are never forwarded upstream.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from ..auth.origin import same_origin
from ..keys import looks_like_api_key
from . import errors
from .request import RequestHeaders

INFERENCE_SCOPE = "inference"

SessionAuthenticator = Callable[[str], Awaitable[Any]]


class Authenticator:
    __slots__ = ("keys", "session", "cookie_name", "allowed_origins")

    def __init__(self, key_cache, session: SessionAuthenticator | None, cookie_name: str | None,
                 allowed_origins: tuple[str, ...] = ()) -> None:
        self.keys = key_cache
        self.session = session
        self.cookie_name = cookie_name
        self.allowed_origins = allowed_origins

    async def __call__(self, hdrs: RequestHeaders):
        auth = hdrs.auth
        if auth is None and hdrs.api_key is not None:
            auth = b"Bearer " + hdrs.api_key
        principal = None
        if auth is not None:
            if auth[:7].lower() != b"bearer ":
                raise errors.invalid_api_key()
            token = auth[7:].strip().decode("latin-1")
            if looks_like_api_key(token):
                principal = self.keys.authenticate(token)
            elif self.session is not None and token:
                principal = await self.session(token)
        elif hdrs.cookie is not None and self.cookie_name and self.session is not None:
            value = cookie_value(hdrs.cookie, self.cookie_name)
            if value:
                if not same_origin(_text(hdrs.origin), _text(hdrs.sec_fetch_site), _text(hdrs.host) or "",
                                   self.allowed_origins):
                    raise errors.cross_origin()
                principal = await self.session(value)
        if principal is None:
            raise errors.invalid_api_key()
        scopes = getattr(principal, "scopes", None)
        if scopes is None or INFERENCE_SCOPE not in scopes:
            raise errors.missing_scope(INFERENCE_SCOPE)
        return principal


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def cookie_value(header: bytes, name: str) -> str | None:
    text = header.decode("latin-1")
    for part in text.split(";"):
        k, sep, v = part.strip().partition("=")
        if sep and k == name:
            return v.strip().strip('"') or None
    return None
