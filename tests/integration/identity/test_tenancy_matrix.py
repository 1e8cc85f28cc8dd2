"""The cross-tenant matrix, generated from the app's OpenAPI document.

Every route x method is called by org A's owner (a session, then an API key with every scope)
with org B's objects wherever the route takes one (path, query, or a body field naming an
organization). The answer must be the one a non-existent object gets (404, or a 403 that does
not depend on the object), no response body may contain anything of B that the caller did not
send, and B's read model, sessions, events and commands are unchanged afterwards.

A route with a path parameter this file does not know fails the test: a new route must say
which object it addresses before it ships.
"""

from __future__ import annotations

import json
import uuid

from .tenancy import leaks, make_tenant, snapshot

SKIP_PATHS = {
    "/auth/login", "/auth/logout",  # sign-in itself (tested in test_sessions_csrf)
    "/auth/password-reset/request", "/auth/password-reset/reset",  # public; tested with the reset flow
    "/events/stream",  # an endless stream: test_sse_never_carries_another_tenant
    "/metrics", "/healthz", "/readyz", "/version", "/api/version",
}
# Path parameters that name a tenant's object, and which of B's objects to put there.
FOREIGN = {"instance_id": "instance_id", "key_id": "key_id", "user_id": "member_user_id",
           "invitation_id": "invitation_id", "session_id": "session_id"}
# Path parameters that name global catalog objects (no tenant): called, checked for leaks only.
GLOBAL_PARAMS = {"zone_id"}
# Routes acting on the caller's own workspace that would end the caller's session or membership.
LAST = {("POST", "/organizations/current/leave"), ("POST", "/auth/sessions/revoke_others")}
# Valid bodies, so that a refusal is about the object, not the body.
BODIES = {
    ("PUT", "/organizations/current/members/{user_id}"): {"role": "user"},
    ("PUT", "/api_keys/{key_id}"): {"name": "renamed by a stranger"},
    ("PUT", "/users/{user_id}"): {"first_name": "Mallory"},
    ("PUT", "/organizations/current"): {"organization_id": "<org>"},
    ("POST", "/organizations"): {"name": "Alpha Two", "slug": "alpha-two", "set_as_current": False},
    ("PATCH", "/organizations/current"): {"name": "Alpha Renamed"},
    ("POST", "/organizations/current/invitations"): {"email": "friend@example.com"},
    ("POST", "/organizations/invitations/accept"): {"token": "x" * 43},
    ("POST", "/organizations/invitations/lookup"): {"token": "x" * 43},
    ("POST", "/api_keys"): {"name": "alpha key"},
    ("POST", "/users"): {"email": "mallory@example.com", "password": "mallory's long password"},
    ("PUT", "/auth/me"): {"first_name": "Alice"},
    ("PUT", "/auth/me/password"): {"current_password": "wrong wrong wrong", "new_password": "whatever long enough"},
    ("POST", "/deployments"): {"model": "mock-echo-model", "instance_type": "mock-local-small", "zone": "local"},
}
QUERY = {"instance_id": "instance_id", "key_id": "key_id", "user_id": "member_user_id",
         "organization_id": "org_id", "org_id": "org_id"}


def _operations(spec: dict):
    for path, item in sorted(spec["paths"].items()):
        if path in SKIP_PATHS or path.startswith(("/v1/", "/api-docs", "/swagger")):
            continue
        for method in ("get", "post", "put", "patch", "delete"):
            if method in item:
                yield method.upper(), path, item[method]


def _foreign(tenant, name: str) -> str:
    return {"instance_id": tenant.instance_id, "key_id": tenant.key_id, "member_user_id": tenant.member.user_id,
            "invitation_id": tenant.invitation_id, "session_id": tenant.session_id, "org_id": tenant.org_id}[name]


def _request(method: str, path: str, op: dict, tenant, *, nonexistent: bool = False):
    url, params = path, {}
    for param in op.get("parameters", []):
        name = param["name"]
        if param["in"] == "path":
            if name in GLOBAL_PARAMS:
                value = str(uuid.uuid4())
            else:
                assert name in FOREIGN, f"{method} {path}: unknown path parameter {name!r}; add it to FOREIGN"
                value = str(uuid.uuid4()) if nonexistent else _foreign(tenant, FOREIGN[name])
            url = url.replace("{" + name + "}", value)
        elif param["in"] == "query" and name in QUERY:
            params[name] = str(uuid.uuid4()) if nonexistent else _foreign(tenant, QUERY[name])
    body = BODIES.get((method, path))
    if body is not None:
        body = json.loads(json.dumps(body).replace("<org>", str(uuid.uuid4()) if nonexistent else tenant.org_id))
    elif "requestBody" in op:
        body = {}
    return url, params, body


async def _run_matrix(idp, client, tenant, spec, *, label: str, covered: set) -> list[str]:
    problems: list[str] = []
    ops = sorted(_operations(spec), key=lambda o: (o[0], o[1]) in LAST)
    for method, path, op in ops:
        url, params, body = _request(method, path, op, tenant)
        resp = await client.request(method, url, params=params, json=body)
        sent = url + json.dumps(params) + json.dumps(body)
        found = leaks(resp.text, tenant.secrets, sent=sent)
        if found:
            problems.append(f"{label} {method} {path}: body leaks {found}: {resp.text[:300]}")
        if resp.status_code >= 500:
            problems.append(f"{label} {method} {path}: {resp.status_code} {resp.text[:200]}")
        addresses_b = any(p["in"] == "path" and p["name"] in FOREIGN for p in op.get("parameters", [])) or (
            body is not None and tenant.org_id in json.dumps(body))
        if not addresses_b:
            continue
        covered.add((method, path))
        if resp.status_code not in (403, 404):
            problems.append(f"{label} {method} {path}: another org's object answered {resp.status_code}: "
                            f"{resp.text[:200]}")
            continue
        # The answer must not depend on whether the object exists elsewhere.
        url2, params2, body2 = _request(method, path, op, tenant, nonexistent=True)
        twin = await client.request(method, url2, params=params2, json=body2)
        if (twin.status_code, _detail(twin)) != (resp.status_code, _detail(resp)):
            problems.append(f"{label} {method} {path}: foreign object {resp.status_code} {_detail(resp)!r} vs "
                            f"none {twin.status_code} {_detail(twin)!r}")
    return problems


async def _finops_rows_for(idp, tenant) -> None:
    """FinOps tables with B's usage in them, so a FinOps route that ignored the tenant would leak it."""
    from datetime import datetime, timezone

    from services.finops import store

    async with idp.pool.acquire() as conn:
        await store.create_schema(conn, "finops")
        await conn.execute(
            """INSERT INTO finops.usage_minute (org_id, bucket_minute, api_key_id, model, requests, error_requests,
                   prompt_tokens, completion_tokens) VALUES ($1, $2, $3, 'bravo-secret-model', 7, 0, 70, 7)""",
            tenant.org_id, datetime.now(timezone.utc).replace(second=0, microsecond=0), tenant.key_id)
    tenant.secrets.add("bravo-secret-model")


def _detail(resp) -> str:
    try:
        return resp.json().get("detail", "")
    except ValueError:
        return resp.text


async def test_cross_tenant_matrix_from_openapi(idp):
    spec = (await idp.client().get("/api-docs/openapi.json")).json()
    bravo = await make_tenant(idp, "bravo-corp", "Bravo Corp")
    alice = await idp.user("alice@example.com")
    await idp.org(alice, "alpha-corp")
    await _finops_rows_for(idp, bravo)
    before = await snapshot(idp, bravo)

    covered: set = set()
    problems = await _run_matrix(idp, alice.client, bravo, spec, label="session", covered=covered)
    # The same with an API key of A (every scope A's owner holds), signed in as nobody.
    fresh = await idp.person("alice@example.com")
    key = (await fresh.client.post("/api_keys", json={"name": "matrix"})).json()["key"]
    keyed = idp.client(headers={"Authorization": f"Bearer {key}"})
    problems += await _run_matrix(idp, keyed, bravo, spec, label="api key", covered=covered)
    assert not problems, "\n".join(problems)
    # Every route that takes a tenant's object was called with B's (the matrix is not vacuous).
    with_objects = {(m, p) for m, p, op in _operations(spec)
                    if any(x["in"] == "path" and x["name"] in FOREIGN for x in op.get("parameters", []))}
    assert with_objects <= covered and len(with_objects) >= 10, sorted(with_objects - covered)
    assert await snapshot(idp, bravo) == before
    # B still works as before: its owner, member and key.
    assert (await bravo.owner.client.get("/auth/me")).json()["organization_id"] == bravo.org_id
    assert (await idp.client().get("/instances", headers={"Authorization": f"Bearer {bravo.key}"})).status_code == 200
