"""A small OpenAI-compatible engine for the proxy tests (aiohttp.web, in the test's event loop).

Deterministic: a streamed chat answer is ``tokens`` content deltas ``"t0 "``, ``"t1 "``, ...; with
``stream_options.include_usage`` it ends with a usage-only chunk (``choices: []``) as vLLM does.
Failure modes: ``"500"`` answers every inference call with a 500, ``"die_mid_stream"`` drops the
connection after two events; ``delay_s`` is the wait between streamed events, ``unary_delay_s``
the wait before a non-streamed answer.
"""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from services.runtime.embedded import free_port


class StubEngine:
    def __init__(self, model: str, *, mode: str = "ok", tokens: int = 8, delay_s: float = 0.0,
                 fail_first: int = 0, unary_delay_s: float = 0.0) -> None:
        self.unary_delay_s = unary_delay_s
        self.model = model
        self.fail_first = fail_first
        self.mode = mode
        self.tokens = tokens
        self.delay_s = delay_s
        self.calls = 0
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.aborted = 0
        self.completed = 0
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sent_tokens(self) -> list[str]:
        return [f"t{i} " for i in range(self.tokens)]

    async def start(self) -> "StubEngine":
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _begin(self, request: web.Request) -> dict | web.Response:
        self.calls += 1
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        if self.mode == "500" or self.calls <= self.fail_first:
            return web.json_response({"error": {"message": "boom", "type": "server_error"}}, status=500)
        if body.get("model") != self.model:
            return web.json_response({"error": {"message": "wrong model", "type": "invalid_request_error",
                                                "param": "model", "code": None}}, status=404)
        return body

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._begin(request)
        if isinstance(body, web.Response):
            return body
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        if not body.get("stream"):
            if self.unary_delay_s:
                await asyncio.sleep(self.unary_delay_s)
            text = "".join(self.sent_tokens())
            return web.json_response({
                "id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()), "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": self.tokens,
                          "total_tokens": prompt_tokens + self.tokens},
            })

        def chunk(delta: dict, finish=None) -> dict:
            return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": self.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": t}) for t in self.sent_tokens()]
        events.append(chunk({}, "length"))
        return await self._sse(request, body, events, prompt_tokens)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._begin(request)
        if isinstance(body, web.Response):
            return body
        prompt_tokens = len(str(body.get("prompt", "")).split())
        if not body.get("stream"):
            return web.json_response({
                "id": "cmpl-1", "object": "text_completion", "created": 1, "model": self.model,
                "choices": [{"index": 0, "text": "".join(self.sent_tokens()), "finish_reason": "length"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": self.tokens,
                          "total_tokens": prompt_tokens + self.tokens},
            })
        events = [{"id": "cmpl-1", "object": "text_completion", "created": 1, "model": self.model,
                   "choices": [{"index": 0, "text": t, "finish_reason": None}]} for t in self.sent_tokens()]
        return await self._sse(request, body, events, prompt_tokens)

    async def _sse(self, request, body, events, prompt_tokens) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if include_usage:
            events = events + [{"id": "x", "object": "chat.completion.chunk", "created": 1, "model": self.model,
                                "choices": [], "usage": {"prompt_tokens": prompt_tokens,
                                                         "completion_tokens": self.tokens,
                                                         "total_tokens": prompt_tokens + self.tokens}}]
        try:
            for i, event in enumerate(events):
                if self.mode == "die_mid_stream" and i == 2:
                    request.transport.close()
                    return resp
                await resp.write(b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n")
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.aborted += 1
            return resp
        self.completed += 1
        return resp

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await self._begin(request)
        if isinstance(body, web.Response):
            return body
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        n = sum(len(str(x).split()) for x in inputs)
        return web.json_response({
            "object": "list", "model": self.model,
            "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(inputs))],
            "usage": {"prompt_tokens": n, "total_tokens": n},
        })
