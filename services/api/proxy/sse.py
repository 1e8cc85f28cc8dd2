"""Relay an engine's SSE stream event by event, taking the token usage from it. Pure.

The proxy always asks the engine for usage (``stream_options.include_usage=true``). The engine
then ends the stream with one extra event whose ``choices`` is empty and whose ``usage`` is
set; it is forwarded only when the client asked for it itself. Everything else is forwarded
byte for byte, as soon as an event is complete (an incomplete event is of no use to an SSE
client, which dispatches on the blank line, so holding its first half back costs nothing).

Cost: what arrives together is relayed together, with a few C-speed scans and no Python work
per event in the common cases. The usage event is found from the END of what arrived (it is
the last event before ``[DONE]``), so a whole 64-event answer that arrives in one read (a fast
engine) costs ~3 us instead of ~30 us for scanning it several times over. Events are only
counted (``events``, the token estimate of a stream that broke before its usage event) while
no usage was seen. Anything unusual falls back to looking at every event.
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


def usage_from_body(body: bytes) -> Usage | None:
    """``usage`` of a non-streamed answer (chat, completions, embeddings), or None."""
    try:
        return _body_decoder.decode(body).usage
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


class StreamRelay:
    __slots__ = ("_buf", "_sep", "forward_usage", "strip_null_usage", "usage", "events")

    def __init__(self, *, forward_usage: bool, strip_null_usage: bool = False) -> None:
        self._buf = b""
        self._sep: bytes | None = None  # the engine's blank line: b"\n\n" or b"\r\n\r\n", from its first event
        self.forward_usage = forward_usage
        # When the proxy (not the client) turned include_usage on, engines may add "usage":null to
        # every chunk; strip it so the client sees what it would have seen without the proxy.
        self.strip_null_usage = strip_null_usage
        self.usage: Usage | None = None
        # Data events relayed ([DONE] and the usage-only event excluded); kept while no usage was seen.
        self.events = 0

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to forward now: every event completed by ``chunk`` (possibly none)."""
        data = self._buf + chunk if self._buf else chunk
        sep = self._sep
        if sep is None:
            sep = self._learn_separator(data)
            if sep is None:
                self._buf = data
                return b""
        end = data.rfind(sep)
        if end < 0:
            self._buf = data
            return b""
        end += len(sep)
        if end == len(data):
            self._buf = b""
            return self._process(data)
        self._buf = data[end:]
        return self._process(data[:end])

    def finish(self) -> bytes:
        """Whatever is left when the upstream ended (an unterminated last event)."""
        rest, self._buf = self._buf, b""
        if not rest:
            return b""
        if self._sep is None:
            self._sep = b"\r\n\r\n" if b"\r\n" in rest else b"\n\n"
        return self._process(rest)

    def _learn_separator(self, data: bytes) -> bytes | None:
        lf = data.find(b"\n\n")
        # Only before the first LF blank line (a search for CRLF through KBs of LF events costs ~5 us).
        crlf = data.find(b"\r\n\r\n", 0, len(data) if lf < 0 else lf)
        if lf < 0 and crlf < 0:
            return None
        if crlf >= 0 and (lf < 0 or crlf < lf):
            sep, first_end = b"\r\n\r\n", crlf
        else:
            sep, first_end = b"\n\n", lf
        # Engines that add "usage":null do it from the first chunk on: if it has none, never look again.
        if self.strip_null_usage and _NULL_USAGE not in data[:first_end]:
            self.strip_null_usage = False
        self._sep = sep
        return sep

    def _process(self, complete: bytes) -> bytes:
        if self.strip_null_usage:
            complete = complete.replace(_NULL_USAGE, b"")
        pos = complete.rfind(b'"usage"')
        if pos < 0:  # the common case: a few content events
            if self.usage is None:
                self.events += _count_events(complete)
            return complete
        sep = self._sep
        start = complete.rfind(sep, 0, pos)
        start = 0 if start < 0 else start + len(sep)
        end = complete.find(sep, pos)
        end = len(complete) if end < 0 else end + len(sep)
        parsed = _parse_event(complete[start:end])
        if parsed is None or parsed.usage is None:
            return self._process_each(complete)  # "usage" seen, but not as this event's usage: look at all
        self.usage = parsed.usage
        if parsed.choices or self.forward_usage:
            return complete
        return complete[:start] + complete[end:]  # the usage-only event the client did not ask for

    def _process_each(self, complete: bytes) -> bytes:
        sep = self._sep
        parts = complete.split(sep)
        last = parts.pop()
        events = [p + sep for p in parts]
        if last:
            events.append(last)
        out = []
        for event in events:
            if b'"usage"' in event:
                parsed = _parse_event(event)
                if parsed is not None and parsed.usage is not None:
                    self.usage = parsed.usage
                    if not parsed.choices:
                        if self.forward_usage:
                            out.append(event)
                        continue
            if self.usage is None:
                self.events += _count_events(event)
            out.append(event)
        return b"".join(out)


_NULL_USAGE = b',"usage":null'


def _count_events(data: bytes) -> int:
    n = data.count(b"data:")
    if n and b"[DONE]" in data[-24:]:
        n -= 1
    return n


def _parse_event(event: bytes) -> _Chunk | None:
    payload = _data_of(event)
    if not payload:
        return None
    try:
        return _chunk_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _data_of(event: bytes) -> bytes:
    lines = [ln[5:].lstrip(b" ") for ln in event.splitlines() if ln.startswith(b"data:")]
    return b"\n".join(lines)
