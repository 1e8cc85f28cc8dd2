"""Per-worker engine keys: the derivation (pure) and the secret's validation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import string

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from services.runtime.engine_keys import (
    SECRET_ENV,
    EngineKeySecret,
    InvalidEngineKeySecret,
    decode_secret,
    derive_engine_key,
    engine_key_secret_from_env,
    generate_secret,
)

SECRET = bytes(range(32))
URLSAFE = set(string.ascii_letters + string.digits + "-_=")
instance_ids = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=64)
secrets_ = st.binary(min_size=32, max_size=64)


def test_the_key_is_the_documented_formula_and_stable():
    expected = base64.urlsafe_b64encode(
        hmac.new(SECRET, b"inventiv-engine-key:inst-1", hashlib.sha256).digest()).decode()
    assert derive_engine_key(SECRET, "inst-1") == expected
    assert derive_engine_key(SECRET, "inst-1") == derive_engine_key(bytes(range(32)), "inst-1")
    # Pinned (computed with `openssl dgst -sha256 -mac HMAC`): a change to the formula would orphan
    # every running worker's key.
    assert expected == "_EUdC87fVu-Y3DNzD4fZSAxYTEG9I9xJOpTMfN2c2y4="


@given(secret=secrets_, a=instance_ids, b=instance_ids)
def test_keys_differ_per_instance(secret, a, b):
    assert (derive_engine_key(secret, a) == derive_engine_key(secret, b)) == (a == b)


@given(first=secrets_, second=secrets_, instance=instance_ids)
def test_keys_differ_per_secret(first, second, instance):
    assert (derive_engine_key(first, instance) == derive_engine_key(second, instance)) == (first == second)


@given(secret=secrets_, instance=st.text(min_size=1, max_size=200))
def test_keys_are_printable_bearer_tokens(secret, instance):
    key = derive_engine_key(secret, instance)
    assert len(key) == 44 and set(key) <= URLSAFE and key.isprintable()


def test_generated_secrets_are_accepted_and_unique():
    first, second = generate_secret(), generate_secret()
    assert first != second
    assert len(decode_secret(first)) >= 32


@pytest.mark.parametrize("raw", [
    generate_secret(),
    bytes(range(100, 140)).hex(),                                # hex, 40 bytes
    base64.b64encode(bytes(range(0, 256, 7))).decode(),          # standard base64 with padding
    base64.b64encode(bytes(range(0, 256, 7))).decode().rstrip("="),
    "  " + bytes(range(32)).hex() + "\n",                        # surrounding whitespace is dropped
])
def test_encoded_random_bytes_are_accepted(raw):
    assert len(decode_secret(raw)) >= 32
    assert engine_key_secret_from_env({SECRET_ENV: raw}) == EngineKeySecret(decode_secret(raw))


@pytest.mark.parametrize("raw, why", [
    (bytes(range(31)).hex(), "at least 32"),                     # too short
    ("00" * 64, "does not look random"),                         # long, but one byte value
    ("0123456789abcdef" * 4, "does not look random"),             # 32 bytes, 8 distinct values
    ("A" * 64, "does not look random"),
    ("correct horse battery staple!!!!!!!!!!!!!!!!!!!!!", "hex or base64"),  # a passphrase
    ("ab=cd" + "x" * 60, "hex or base64"),
])
def test_weak_or_unreadable_secrets_are_refused_without_echoing_them(raw, why):
    with pytest.raises(InvalidEngineKeySecret) as caught:
        decode_secret(raw)
    assert why in str(caught.value) and raw.strip() not in str(caught.value)
    with pytest.raises(SystemExit) as stopped:
        engine_key_secret_from_env({SECRET_ENV: raw})
    message = str(stopped.value)
    assert message.startswith(f"inventiv: {SECRET_ENV}") and raw.strip() not in message
    assert "token_urlsafe" in message  # says how to make a good one


def test_unset_or_blank_means_no_per_instance_keys():
    assert engine_key_secret_from_env({}) is None
    assert engine_key_secret_from_env({SECRET_ENV: "  "}) is None


def test_the_secret_object_never_shows_its_value():
    raw = generate_secret()
    secret = EngineKeySecret.parse(raw)
    key = secret.key_for("inst-1")
    for text in (repr(secret), str(secret), f"{secret}", repr([secret]), repr({"s": secret})):
        assert raw not in text and key not in text and "redacted" in text
    with pytest.raises(InvalidEngineKeySecret):
        EngineKeySecret(b"short")


def test_deriving_logs_nothing():
    secret = EngineKeySecret.parse(generate_secret())
    with structlog.testing.capture_logs() as logs:
        secret.key_for("inst-1")
        engine_key_secret_from_env({SECRET_ENV: generate_secret()})
        derive_engine_key(SECRET, "inst-2")
    assert logs == []


def test_a_service_attached_to_a_local_stack_takes_the_secret_that_stack_generated(tmp_path):
    from services.runtime.engine_keys import SECRET_FILE, engine_key_secret_from_env
    from services.runtime.settings import STACK_ENV_FILE
    from services.stack.engine_key_secret import ensure_engine_key_secret

    generated = EngineKeySecret.parse(ensure_engine_key_secret(tmp_path, {}))
    env = {"INVENTIV_DATA_DIR": str(tmp_path)}
    assert engine_key_secret_from_env(env) is None  # no stack.env: no running `inventiv up` there
    (tmp_path / STACK_ENV_FILE).write_text("NATS_URL=nats://127.0.0.1:4250\n")
    assert engine_key_secret_from_env(env) == generated
    # Servers given explicitly: not that stack's service, so not its secret.
    assert engine_key_secret_from_env({**env, "NATS_URL": "nats://elsewhere:4222"}) is None
    (tmp_path / SECRET_FILE).write_text("too-short")
    with pytest.raises(SystemExit, match=SECRET_FILE) as stopped:
        engine_key_secret_from_env(env)
    assert "too-short" not in str(stopped.value)
