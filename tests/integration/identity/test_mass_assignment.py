"""Mass assignment: server-owned fields slipped into any create/update body are refused (422), never honoured.

Generated from the OpenAPI document: every operation with a JSON body gets a valid body plus,
one at a time, each field below that its schema does not define. The answer must be a 422
naming that field, and nothing may have been written (no event, no command).
"""

from __future__ import annotations

from .test_tenancy_matrix import BODIES, SKIP_PATHS, _operations

SERVER_OWNED = ("org_id", "organization_id", "role", "scopes", "is_admin", "user_id", "id", "owner_id",
                "created_by_user_id", "key_hash", "password_hash", "upstream_url", "api_base")
PATH_VALUES = {"instance_id", "key_id", "user_id", "invitation_id", "session_id", "zone_id"}
EXTRA_BODIES = {
    ("POST", "/auth/login"): {"email": "x@example.com", "password": "irrelevant here"},
    ("POST", "/auth/password-reset/request"): {"email": "x@example.com"},
    ("POST", "/auth/password-reset/reset"): {"token": "t" * 43, "new_password": "long enough password"},
}


def _schema(spec: dict, op: dict) -> dict:
    ref = op["requestBody"]["content"]["application/json"]["schema"].get("$ref", "")
    return spec["components"]["schemas"].get(ref.rsplit("/", 1)[-1], {}) if ref else {}


async def _written(idp) -> tuple[int, int]:
    events = (await idp.js.stream_info("EVENTS")).state.last_seq
    commands = (await idp.js.stream_info("COMMANDS")).state.last_seq
    return events, commands


async def test_extra_server_owned_fields_are_refused_everywhere(idp):
    spec = (await idp.client().get("/api-docs/openapi.json")).json()
    alice = await idp.user("ma-alice@example.com")
    org_id = await idp.org(alice, "mass-assign")
    instance_id = await idp.instance(org_id)
    key_id = (await alice.client.post("/api_keys", json={"name": "k"})).json()["id"]
    ids = {"instance_id": instance_id, "key_id": key_id, "user_id": alice.user_id, "zone_id": org_id,
           "invitation_id": org_id, "session_id": org_id}
    operations = [(m, p, op) for m, p, op in _operations(spec) if "requestBody" in op]
    operations += [(m, p, spec["paths"][p][m.lower()]) for (m, p) in EXTRA_BODIES if p in SKIP_PATHS]
    problems, tried = [], 0
    await idp.settled()
    for method, path, op in operations:
        props = set(_schema(spec, op).get("properties", {}))
        base = dict(EXTRA_BODIES.get((method, path)) or BODIES.get((method, path)) or {})
        base = {k: (v if v != "<org>" else org_id) for k, v in base.items()}
        url = path
        for name in PATH_VALUES:
            url = url.replace("{" + name + "}", ids[name])
        client = idp.admin.client if path.startswith("/users") else alice.client
        for extra in SERVER_OWNED:
            if extra in props:
                continue
            before = await _written(idp)
            resp = await client.request(method, url, json={**base, extra: "00000000-0000-0000-0000-000000000000"})
            tried += 1
            fields = [e.get("field") for e in (resp.json().get("errors", []) if resp.headers.get(
                "content-type", "").startswith("application/problem+json") else [])]
            if resp.status_code != 422 or extra not in fields:
                problems.append(f"{method} {path} +{extra}: {resp.status_code} {resp.text[:160]}")
            if await _written(idp) != before:
                problems.append(f"{method} {path} +{extra}: something was written")
    assert not problems, "\n".join(problems)
    assert tried >= 100
    # Legitimate fields stay server-decided: a key asked for by a 'user' never gets 'manage',
    # and a user created without is_admin is not an administrator (role matrix and users tests).
