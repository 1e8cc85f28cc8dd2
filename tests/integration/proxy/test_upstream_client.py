"""The native upstream client against hand-written HTTP servers: framing, keep-alive, failures."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import wait_until

from services.api.proxy.upstream import Target, UpstreamClient, UpstreamError


class RawServer:
    """Answers each request with the next canned bytes; records requests and connections."""

    def __init__(self, answers, *, close_after: bool = False, delay_s: float = 0.0) -> None:
        self.answers = list(answers)
        self.close_after = close_after
        self.delay_s = delay_s
        self.requests: list[bytes] = []
        self.connections = 0
        self.closed = 0
        self.server = None
        self.writers = []

    async def start(self) -> "RawServer":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    @property
    def target(self) -> Target:
        port = self.server.sockets[0].getsockname()[1]
        return Target(f"http://127.0.0.1:{port}", "/v1/chat/completions")

    async def _handle(self, reader, writer):
        self.connections += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int([ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")][0]
                             .split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                answer = self.answers.pop(0) if self.answers else b""
                for part in answer if isinstance(answer, list) else [answer]:
                    writer.write(part)
                    await writer.drain()
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                if self.close_after:
                    writer.close()
                    await writer.wait_closed()
                    self.closed += 1
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def stop(self):
        self.server.close()
        for w in self.writers:
            w.close()


JSON_OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}"


async def test_content_length_and_keep_alive_reuse():
    srv = await RawServer([JSON_OK, JSON_OK, JSON_OK]).start()
    client = UpstreamClient()
    for _ in range(3):
        resp = await client.request(srv.target, b'{"model":"m"}', "rid-1", stream=False)
        assert resp.status == 200 and resp.header(b"content-type") == b"application/json"
        assert await resp.read() == b'{"ok":true}'
        resp.release()
    assert srv.connections == 1  # one keep-alive connection for all three
    first = srv.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"x-request-id: rid-1\r\n" in first and b"content-length: 13\r\n" in first and first.endswith(b'{"model":"m"}')
    await client.close()
    await srv.stop()


async def test_chunked_stream_is_delivered_piece_by_piece():
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    parts = [head, b"6\r\ndata:1\r\n", b"6\r\ndata:2\r\n", b"0\r\n\r\n"]
    srv = await RawServer([parts], delay_s=0.05).start()
    client = UpstreamClient()
    resp = await client.request(srv.target, b"{}", "r", stream=True)
    got = []
    while chunk := await resp.read_some():
        got.append(chunk)
    resp.release()
    assert b"".join(got) == b"data:1data:2" and len(got) == 2
    assert b"accept: text/event-stream" in srv.requests[0]
    await client.close()
    await srv.stop()


async def test_body_delimited_by_connection_close():
    srv = await RawServer([b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil-eof"], close_after=True).start()
    client = UpstreamClient()
    resp = await client.request(srv.target, b"{}", "r", stream=False)
    assert await resp.read() == b"until-eof"
    resp.release()
    await client.close()
    await srv.stop()


async def test_idle_connection_closed_by_the_engine_is_replaced_once():
    srv = await RawServer([JSON_OK, JSON_OK], close_after=True).start()
    client = UpstreamClient()
    resp = await client.request(srv.target, b"{}", "r", stream=False)
    await resp.read()
    resp.release()  # keep-alive according to the headers, but the server closes right after
    await wait_until(lambda: srv.closed == 1, timeout_s=5, message="the engine closed the idle connection")
    resp = await client.request(srv.target, b"{}", "r", stream=False)
    assert await resp.read() == b'{"ok":true}'
    resp.release()
    assert srv.connections == 2
    await client.close()
    await srv.stop()


async def test_failures_are_classified():
    client = UpstreamClient(connect_timeout_s=1.0, read_timeout_s=0.2)
    from services.runtime.embedded import free_port

    with pytest.raises(UpstreamError) as e:
        await client.request(Target(f"http://127.0.0.1:{free_port()}", "/v1/x"), b"{}", "r", stream=False)
    assert e.value.kind == "connect_error"

    silent = await RawServer([[b""]]).start()  # reads the request, never answers
    with pytest.raises(UpstreamError) as e:
        await client.request(silent.target, b"{}", "r", stream=False)
    assert e.value.kind == "read_timeout"
    await silent.stop()

    cut = await RawServer([b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial"], close_after=True).start()
    resp = await client.request(cut.target, b"{}", "r", stream=False)
    with pytest.raises(UpstreamError) as e:
        await resp.read()
    assert e.value.kind == "disconnected"
    resp.release()
    await cut.stop()

    garbage = await RawServer([b"NOT HTTP AT ALL\r\n\r\n"]).start()
    with pytest.raises(UpstreamError) as e:
        await client.request(garbage.target, b"{}", "r", stream=False)
    assert e.value.kind in ("protocol_error", "disconnected")
    await garbage.stop()
    await client.close()


def test_target_refuses_odd_hosts_and_builds_a_fixed_head():
    t = Target("http://10.1.2.3:8000", "/v1/embeddings", api_key="secret")
    assert t.head_json.startswith(b"POST /v1/embeddings HTTP/1.1\r\nhost: 10.1.2.3:8000\r\n")
    assert b"authorization: Bearer secret\r\n" in t.head_json
    with pytest.raises(ValueError):
        Target("http://", "/v1/x")
