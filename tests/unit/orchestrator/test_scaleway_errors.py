"""Scaleway answers -> the port's error classes (scaleway.md §6), by example and by property."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from scaleway_core.api import ScalewayException

from services.orchestrator.adapters.scaleway.errors import (
    OutOfStock,
    classify_exception,
    classify_response,
    retry_after_s,
)
from services.orchestrator.ports import ComputeError, Conflict, NotFound, Permanent, RateLimited, Transient

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "status, body, expected",
    [
        (404, {"type": "not_found", "resource": "instance_server", "resource_id": "x"}, NotFound),
        (404, {"type": "unknown_resource", "message": '"x" not found'}, NotFound),
        (404, "", NotFound),  # a missing user-data key
        (409, {"type": "transient_state", "current_state": "starting"}, Conflict),
        (409, {"type": "conflict", "message": "Group is in use. You cannot delete it."}, Conflict),
        (400, {"type": "precondition_failed", "precondition": "resource_still_in_use"}, Conflict),
        (400, "precondition failed: resource is still in use, instance should be powered off", Conflict),
        (400, {"type": "invalid_request_error", "message": "server should be running"}, Conflict),
        (412, {"type": "precondition_failed", "precondition": "resource_still_in_use"}, Conflict),
        (423, {"type": "locked", "resource": "instance_server"}, Conflict),
        (412, {"type": "out_of_stock", "resource": "L40S-1-48G"}, OutOfStock),
        (503, {"type": "out_of_stock", "resource": "L40S-1-48G"}, OutOfStock),
        (500, {"type": "internal", "message": "internal error"}, Transient),
        (502, "", Transient),
        (503, "<html>upstream connect error</html>", Transient),
        (504, "", Transient),
        (400, {"type": "invalid_arguments", "details": [{"argument_name": "commercial_type"}]}, Permanent),
        (400, {"message": "Validation Error", "fields": {"volumes.0.size": ["bad"]}}, Permanent),
        (401, {"type": "denied_authentication", "method": "api_key", "reason": "not_found"}, Permanent),
        (403, {"type": "quotas_exceeded", "details": [{"resource": "L4-1-24G", "quota": 1, "current": 1}]}, Permanent),
        (403, {"type": "invalid_request_error", "message": "Quota exceeded for this resource."}, Permanent),
        (403, {"type": "permissions_denied", "details": [{"action": "read"}]}, Permanent),
    ],
)
def test_examples(status, body, expected):
    error = classify_response(status, body, {})
    assert type(error) is expected
    assert str(status) in str(error)


def test_out_of_stock_is_permanent_for_the_core():
    error = classify_response(412, {"type": "out_of_stock"}, {})
    assert isinstance(error, Permanent) and error.kind == "permanent"


def test_bare_429_has_no_retry_after():
    error = classify_response(429, "", {"x-envoy-ratelimited": "true"})
    assert isinstance(error, RateLimited) and error.retry_after_s is None
    assert isinstance(error, Transient)  # worth retrying


@pytest.mark.parametrize(
    "headers, body, expected",
    [
        ({"Retry-After": "2"}, "", 2.0),
        ({"retry-after": "0.5"}, "", 0.5),
        ({"Retry-After": "Sat, 21 Nov 2026 12:00:30 GMT"}, "", 30.0),
        ({"Retry-After": "Sat, 21 Nov 2026 11:59:00 GMT"}, "", 0.0),  # a date in the past: go now
        ({"Retry-After": "-3"}, "", 0.0),
        ({}, {"type": "too_many_requests", "reset_seconds": 7}, 7.0),
        ({"Retry-After": "soon"}, "", None),
        ({}, {"reset_seconds": "7"}, None),
        ({}, "", None),
    ],
)
def test_retry_after(headers, body, expected):
    assert retry_after_s(headers, body, now=NOW) == expected
    error = classify_response(429, body, headers, now=NOW)
    assert isinstance(error, RateLimited) and error.retry_after_s == expected


def _response(status: int, body: bytes, content_type: str = "application/json", **headers: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update({"Content-Type": content_type, **headers})
    return response


def test_sdk_exceptions_keep_their_status():
    html = ScalewayException(_response(503, b"<html>no healthy upstream</html>", "text/html"))
    assert type(classify_exception(html)) is Transient
    bare = ScalewayException(_response(429, b"", "text/plain", **{"Retry-After": "3"}))
    error = classify_exception(bare)
    assert isinstance(error, RateLimited) and error.retry_after_s == 3.0
    gone = ScalewayException(_response(404, json.dumps({"type": "not_found"}).encode()))
    assert type(classify_exception(gone)) is NotFound


@pytest.mark.parametrize(
    "exc",
    [requests.ConnectTimeout(), requests.ReadTimeout(), requests.ConnectionError(), requests.exceptions.ChunkedEncodingError(),
     requests.exceptions.JSONDecodeError("Expecting value", "<html>", 0), TypeError("Unmarshalling failed"),
     RuntimeError("something else")],
)
def test_transport_failures_are_transient(exc):
    # A timeout or an unreadable answer never proves anything: least of all absence.
    assert type(classify_exception(exc)) is Transient


def test_a_port_error_passes_through():
    error = Conflict("already classified")
    assert classify_exception(error) is error


@given(status=st.integers(400, 599), body=st.one_of(st.none(), st.text(max_size=40),
                                                     st.dictionaries(st.sampled_from(["type", "message", "precondition"]),
                                                                     st.text(max_size=20), max_size=3)))
def test_every_error_answer_is_classified_and_only_404_means_absent(status, body):
    error = classify_response(status, body, {})
    assert isinstance(error, ComputeError)
    assert isinstance(error, NotFound) == (status == 404)
    if status >= 500 and not (isinstance(body, dict) and body.get("type") == "out_of_stock"):
        assert isinstance(error, Transient)
    if status == 429:
        assert isinstance(error, RateLimited)
