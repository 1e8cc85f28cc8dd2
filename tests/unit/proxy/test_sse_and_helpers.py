"""The pure pieces of the proxy: SSE relay, include_usage injection, upstream URL normalisation."""

from __future__ import annotations

import json

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from services.api.proxy.auth import cookie_value as _cookie_value
from services.api.proxy.request import inject_include_usage as _inject_include_usage
from services.api.proxy.targets import upstream_base
from services.api.proxy.sse import StreamRelay, usage_from_body


def _events(n: int, *, usage: bool, null_usage: bool = False) -> list[bytes]:
    out = []
    for i in range(n):
        chunk = {"id": "c", "choices": [{"index": 0, "delta": {"content": f"tok{i} "}}]}
        if null_usage:
            chunk["usage"] = None
        out.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    if usage:
        u = {"id": "c", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": n, "total_tokens": 5 + n}}
        out.append(b"data: " + json.dumps(u, separators=(",", ":")).encode() + b"\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


def _relay(data: bytes, cuts: list[int], **kw) -> tuple[bytes, StreamRelay]:
    relay = StreamRelay(**kw)
    pieces, prev = [], 0
    for c in sorted(set(cuts)) + [len(data)]:
        if c > prev:
            pieces.append(relay.feed(data[prev:c]))
            prev = c
    pieces.append(relay.finish())
    return b"".join(pieces), relay


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 20), st.lists(st.integers(0, 3000), max_size=20), st.booleans())
def test_relay_drops_only_the_usage_event_and_reads_usage_whatever_the_chunking(n, cuts, forward):
    events = _events(n, usage=True)
    data = b"".join(events)
    out, relay = _relay(data, [c % (len(data) + 1) for c in cuts], forward_usage=forward)
    expected = data if forward else b"".join(events[:-2] + events[-1:])
    assert out == expected
    assert relay.usage is not None and relay.usage.prompt_tokens == 5 and relay.usage.completion_tokens == n


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 20), st.integers(0, 22), st.lists(st.integers(0, 3000), max_size=20), st.booleans())
def test_a_stream_cut_before_its_usage_event_counts_the_events_relayed(n, keep, cuts, null_usage):
    events = _events(n, usage=True, null_usage=null_usage)
    data = b"".join(events[:min(keep, n)])  # the engine died after `keep` content events
    out, relay = _relay(data, [c % (len(data) + 1) for c in cuts], forward_usage=False,
                        strip_null_usage=null_usage)
    assert relay.usage is None and relay.events == min(keep, n)
    assert out == b"".join(_events(min(keep, n), usage=False)[:-1])  # ([DONE] never came)


def test_relay_strips_null_usage_it_caused():
    data = b"".join(_events(3, usage=True, null_usage=True))
    out, relay = _relay(data, [7, 50], forward_usage=False, strip_null_usage=True)
    assert b'"usage":null' not in out and b'"usage":{' not in out
    assert out == b"".join(_events(3, usage=False))
    assert relay.usage.completion_tokens == 3


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 10), st.lists(st.integers(0, 3000), max_size=10), st.booleans())
def test_null_usage_on_every_chunk_is_forwarded_when_the_client_asked_for_usage(n, cuts, forward):
    events = _events(n, usage=True, null_usage=True)
    data = b"".join(events)
    out, relay = _relay(data, [c % (len(data) + 1) for c in cuts], forward_usage=forward)
    assert out == (data if forward else b"".join(events[:-2] + events[-1:]))
    assert relay.usage.completion_tokens == n


def test_continuous_usage_keeps_the_last_figures():
    events = [b'data: {"choices":[{"delta":{"content":"a"}}],"usage":{"prompt_tokens":2,"completion_tokens":%d}}\n\n'
              % i for i in range(1, 4)] + [b"data: [DONE]\n\n"]
    out, relay = _relay(b"".join(events), [], forward_usage=False)
    assert out == b"".join(events) and relay.usage.completion_tokens == 3


def test_relay_counts_events_when_there_is_no_usage():
    data = b"".join(_events(4, usage=False))
    out, relay = _relay(data, [1, 2, 3], forward_usage=False)
    assert out == data and relay.usage is None and relay.events == 4


def test_relay_passes_crlf_streams_and_tolerates_garbage():
    data = b'data: {"choices":[{"delta":{"content":"a"}}]}\r\n\r\ndata: {"usage":{ broken\r\n\r\ndata: [DONE]\r\n\r\n'
    out, relay = _relay(data, [10], forward_usage=False)
    assert out == data and relay.usage is None


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 8), st.lists(st.integers(0, 2000), max_size=10), st.booleans())
def test_crlf_streams_are_relayed_event_by_event_too(n, cuts, forward):
    events = [e.replace(b"\n\n", b"\r\n\r\n") for e in _events(n, usage=True)]
    data = b"".join(events)
    relay = StreamRelay(forward_usage=forward)
    # Each complete event goes out as soon as its blank line arrived, not at the end of the stream.
    for i, ev in enumerate(events):
        assert relay.feed(ev) == (b"" if (i == len(events) - 2 and not forward) else ev)
    assert relay.finish() == b""
    assert relay.usage.completion_tokens == n
    out, _ = _relay(data, [c % (len(data) + 1) for c in cuts], forward_usage=forward)
    assert out == (data if forward else b"".join(events[:-2] + events[-1:]))


def test_usage_from_body():
    assert usage_from_body(b'{"usage":{"prompt_tokens":3,"completion_tokens":4}}').completion_tokens == 4
    assert usage_from_body(b'{"usage":{"prompt_tokens":3,"total_tokens":3}}').prompt_tokens == 3
    assert usage_from_body(b'{"data":[]}') is None
    assert usage_from_body(b"not json") is None


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8).filter(lambda k: k != "stream_options"),
                       st.one_of(st.integers(), st.text(max_size=10), st.booleans(), st.none()), max_size=5),
       st.sampled_from(["", " ", "\n", "  \r\n"]))
def test_injection_yields_the_same_object_plus_include_usage(obj, trailing):
    obj = {"model": "m", **obj}
    body = json.dumps(obj).encode() + trailing.encode()
    out = msgspec.json.decode(_inject_include_usage(body))
    assert out == {**obj, "stream_options": {"include_usage": True}}


def test_upstream_base_normalises_and_refuses_odd_urls():
    assert upstream_base("http://10.0.0.1:8000") == "http://10.0.0.1:8000"
    assert upstream_base("http://10.0.0.1:8000/") == "http://10.0.0.1:8000"
    assert upstream_base("http://10.0.0.1:8000/v1") == "http://10.0.0.1:8000"
    assert upstream_base("https://w.example/v1/") == "https://w.example"
    for bad in ("ftp://x", "http://user:pw@x:1", "file:///etc/passwd", "not a url", "http://x?a=b", ""):
        assert upstream_base(bad) is None


def test_cookie_value():
    assert _cookie_value(b"a=1; session=abc; b=2", "session") == "abc"
    assert _cookie_value(b"a=1", "session") is None
