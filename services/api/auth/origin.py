"""Whether a browser request comes from our own origin: the CSRF rule for ambient credentials. Pure.

A session cookie is sent by the browser whatever page makes the request; SameSite=Lax keeps it off
cross-site POSTs, but not off requests from a sibling subdomain (same site, other origin). So a
request authenticated by the cookie must also come from our origin: ``Origin`` equal to the host
it was sent to, or one of ``INVENTIV_API_ALLOWED_ORIGINS``. Without ``Origin`` (older browsers on
some requests, and every non-browser client), ``Sec-Fetch-Site`` decides when present; a client
sending neither is not a browser, so there is no ambient credential to abuse. Used by the API's
routes and by the OpenAI proxy, so both apply the same rule.
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from urllib.parse import urlsplit


def same_origin(origin: str | None, sec_fetch_site: str | None, host: str, allowed_origins: Container[str]) -> bool:
    if origin is None:
        return sec_fetch_site in (None, "same-origin", "none")
    origin = origin.rstrip("/")
    if origin in allowed_origins:
        return True
    return origin != "null" and urlsplit(origin).netloc.lower() == host.lower()


def allowed_origins_from_env(env: Mapping[str, str]) -> tuple[str, ...]:
    """``INVENTIV_API_ALLOWED_ORIGINS``: comma-separated origins, trailing slashes dropped."""
    return tuple(o.strip().rstrip("/") for o in env.get("INVENTIV_API_ALLOWED_ORIGINS", "").split(",") if o.strip())
