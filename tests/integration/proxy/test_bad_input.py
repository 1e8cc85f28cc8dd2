"""Bad input over real HTTP: caps, non-finite numbers, CR/LF in headers -> OpenAI-shaped 4xx, no upstream call."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

MSG = [{"role": "user", "content": "hi"}]


async def _ready(harness, **settings):
    await harness.start_proxy(**settings)
    engine = await harness.engine("m1")
    await harness.ready(engine.url, "m1")
    raw, _ = await harness.api_key()
    await harness.wait_routable("m1")
    return engine, raw


def _is_openai_error(r: httpx.Response, status: int, code: str, param: str | None = None) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == code, r.text
    if param is not None:
        assert err["param"] == param


async def test_caps_and_non_finite_numbers_are_refused_before_any_upstream_call(harness):
    engine, raw = await _ready(harness, max_tokens_cap=100, max_n=2)
    auth = {"Authorization": f"Bearer {raw}", "Content-Type": "application/json"}
    cases = [
        (b'{"model":"m1","messages":[],"max_tokens":101}', "invalid_value", "max_tokens"),
        (b'{"model":"m1","messages":[],"max_completion_tokens":1000000}', "invalid_value", "max_completion_tokens"),
        (b'{"model":"m1","messages":[],"n":3}', "invalid_value", "n"),
        (b'{"model":"m1","prompt":"x","best_of":3}', "invalid_value", "best_of"),
        (b'{"model":"m1","messages":[],"max_tokens":"lots"}', "invalid_value", "max_tokens"),
        (b'{"model":"m1","messages":[],"temperature":NaN}', "non_finite_number", None),
        (b'{"model":"m1","messages":[],"temperature":Infinity}', "non_finite_number", None),
        (b'{"model":"m1","messages":[],"logit_bias":{"1":-1e999}}', "non_finite_number", None),
        (b'{"model":"m1","messages":[{"role":"user","content":"x"}],"top_p":1e309}', "non_finite_number", None),
    ]
    async with httpx.AsyncClient(base_url=harness.base_url) as http:
        for body, code, param in cases:
            path = "/completions" if b"prompt" in body else "/chat/completions"
            _is_openai_error(await http.post(path, headers=auth, content=body), 400, code, param)
        # Within the caps, the same request goes through.
        ok = await http.post("/chat/completions", headers=auth,
                             content=b'{"model":"m1","messages":[],"max_tokens":100,"n":2,"temperature":1e308}')
        assert ok.status_code == 200
    assert engine.calls == 1

    client = openai.AsyncOpenAI(base_url=harness.base_url, api_key=raw, max_retries=0)
    with pytest.raises(openai.BadRequestError) as exc:
        await client.chat.completions.create(model="m1", messages=MSG, max_tokens=5000)
    assert exc.value.body["param"] == "max_tokens"
    assert engine.calls == 1


async def _raw_request(port: int, head: bytes) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    return status_line, rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("bad", [b"s\r\n injected: 1", b"s\rx", b"s\nx-injected: 1", b"s\x00x"])
async def test_header_values_with_cr_or_lf_get_an_openai_400_and_no_upstream_call(harness, bad):
    import json

    engine, raw = await _ready(harness)
    body = b'{"model":"m1","messages":[]}'
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + raw.encode()
            + b"\r\nContent-Type: application/json\r\nX-Inventiv-Session: " + bad
            + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    status, payload = await _raw_request(harness.port, head)
    assert status == b"HTTP/1.1 400 Bad Request"
    err = json.loads(payload)["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert engine.calls == 0


async def test_the_asgi_app_itself_refuses_control_characters_in_header_values(harness):
    """Under a server whose parser let such a value through, the proxy refuses it itself."""
    engine, raw = await _ready(harness)
    sent = []

    async def receive():
        return {"type": "http.request", "body": b'{"model":"m1","messages":[]}', "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"authorization", f"Bearer {raw}".encode()), (b"x-inventiv-session", b"a\r\nb: c")]}
    await harness.proxy(scope, receive, send)
    assert sent[0]["status"] == 400 and b'"code":"invalid_header"' in sent[1]["body"]
    assert engine.calls == 0


async def test_non_v1_parse_errors_keep_uvicorns_own_answer(harness):
    await harness.start_proxy()
    status, payload = await _raw_request(harness.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n")
    assert status == b"HTTP/1.1 400 Bad Request" and not payload.startswith(b"{")
