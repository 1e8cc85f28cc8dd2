"""A zero-delay OpenAI-shaped engine for measuring the proxy hop (raw asyncio + httptools + uvloop).

Not a model: it answers ``POST /v1/chat/completions`` (and ``/v1/completions``) with a fixed
JSON body, or with an SSE stream of ``--chunks`` content events when ``"stream": true`` (plus
the usage event when ``stream_options.include_usage`` is true, as vLLM does), then ``[DONE]``.
Keep-alive, chunked transfer for streams. As cheap as a Python server gets, so that what the
benchmark shows is the proxy, not the engine.

    python benchmarks/proxy/stub_engine.py --port 8001 --model bench --chunks 64
"""

from __future__ import annotations

import argparse
import asyncio
import json

import httptools

_JSON_BODY = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "MODEL",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello from the stub engine"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18},
}, separators=(",", ":")).encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def build_responses(model: str, chunks: int) -> tuple[bytes, bytes, bytes]:
    body = _JSON_BODY.replace(b"MODEL", model.encode())
    unary = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)) + body
    head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    events = []
    for i in range(chunks):
        ev = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": model,
              "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}]}
        events.append(_chunk(b"data: " + json.dumps(ev, separators=(",", ":")).encode() + b"\n\n"))
    usage = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [],
             "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}}
    usage_ev = _chunk(b"data: " + json.dumps(usage, separators=(",", ":")).encode() + b"\n\n")
    done = _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
    stream_plain = head + b"".join(events) + done
    stream_usage = head + b"".join(events) + usage_ev + done
    return unary, stream_plain, stream_usage


class EngineProtocol(asyncio.Protocol):
    def __init__(self, responses) -> None:
        self.unary, self.stream_plain, self.stream_usage = responses
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.body = []

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self):
        self.body = []

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        body = b"".join(self.body)
        if b'"stream":true' in body or b'"stream": true' in body:
            # Zero delay: the whole stream goes out in one write (the kernel would coalesce it anyway).
            wants_usage = b'"include_usage":true' in body or b'"include_usage": true' in body
            self.transport.write(self.stream_usage if wants_usage else self.stream_plain)
        else:
            self.transport.write(self.unary)


async def serve(host: str, port: int, model: str, chunks: int) -> None:
    responses = build_responses(model, chunks)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: EngineProtocol(responses), host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="bench")
    parser.add_argument("--chunks", type=int, default=64)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.host, args.port, args.model, args.chunks))
    except ImportError:
        asyncio.run(serve(args.host, args.port, args.model, args.chunks))


if __name__ == "__main__":
    main()
