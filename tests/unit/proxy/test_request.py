"""request.py: what is refused before any upstream call, and what is forwarded."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.api.proxy import errors
from services.api.proxy.request import Caps, parse_inference, scan_headers

CAPS = Caps(max_tokens=1000, n=4)


def refused(body: bytes, **kw) -> dict:
    with pytest.raises(errors.ProxyError) as exc:
        parse_inference(body, streamable=kw.pop("streamable", True), caps=kw.pop("caps", CAPS))
    assert exc.value.status == 400
    return msgspec.json.decode(exc.value.body)["error"]


@pytest.mark.parametrize("param,value", [
    ("max_tokens", 1001), ("max_completion_tokens", 5000), ("n", 5), ("best_of", 9), ("max_tokens", 1e6),
])
def test_values_above_the_caps_are_refused_naming_the_param(param, value):
    err = refused(json.dumps({"model": "m", param: value}).encode())
    assert err["param"] == param and err["code"] == "invalid_value" and err["type"] == "invalid_request_error"


@pytest.mark.parametrize("param,value", [("max_tokens", -1), ("n", 0), ("n", "2"), ("max_tokens", True),
                                         ("max_tokens", [1])])
def test_values_below_the_floor_or_of_the_wrong_type_are_refused(param, value):
    assert refused(json.dumps({"model": "m", param: value}).encode())["param"] == param


def test_values_at_the_caps_and_nulls_pass():
    req = parse_inference(b'{"model":"m","max_tokens":1000,"max_completion_tokens":null,"n":4,"best_of":4}',
                          streamable=True, caps=CAPS)
    assert req.model == "m" and not req.is_stream


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400", b"[1, 2e308]",
                                     b'{"a": 1E+309}'])
def test_non_finite_numbers_are_refused_wherever_they_are(literal):
    err = refused(b'{"model":"m","temperature":' + literal + b"}")
    assert err["code"] == "non_finite_number"


def test_python_json_would_have_forwarded_those_as_infinities():
    # Why the check exists: the engine (Python) reads 1e999 as inf, and NaN as nan.
    assert json.loads(b'{"t": 1e999}')["t"] == float("inf")
    assert json.loads(b'{"t": NaN}')["t"] != json.loads(b'{"t": NaN}')["t"]


@pytest.mark.parametrize("body,code,param", [
    (b"", "invalid_json", None), (b'{"model": "m"', "invalid_json", None), (b'["model"]', "invalid_value", None),
    (b'{"messages": []}', "missing_model", "model"), (b'{"model": ""}', "missing_model", "model"),
    (b'{"model": 12}', "missing_model", "model"), (b'{"model": "m", "stream": "yes"}', "invalid_value", "stream"),
])
def test_malformed_bodies(body, code, param):
    err = refused(body)
    assert err["code"] == code and err["param"] == param


def test_streams_get_include_usage_and_the_rest_is_forwarded_as_sent():
    body = b'{"model": "m", "stream": true, "temperature": 0.70, "x": "\\u00e9"}'
    req = parse_inference(body, streamable=True, caps=CAPS)
    assert req.is_stream and req.injected and not req.client_wants_usage
    assert req.body.startswith(body[:-1]) and json.loads(req.body)["stream_options"] == {"include_usage": True}
    asked = parse_inference(b'{"model":"m","stream":true,"stream_options":{"include_usage":true}}', streamable=True,
                            caps=CAPS)
    assert asked.client_wants_usage and not asked.injected
    off = parse_inference(b'{"model":"m","stream":true,"stream_options":{"include_usage":false,"k":1}}',
                          streamable=True, caps=CAPS)
    assert off.injected and json.loads(off.body)["stream_options"] == {"include_usage": True, "k": 1}
    plain = parse_inference(body, streamable=False, caps=CAPS)  # embeddings never stream
    assert not plain.is_stream and plain.body == body


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8).filter(lambda k: k not in ("model", "stream", "stream_options", "n",
                                                                      "best_of", "max_tokens",
                                                                      "max_completion_tokens")),
                       st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False)
                                    | st.integers() | st.text(max_size=10),
                                    lambda inner: st.lists(inner, max_size=3)
                                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=10),
                       max_size=5))
def test_any_valid_json_object_with_a_model_is_accepted_and_forwarded_unchanged(extra):
    body = json.dumps({"model": "m", **extra}).encode()
    req = parse_inference(body, streamable=True, caps=CAPS)
    assert req.body == body and req.model == "m"


def _scope(*headers):
    return {"headers": [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers]}


@pytest.mark.parametrize("value", [b"a\r\nx-evil: 1", b"a\nb", b"a\rb", b"a\x00b"])
def test_header_values_with_cr_lf_or_nul_are_refused(value):
    with pytest.raises(errors.ProxyError) as exc:
        scan_headers(_scope(("authorization", "Bearer x"), ("x-inventiv-session", value)), b"x-inventiv-session")
    assert exc.value.status == 400 and b"invalid_header" in exc.value.body


def test_scan_keeps_only_what_the_proxy_reads():
    h = scan_headers(_scope(("authorization", "Bearer k"), ("content-length", "12"), ("x-inventiv-session", "s"),
                            ("x-forwarded-host", "evil")), b"x-inventiv-session")
    assert (h.auth, h.content_length, h.session, h.api_key, h.cookie) == (b"Bearer k", b"12", b"s", None, None)


def test_request_ids_are_random_version_4_uuids():
    import uuid

    from services.api.proxy.accounting import new_request_id

    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122
