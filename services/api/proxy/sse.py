"""Relay an engine's SSE stream event by event, taking the token usage from it. Pure.

The proxy always asks the engine for usage (``stream_options.include_usage=true``). The engine
then ends the stream with one extra event whose ``choices`` is empty and whose ``usage`` is
set; it is forwarded only when the client asked for it itself. Everything else is forwarded
byte for byte, as soon as an event is complete (an incomplete event is of no use to an SSE
client, which dispatches on the blank line, so holding its first half back costs nothing).
"""

from __future__ import annotations

import msgspec


class Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Chunk(msgspec.Struct):
    usage: Usage | None = None
    choices: list | None = None


class _Body(msgspec.Struct):
    usage: Usage | None = None


_chunk_decoder = msgspec.json.Decoder(_Chunk)
_body_decoder = msgspec.json.Decoder(_Body)

_USAGE_MARKS = (b'"usage":{', b'"usage": {')


def usage_from_body(body: bytes) -> Usage | None:
    """``usage`` of a non-streamed answer (chat, completions, embeddings), or None."""
    try:
        return _body_decoder.decode(body).usage
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _split_events(data: bytes) -> list[bytes]:
    """Complete events, each with its trailing blank line."""
    sep = b"\r\n\r\n" if b"\r\n\r\n" in data else b"\n\n"
    parts = data.split(sep)
    # data ends with sep, so the last part is empty
    return [p + sep for p in parts[:-1]]


class StreamRelay:
    __slots__ = ("_buf", "forward_usage", "strip_null_usage", "usage", "events")

    def __init__(self, *, forward_usage: bool, strip_null_usage: bool = False) -> None:
        self._buf = b""
        self.forward_usage = forward_usage
        # When the proxy (not the client) turned include_usage on, engines may add "usage":null to
        # every chunk; strip it so the client sees what it would have seen without the proxy.
        self.strip_null_usage = strip_null_usage
        self.usage: Usage | None = None
        self.events = 0  # data events relayed, [DONE] and the usage-only event excluded

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to forward now: every event completed by ``chunk`` (possibly none)."""
        data = self._buf + chunk if self._buf else chunk
        end = data.rfind(b"\n\n")
        if end >= 0:
            end += 2
        crlf = data.rfind(b"\r\n\r\n")
        if crlf >= 0 and crlf + 4 > end:
            end = crlf + 4
        if end < 0:
            self._buf = data
            return b""
        if end == len(data):
            self._buf = b""
            return self._process(data)
        self._buf = data[end:]
        return self._process(data[:end])

    def finish(self) -> bytes:
        """Whatever is left when the upstream ended (an unterminated last event)."""
        rest, self._buf = self._buf, b""
        return self._process(rest) if rest else b""

    def _process(self, complete: bytes) -> bytes:
        if self.strip_null_usage:
            complete = complete.replace(b',"usage":null', b"")
        pos = _usage_pos(complete, 0)
        if pos < 0:  # the common case: no Python work per event
            self.events += complete.count(b"data:") - complete.count(b"[DONE]")
            return complete
        if b"\r\n" in complete:
            return self._process_slow(complete)
        out = []
        start = 0
        usage_events = 0
        while pos >= 0:
            ev_start = complete.rfind(b"\n\n", start, pos)
            ev_start = start if ev_start < 0 else ev_start + 2
            ev_end = complete.find(b"\n\n", pos)
            ev_end = len(complete) if ev_end < 0 else ev_end + 2
            if self._is_usage_only(complete[ev_start:ev_end]):
                usage_events += 1
                if not self.forward_usage:
                    out.append(complete[start:ev_start])
                    start = ev_end
            pos = _usage_pos(complete, ev_end)
        if start:
            out.append(complete[start:])
            complete = b"".join(out)
        self.events += complete.count(b"data:") - complete.count(b"[DONE]") - (usage_events if self.forward_usage
                                                                                 else 0)
        return complete

    def _is_usage_only(self, event: bytes) -> bool:
        """Record the usage an event carries; True for the final usage-only event (``choices`` empty)."""
        payload = _data_of(event)
        try:
            parsed = _chunk_decoder.decode(payload) if payload else None
        except (msgspec.DecodeError, msgspec.ValidationError):
            return False
        if parsed is None or parsed.usage is None:
            return False
        self.usage = parsed.usage
        return not parsed.choices

    def _process_slow(self, complete: bytes) -> bytes:
        out = []
        for event in _split_events(complete) or [complete]:
            if (_USAGE_MARKS[0] in event or _USAGE_MARKS[1] in event) and self._is_usage_only(event):
                if self.forward_usage:
                    out.append(event)
                continue
            if b"data:" in event and b"[DONE]" not in event:
                self.events += 1
            out.append(event)
        return b"".join(out)


def _usage_pos(data: bytes, start: int) -> int:
    a = data.find(_USAGE_MARKS[0], start)
    b = data.find(_USAGE_MARKS[1], start)
    if a < 0:
        return b
    if b < 0:
        return a
    return min(a, b)


def _data_of(event: bytes) -> bytes:
    lines = [ln[5:].lstrip(b" ") for ln in event.splitlines() if ln.startswith(b"data:")]
    return b"\n".join(lines)
