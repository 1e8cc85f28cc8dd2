"""The OpenAI proxy, mounted in the API as ``inventiv api`` serves it, takes the session cookie only from
our own origin: a page elsewhere (a sibling subdomain included, which SameSite=Lax lets the cookie reach)
must not spend the user's money. API keys are not ambient credentials: any origin may present one."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import wait_until

CHAT = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
FOREIGN = [{"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
           {"Sec-Fetch-Site": "same-site"}]


@pytest.fixture
def idp(idp_with_proxy):
    return idp_with_proxy


async def test_the_session_cookie_is_refused_from_another_origin_before_anything_happens(idp):
    me = await idp.user("proxy-csrf@example.com")
    await idp.org(me, "proxy-csrf")
    await idp.settled()
    for headers in FOREIGN:
        for path, body in (("/v1/chat/completions", CHAT), ("/v1/completions", {**CHAT, "prompt": "hi"})):
            resp = await me.client.post(path, json=body, headers=headers)
            assert resp.status_code == 403, (headers, resp.text)
            assert resp.json()["error"]["code"] == "cross_origin_request"
    # From our own origin, and from a client that is no browser, the cookie works: the request gets as far
    # as routing (that model does not exist).
    for headers in ({"Origin": idp.url}, {"Sec-Fetch-Site": "same-origin"}, {}):
        resp = await me.client.post("/v1/chat/completions", json=CHAT, headers=headers)
        assert resp.status_code == 404, (headers, resp.text)
        assert resp.json()["error"]["code"] == "model_not_found"


async def test_an_api_key_works_from_any_origin(idp):
    me = await idp.user("proxy-key-origin@example.com")
    await idp.org(me, "proxy-key-origin")
    created = await me.client.post("/api_keys", json={"name": "chat"}, headers={"Origin": idp.url})
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {created.json()['key']}", "Origin": "https://evil.example"}
    stranger = idp.client()

    async def answered() -> httpx.Response | None:
        resp = await stranger.post("/v1/chat/completions", json=CHAT, headers=headers)
        return resp if resp.status_code != 401 else None  # until the key cache has the new key

    resp = await wait_until(answered, timeout_s=10, message="the new key accepted by the proxy")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found", resp.text


async def test_v1_is_answered_by_the_proxy_alone_and_the_rest_by_litestar(idp):
    """``asgi_entry``: /v1 skips Litestar and the API's request middleware (one request id, the proxy's)."""
    me = await idp.user("proxy-entry@example.com")
    await idp.org(me, "proxy-entry")
    v1 = await me.client.post("/v1/chat/completions", json=CHAT)
    assert v1.status_code == 404 and len(v1.headers.get_list("x-request-id")) == 1
    api = await me.client.get("/auth/me")
    assert api.status_code == 200 and len(api.headers.get_list("x-request-id")) == 1
