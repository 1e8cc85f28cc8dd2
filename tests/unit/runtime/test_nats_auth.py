"""The services' NATS credentials settings: each mistake stops the service with one line naming the variable."""

from __future__ import annotations

import os
import ssl

import nkeys
import pytest

from services.runtime.nats_auth import NatsAuth, connect_options, nats_auth_from_env, tls_context


@pytest.fixture
def seed_file(tmp_path):
    path = tmp_path / "service.nk"
    path.write_bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER) + b"\n")
    return str(path)


def test_nothing_set_means_no_credentials_and_no_tls():
    auth = nats_auth_from_env({})
    assert auth == NatsAuth()
    assert connect_options(auth) == {}


def test_an_nkey_seed_file_is_passed_to_nats(seed_file):
    auth = nats_auth_from_env({"NATS_NKEY": seed_file})
    assert connect_options(auth) == {"nkeys_seed": seed_file}


@pytest.mark.parametrize("env, message", [
    (lambda seed, tmp: {"NATS_NKEY": seed, "NATS_CREDS": seed}, "exclusive"),
    (lambda seed, tmp: {"NATS_NKEY": str(tmp / "missing.nk")}, "NATS_NKEY: cannot read"),
    (lambda seed, tmp: {"NATS_NKEY": str(tmp / "garbage")}, "NATS_NKEY: .* does not hold a NATS user nkey seed"),
    (lambda seed, tmp: {"NATS_CREDS": seed}, "NATS_CREDS: .* is not a NATS .creds file"),
    (lambda seed, tmp: {"NATS_CERT": str(tmp / "garbage")}, "NATS_CERT and NATS_KEY go together"),
    (lambda seed, tmp: {"NATS_CA": str(tmp / "missing.pem")}, "NATS_CA: cannot read"),
])
def test_bad_settings_stop_the_service_naming_the_variable(seed_file, tmp_path, env, message):
    (tmp_path / "garbage").write_text("hello")
    with pytest.raises(SystemExit, match=message) as stopped:
        nats_auth_from_env(env(seed_file, tmp_path))
    assert "hello" not in str(stopped.value)  # a file's content is never echoed


def test_an_unloadable_client_certificate_is_a_clear_stop(tmp_path):
    (tmp_path / "cert.pem").write_text("not a certificate")
    auth = nats_auth_from_env({"NATS_CERT": str(tmp_path / "cert.pem"), "NATS_KEY": str(tmp_path / "cert.pem")})
    with pytest.raises(SystemExit, match="NATS_CERT/NATS_KEY: cannot load the client certificate"):
        tls_context(auth)


def test_a_ca_bundle_gives_a_verifying_tls_context(tmp_path):
    ca = ssl.get_default_verify_paths().cafile
    if ca is None:
        pytest.skip("no system CA bundle on this machine")
    context = tls_context(nats_auth_from_env({"NATS_CA": ca}))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
