"""One attempt on one worker: send the request upstream, relay its answer to the client.

A failure before anything went to the client raises ``RetryElsewhere`` (the caller tries
another worker). Once the first byte went out there is no retry: a stream that breaks is ended
with an OpenAI-shaped error event. Streams are relayed event by event as they arrive
(``sse.StreamRelay``); a client that goes away cancels the task, and the upstream connection
is dropped so the engine stops generating.
"""

from __future__ import annotations

import time

from . import errors
from .accounting import Outcome
from .request import InferenceRequest
from .responses import SSE_HEADERS, ClientState, send_whole
from .sse import StreamRelay, usage_from_body
from .upstream import Target, UpstreamError


# The engine refused the key the proxy presented (its own key, or the fleet key; never the client's):
# a control-plane misconfiguration, e.g. a different INVENTIV_ENGINE_KEY_SECRET on the orchestrator
# that installed the worker. Never the client's fault, so never passed on as a 401 the client would
# read as "your API key is wrong": another worker is tried, and at the end the client gets a 502.
ENGINE_REFUSED = (401, 403)


class RetryElsewhere(Exception):
    """This attempt failed before anything went to the client: try another worker."""

    __slots__ = ("kind", "penalise")

    def __init__(self, kind: str, penalise: bool = True) -> None:
        self.kind = kind
        self.penalise = penalise


async def _post(client, target: Target, body: bytes, request_id: str, stream: bool):
    try:
        return await client.request(target, body, request_id, stream)
    except UpstreamError as exc:
        if exc.kind == "read_timeout":  # the engine took the request but did not answer: no retry
            raise errors.upstream_timeout() from None
        # connect_error / connect_timeout: nothing was sent. disconnected: the engine went away
        # before answering (a dying worker, or an idle connection it closed): penalise only the former.
        raise RetryElsewhere(exc.kind, penalise=exc.kind != "disconnected") from None


async def unary_once(client, send, target: Target, req: InferenceRequest, request_id: str, out: Outcome, t0: float,
                     state: ClientState) -> None:
    t_up = time.perf_counter()
    pre = t_up - t0
    resp = await _post(client, target, req.body, request_id, stream=False)
    try:
        try:
            data = await resp.read()
        except UpstreamError as exc:
            if exc.kind == "read_timeout":
                raise errors.upstream_timeout() from None
            raise RetryElsewhere("broken_response") from None
        status = resp.status
        if status >= 500:
            raise RetryElsewhere(f"http_{status}")
        if status in ENGINE_REFUSED:
            raise RetryElsewhere("engine_refused_key")
        ctype = resp.header(b"content-type", b"application/json")
    except BaseException:
        resp.close()
        raise
    finally:
        resp.release()
    t_back = time.perf_counter()
    out.status = status
    if status == 200:
        usage = usage_from_body(data)
        if usage is not None:
            out.prompt_tokens = usage.prompt_tokens
            out.completion_tokens = usage.completion_tokens
    state.response_started = True
    state.done = True
    await send_whole(send, status, ctype, data, request_id)
    out.t_upstream = t_back - t_up
    out.added_s = pre + (time.perf_counter() - t_back)


async def stream_once(client, send, target: Target, req: InferenceRequest, request_id: str, out: Outcome, t0: float,
                      state: ClientState, wm, penalise) -> None:
    t_up = time.perf_counter()
    pre = t_up - t0
    resp = await _post(client, target, req.body, request_id, stream=True)
    relay = None
    try:
        status = resp.status
        if status != 200:
            try:
                data = await resp.read()
            except UpstreamError:
                raise RetryElsewhere("broken_response") from None
            if status >= 500:
                raise RetryElsewhere(f"http_{status}")
            if status in ENGINE_REFUSED:
                raise RetryElsewhere("engine_refused_key")
            out.status = status
            state.response_started = True
            state.done = True
            await send_whole(send, status, resp.header(b"content-type", b"application/json"), data, request_id)
            out.added_s = pre
            return
        relay = StreamRelay(forward_usage=req.client_wants_usage, strip_null_usage=req.injected)
        start_headers = SSE_HEADERS + [(b"x-request-id", request_id.encode())]
        started = False
        ended = False
        try:
            while True:
                chunk = await resp.read_some()
                if not chunk:
                    break
                piece = relay.feed(chunk)
                # The upstream's last bytes are here: send them as the end of the response (one
                # send less per stream, and the client sees the end without another round).
                ended = resp.at_eof()
                if ended:
                    piece += relay.finish()
                if not piece and not ended:
                    continue
                if not started:
                    if not piece:  # the engine ended the stream without a single event
                        raise RetryElsewhere("empty_stream")
                    t_in = time.perf_counter()
                    state.response_started = True
                    await send({"type": "http.response.start", "status": 200, "headers": start_headers})
                    if ended:
                        state.done = True
                    await send({"type": "http.response.body", "body": piece, "more_body": not ended})
                    started = True
                    t_first = time.perf_counter()
                    out.ttft_ms = (t_first - t0) * 1000.0
                    out.added_s = pre + (t_first - t_in)
                    wm.ttft.observe(t_first - t0)
                else:
                    if ended:
                        state.done = True
                    await send({"type": "http.response.body", "body": piece, "more_body": not ended})
                if ended:
                    break
            tail = b"" if ended else relay.finish()
        except UpstreamError as exc:
            if not started:
                raise RetryElsewhere("broken_stream") from None
            # After the first byte there is no retry: end the stream with an error event.
            wm.error("stream_timeout" if exc.kind == "read_timeout" else "stream_broken")
            out.status = 502
            penalise(out.instance_id)
            state.done = True
            resp.close()
            await send({"type": "http.response.body",
                        "body": errors.sse_error_event("The model worker failed mid-stream.", "upstream_error"),
                        "more_body": False})
            return
        if ended:
            out.status = 200
            return
        if not started:
            if not tail:
                raise RetryElsewhere("empty_stream")
            state.response_started = True
            await send({"type": "http.response.start", "status": 200, "headers": start_headers})
            out.ttft_ms = (time.perf_counter() - t0) * 1000.0
            out.added_s = pre
        out.status = 200
        state.done = True
        await send({"type": "http.response.body", "body": tail, "more_body": False})
    except BaseException:
        resp.close()  # drop the connection: the engine sees it and stops generating
        raise
    finally:
        out.t_upstream = time.perf_counter() - t_up
        resp.release()
        if relay is not None:
            if relay.usage is not None:
                out.prompt_tokens = relay.usage.prompt_tokens
                out.completion_tokens = relay.usage.completion_tokens
            else:  # no usage event (the stream broke): count the events we relayed, about one token each
                out.completion_tokens = relay.events
