"""A CPU stand-in for vLLM's OpenAI server, run as its own process.

    python -m agent.engines.fake_server --host 127.0.0.1 --port 8000 --model mock-echo-model \
        [--tokens-per-s 0] [--delay-first-token-ms 0] [--max-num-seqs 256] [--exit-on-stdin-eof] \
        [--shutdown-timeout-s 5] [--control-routes]

It speaks the OpenAI API the way vLLM does (same routes, chunk shapes, error shape, metric
names) so the agent, the proxy and the tests exercise real code paths without a GPU. Output
is deterministic; see ``echo.py`` for how tokens are derived.

``--control-routes`` adds ``POST /fake/control`` for tests to script what a real engine does
when it misbehaves (see ``FakeControl``): hang (requests stay running, no token comes out),
report scripted /metrics values, or append raw text (garbage) to /metrics.

It is also the "direct" baseline of the proxy benchmarks, so the hot path is lean: response
fragments are prebuilt bytes, JSON goes through msgspec, uvloop is used when installed,
there is no access log, and with ``--tokens-per-s 0`` a whole stream goes out in one write.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hmac
import os
import signal
import time
import uuid
from typing import Any

import msgspec
from aiohttp import web

from . import echo
from .fake_metrics import EngineCounters, FakeControl, FakeScript, render_metrics

_json = msgspec.json.Encoder()
_decode = msgspec.json.Decoder()
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
DONE = b"data: [DONE]\n\n"


class FakeEngine:
    def __init__(self, model: str, *, tokens_per_s: float = 0.0, first_token_delay_s: float = 0.0,
                 api_key: str | None = None, max_num_seqs: int = 256, kv_capacity_tokens: int = 262144,
                 control_routes: bool = False) -> None:
        self.model = model
        self.tokens_per_s = tokens_per_s
        self.first_token_delay_s = first_token_delay_s
        self.api_key = api_key
        self.counters = EngineCounters(max_num_seqs, kv_capacity_tokens)
        self.control_routes = control_routes
        self.script = FakeScript()
        self._gate = self.script.gate
        self._model_json = _json.encode(model)
        self._label = model.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        self._models_body = _json.encode({
            "object": "list",
            "data": [{"id": model, "object": "model", "created": int(time.time()), "owned_by": "vllm",
                      "root": model, "parent": None, "max_model_len": echo.MAX_CONTEXT_TOKENS}],
        })

    # ---- plumbing -------------------------------------------------------------------------

    def app(self) -> web.Application:
        # Like vLLM with VLLM_API_KEY: every /v1/* path (unknown ones too) needs the key; /health,
        # /version and /metrics stay open. No middleware at all without a key (the benchmarks' baseline).
        middlewares = [self._require_key] if self.api_key is not None else []
        app = web.Application(client_max_size=32 * 1024 * 1024, middlewares=middlewares)
        app.router.add_get("/health", self.health)
        app.router.add_get("/version", self.version)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_post("/v1/embeddings", self.embeddings)
        if self.control_routes:
            app.router.add_post("/fake/control", self.control)
        return app

    async def control(self, request: web.Request) -> web.Response:
        try:
            change = msgspec.json.decode(await request.read(), type=FakeControl)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self.error(400, f"Invalid control body: {exc}", "BadRequestError")
        self.script.apply(change)
        c = self.counters
        return web.Response(body=_json.encode({
            "hang": self.script.hanging, "scripted": self.script.scripted, "running": c.running,
            "waiting": c.waiting, "generation_tokens_total": c.generation_tokens_total,
        }), content_type="application/json")

    @staticmethod
    def error(status: int, message: str, type_: str, param: str | None = None) -> web.Response:
        body = _json.encode({"error": {"message": message, "type": type_, "param": param, "code": status}})
        return web.Response(status=status, body=body, content_type="application/json")

    @web.middleware
    async def _require_key(self, request: web.Request, handler):
        path = request.path
        if request.method != "OPTIONS" and (path == "/v1" or path.startswith("/v1/")):
            given = request.headers.get("Authorization", "").encode("latin-1", errors="replace")
            if not hmac.compare_digest(given, f"Bearer {self.api_key}".encode("latin-1")):
                return self.error(401, "Unauthorized", "AuthenticationError")
        return await handler(request)

    async def _request_body(self, request: web.Request) -> dict | web.Response:
        try:
            body = _decode.decode(await request.read())
        except msgspec.DecodeError as exc:
            return self.error(400, f"Invalid JSON body: {exc}", "BadRequestError")
        if not isinstance(body, dict):
            return self.error(400, "The request body must be a JSON object", "BadRequestError")
        model = body.get("model", self.model)  # vLLM serves its only model when none is named
        if model != self.model:
            return self.error(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
        return body

    # ---- simple routes ----------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        return web.Response()

    async def version(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"version":"fake"}', content_type="application/json")

    async def models(self, request: web.Request) -> web.Response:
        return web.Response(body=self._models_body, content_type="application/json")

    async def metrics(self, request: web.Request) -> web.Response:
        text = render_metrics(self.counters, self._label, self.script)
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    # ---- generation -----------------------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._request_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            prompt, source = echo.chat_words(body.get("messages"))
            prompt_tokens = max(len(prompt), 1)
            max_tokens = echo.max_tokens_of(body, prompt_tokens)
            stream, include_usage = _stream_flags(body)
            _check_n(body)
        except echo.BadRequest as exc:
            return self.error(400, str(exc), "BadRequestError", exc.param)
        return await self._generate(request, True, echo.completion_tokens(source, max_tokens), prompt_tokens,
                                    stream, include_usage)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._request_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            words = echo.prompt_words(body.get("prompt"))
            prompt_tokens = max(len(words), 1)
            max_tokens = echo.max_tokens_of(body, prompt_tokens)
            stream, include_usage = _stream_flags(body)
            _check_n(body)
        except echo.BadRequest as exc:
            return self.error(400, str(exc), "BadRequestError", exc.param)
        return await self._generate(request, False, echo.completion_tokens(words, max_tokens), prompt_tokens,
                                    stream, include_usage)

    async def _generate(self, request: web.Request, chat: bool, tokens: list[str], prompt_tokens: int,
                        stream: bool, include_usage: bool) -> web.StreamResponse:
        c = self.counters
        reserved = prompt_tokens + len(tokens)
        c.waiting += 1
        try:
            await c.slots.acquire()
        finally:
            c.waiting -= 1
        c.running += 1
        c.kv_tokens += reserved
        c.prompt_tokens_total += prompt_tokens
        try:
            if stream:
                return await self._stream(request, chat, tokens, prompt_tokens, include_usage)
            return await self._complete(chat, tokens, prompt_tokens)
        finally:
            c.running -= 1
            c.kv_tokens -= reserved
            c.requests_total += 1
            c.slots.release()

    async def _pace(self, index: int, start: float) -> None:
        """Sleep until token ``index`` is due: first-token delay, then one token every 1/rate s."""
        loop = asyncio.get_running_loop()
        due = start + self.first_token_delay_s
        if self.tokens_per_s > 0:
            due += index / self.tokens_per_s
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _complete(self, chat: bool, tokens: list[str], prompt_tokens: int) -> web.Response:
        if self.first_token_delay_s > 0 or self.tokens_per_s > 0:
            await self._pace(len(tokens), asyncio.get_running_loop().time())
        await self._gate()
        self.counters.generation_tokens_total += len(tokens)
        usage = _usage(prompt_tokens, len(tokens))
        text = "".join(tokens)
        if chat:
            body: dict[str, Any] = {
                "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": self.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "tool_calls": []},
                             "logprobs": None, "finish_reason": "length", "stop_reason": None}],
                "usage": usage,
            }
        else:
            body = {
                "id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": self.model,
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "length",
                             "stop_reason": None}],
                "usage": usage,
            }
        return web.Response(body=_json.encode(body), content_type="application/json")

    async def _stream(self, request: web.Request, chat: bool, tokens: list[str], prompt_tokens: int,
                      include_usage: bool) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        start = loop.time()
        if chat:
            obj, rid, field = b"chat.completion.chunk", b"chatcmpl-" + uuid.uuid4().hex.encode(), b'"delta":{"content":'
            close_field = b"}"
        else:
            obj, rid, field = b"text_completion", b"cmpl-" + uuid.uuid4().hex.encode(), b'"text":'
            close_field = b""
        head = b"".join((b'data: {"id":"', rid, b'","object":"', obj, b'","created":', str(int(time.time())).encode(),
                         b',"model":', self._model_json, b',"choices":'))
        token_head = head + b'[{"index":0,' + field
        mid_tail = close_field + b',"logprobs":null,"finish_reason":null}]}\n\n'
        last_tail = close_field + b',"logprobs":null,"finish_reason":"length"}]}\n\n'
        chunks = []
        if chat:
            # vLLM's first chunk carries the role and an empty content.
            chunks.append(head + b'[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
                                 b'"finish_reason":null}]}\n\n')
        last = len(tokens) - 1
        for i, tok in enumerate(tokens):
            chunks.append(token_head + _json.encode(tok) + (last_tail if i == last else mid_tail))
        tail = []
        if include_usage:
            tail.append(head + b'[],"usage":' + _json.encode(_usage(prompt_tokens, len(tokens))) + b"}\n\n")
        tail.append(DONE)

        response = web.StreamResponse(headers=SSE_HEADERS)
        try:
            await response.prepare(request)
            if self.tokens_per_s <= 0:
                # Everything is due at once (after the first-token delay): one write.
                await self._pace(0, start)
                await self._gate()
                self.counters.generation_tokens_total += len(tokens)
                await response.write(b"".join(chunks + tail))
            else:
                offset = 1 if chat else 0  # the role chunk goes out with the first token
                if chat:
                    await self._pace(0, start)
                    await response.write(chunks[0])
                for i in range(len(tokens)):
                    await self._pace(i, start)
                    await self._gate()
                    await response.write(chunks[i + offset])
                    self.counters.generation_tokens_total += 1
                await response.write(b"".join(tail))
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away; counters were kept up to date token by token
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await self._request_body(request)
        if isinstance(body, web.Response):
            return body
        try:
            inputs = echo.embedding_inputs(body.get("input"))
        except echo.BadRequest as exc:
            return self.error(400, str(exc), "BadRequestError", exc.param)
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            return self.error(400, "'encoding_format' must be 'float' or 'base64'", "BadRequestError",
                              "encoding_format")
        data = []
        for index, (text, _) in enumerate(inputs):
            vector = echo.embedding_vector(text)
            value: Any = base64.b64encode(vector.tobytes()).decode() if encoding == "base64" else vector.tolist()
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(n for _, n in inputs)
        self.counters.prompt_tokens_total += tokens
        self.counters.requests_total += 1
        out = {"id": f"embd-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": self.model,
               "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}}
        return web.Response(body=_json.encode(out), content_type="application/json")


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens}


def _stream_flags(body: dict) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise echo.BadRequest("'stream' must be a boolean", "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not isinstance(options, dict):
        raise echo.BadRequest("'stream_options' must be an object", "stream_options")
    return stream, bool(options.get("include_usage"))


def _check_n(body: dict) -> None:
    n = body.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise echo.BadRequest("the fake engine only supports n=1", "n")


def _exit_on_stdin_eof(app: web.Application) -> None:
    """Terminate once stdin reaches EOF, i.e. once the parent holding the pipe's write end is gone,
    however it died. This is how the engine never outlives the agent without prctl."""

    async def watch(app: web.Application) -> None:
        loop = asyncio.get_running_loop()

        def readable() -> None:
            try:
                data = os.read(0, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(0)
                os.kill(os.getpid(), signal.SIGTERM)  # run_app turns this into a graceful stop

        loop.add_reader(0, readable)

    app.on_startup.append(watch)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agent.engines.fake_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", required=True)
    parser.add_argument("--tokens-per-s", type=float, default=0.0, help="generation speed; 0 = no delay")
    parser.add_argument("--delay-first-token-ms", type=float, default=0.0)
    parser.add_argument("--max-num-seqs", type=int, default=256,
                        help="requests generating at once; more wait (vllm:num_requests_waiting)")
    parser.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY") or None,
                        help="require this bearer key on /v1/* (default: $VLLM_API_KEY)")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="exit when stdin closes (set by the agent so the engine dies with it)")
    parser.add_argument("--shutdown-timeout-s", type=float, default=5.0,
                        help="after SIGTERM, how long in-flight requests may finish; 0 cuts them off at once")
    parser.add_argument("--control-routes", action="store_true",
                        help="serve POST /fake/control (hang, scripted metrics) for tests")
    args = parser.parse_args(argv)
    if args.tokens_per_s < 0 or args.delay_first_token_ms < 0 or args.max_num_seqs < 1 or args.shutdown_timeout_s < 0:
        parser.error("--tokens-per-s, --delay-first-token-ms and --shutdown-timeout-s must be >= 0, "
                     "--max-num-seqs >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    engine = FakeEngine(args.model, tokens_per_s=args.tokens_per_s,
                        first_token_delay_s=args.delay_first_token_ms / 1000.0,
                        api_key=args.api_key, max_num_seqs=args.max_num_seqs, control_routes=args.control_routes)
    print(f"fake engine: serving {args.model} on {args.host}:{args.port} "
          f"(tokens_per_s={args.tokens_per_s}, first_token_delay_ms={args.delay_first_token_ms})", flush=True)
    app = engine.app()
    if args.exit_on_stdin_eof:
        _exit_on_stdin_eof(app)
    # run_app turns SIGTERM/SIGINT into a graceful stop: stop accepting, let handlers finish (bounded).
    # aiohttp reads a shutdown timeout of 0 as "no limit"; a millisecond is "cut them off".
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None,
                shutdown_timeout=max(args.shutdown_timeout_s, 0.001), loop=loop)


if __name__ == "__main__":
    main()
