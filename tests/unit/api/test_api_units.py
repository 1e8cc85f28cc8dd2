"""Small pure pieces of the API: compatibility rule, throttle, ids, error mapping, passwords."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar.exceptions import ValidationException

from services.api.auth.passwords import hash_password, verify_password
from services.api.auth.ratelimit import LoginLimiter
from services.api.catalog_rules import incompatibility
from services.api.errors import Problem, _validation_errors
from services.api.middleware import request_id_from_header
from services.api.validation import path_uuid


def _compat(provider, gpus, vram, required, metadata=None):
    return incompatibility(provider_code=provider, instance_type_code="t", gpu_count=gpus, vram_per_gpu_gb=vram,
                           required_vram_gb=required, metadata=metadata)


def test_compatibility_rule():
    assert _compat("mock", 1, 24, 0, {"provider_restriction": "mock"}) is None
    assert _compat("mock", 1, 2, 0) is None  # declares no GPU memory
    assert _compat("mock", 8, 80, 2) is not None  # a real model on the mock provider
    assert _compat("scaleway", 1, 24, 0, {"provider_restriction": "mock"}) is not None
    assert _compat("scaleway", 2, 24, 48) is None
    assert "48 GB" in _compat("scaleway", 1, 24, 48)


@given(gpus=st.integers(0, 16), vram=st.integers(0, 200), required=st.integers(0, 2000))
def test_real_providers_need_enough_total_gpu_memory(gpus, vram, required):
    assert (_compat("scaleway", gpus, vram, required) is None) == (gpus * vram >= required)


def test_login_limiter_blocks_after_n_failures_and_recovers():
    now = [0.0]
    limiter = LoginLimiter(3, 60, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("email:a") == 0
        limiter.failed("email:a", "ip:1")
    assert limiter.retry_after("email:a") > 0 and limiter.retry_after("ip:1") > 0
    assert limiter.retry_after("email:b") == 0
    now[0] = 61
    assert limiter.retry_after("email:a") == 0


@pytest.mark.parametrize("raw", [None, b"", b"a" * 129, b"bad value", b"x\r\ny", b"\xff", b"a.b"])
def test_unsafe_request_ids_are_replaced(raw):
    value = request_id_from_header(raw)
    assert value != (raw or b"").decode("latin-1") and len(value) == 36


def test_safe_request_ids_are_kept():
    assert request_id_from_header(b"req-1_A") == "req-1_A"


@pytest.mark.parametrize("bad", ["", "abc", "evt.>", "{12345678-1234-5678-1234-567812345678}",
                                 "urn:uuid:12345678-1234-5678-1234-567812345678", "1" * 36])
def test_path_uuid_refuses_everything_but_a_uuid(bad):
    with pytest.raises(Problem) as info:
        path_uuid("instance_id", bad)
    assert info.value.status_code == 422 and info.value.errors[0]["field"] == "instance_id"


def test_path_uuid_canonicalises():
    assert path_uuid("x", "12345678123456781234567812345678") == "12345678-1234-5678-1234-567812345678"
    assert path_uuid("x", "ABCDEF00-1234-5678-1234-567812345678") == "abcdef00-1234-5678-1234-567812345678"


def test_validation_errors_name_the_field():
    exc = ValidationException(extra=[
        {"message": "Object contains unknown field `org_id`", "key": "data", "source": "body"},
        {"message": "Object missing required field `zone`", "key": "data", "source": "body"},
        {"message": "Expected `str`, got `int`", "key": "model", "source": "body"},
        {"message": "'data'", "key": "data", "source": "body"},
    ])
    assert [e["field"] for e in _validation_errors(exc)] == ["org_id", "zone", "model", "body"]


def test_passwords_round_trip():
    hashed = hash_password("s3cret")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "s3cret") and not verify_password(hashed, "S3cret")
    assert not verify_password(None, "s3cret") and not verify_password("garbage", "s3cret")
