"""The Scaleway adapter's pure parts: names and tags, host-key parsing, the deletion step table,
prices, the retry delay, settings."""

from __future__ import annotations

import random
from decimal import Decimal
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.orchestrator.adapters.scaleway import convert, naming
from services.orchestrator.adapters.scaleway.client import retry_delay_s
from services.orchestrator.adapters.scaleway.deletion import next_delete_step
from services.orchestrator.adapters.scaleway.fingerprints import parse_fingerprints
from services.orchestrator.adapters.scaleway.settings import ScalewayConfigError, ScalewaySettings, settings_from_env
from services.orchestrator.ports import RateLimited, Transient

SECRET = "5f8a3c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b"
ED25519 = "SHA256:n6fPfW3cCz9b4fsbkGDbG0Uc4yFXMbQqDkKsx+7C3wM"
RSA = "SHA256:Xy1Zp9LkQm2Hn5Jd8Ft3Rv6Bw0Cs4Ge7Ua1Oi9Ke2Lb"

# --- naming -------------------------------------------------------------------------------


def test_names_carry_our_instance_id():
    assert naming.server_name("abc") == "inv-abc"
    assert naming.root_volume_name("abc") == "inv-abc-root"
    assert naming.instance_tag("inv", "abc") == "inv:instance=abc"
    assert naming.server_tag("inv", "s1") == "inv:server=s1"


def test_authorized_key_tag_writes_spaces_as_underscores_and_drops_the_comment():
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGk1 control-plane@inventiv"
    assert naming.authorized_key_tag(key) == "AUTHORIZED_KEY=ssh-ed25519_AAAAC3NzaC1lZDI1NTE5AAAAIGk1"
    with pytest.raises(ValueError):
        naming.authorized_key_tag("not a key")


def test_server_tags_keep_the_given_ones_and_add_what_is_missing():
    given_tags = ("inv", "inv:org=o1", "inv", "custom")
    tags = naming.server_tags("inv", "i1", given_tags, "ssh-ed25519 AAAA x")
    assert tags == ["inv", "inv:org=o1", "custom", "inv:instance=i1", "AUTHORIZED_KEY=ssh-ed25519_AAAA"]
    assert naming.server_tags("inv", "i1", ("inv:instance=i1",), None) == ["inv:instance=i1"]
    assert naming.resource_tags(tags) == ["inv", "inv:org=o1", "custom", "inv:instance=i1"]
    assert naming.with_tag(["a"], "a") == ["a"] and naming.with_tag(["a"], "b") == ["a", "b"]


# --- host keys ----------------------------------------------------------------------------


def test_fingerprints_from_ssh_keygen_lines():
    content = (f"256 {ED25519} root@worker (ED25519)\n"
               f"3072 {RSA} root@worker (RSA)\n"
               "256 MD5:12:34:56:78:9a:bc:de:f0:12:34:56:78:9a:bc:de:f0 root@worker (ECDSA)\n"
               f"\n256 {ED25519} root@worker (ED25519)\n")
    assert parse_fingerprints(content.encode()) == (ED25519, RSA)


@pytest.mark.parametrize("content", ["", "\n", "no keys yet", "SHA256:tooshort root@x", "xSHA256:" + "A" * 43])
def test_no_fingerprint_in_noise(content):
    assert parse_fingerprints(content) == ()


# --- deletion steps -----------------------------------------------------------------------

RUNNING = ["poweroff", "terminate", "reboot", "stop_in_place", "backup"]


@pytest.mark.parametrize(
    "state, allowed, refused, step",
    [
        ("running", RUNNING, False, "terminate"),
        ("running", RUNNING, True, "poweroff"),
        ("running", ["poweroff", "reboot"], False, "poweroff"),  # terminate not offered
        ("running", [], False, "wait"),
        ("stopped", ["poweron", "backup"], False, "delete"),
        ("stopped", [], False, "delete"),  # allowed_actions is empty right after create
        ("stopped_in_place", ["poweron", "poweroff"], False, "poweroff"),
        ("starting", ["stop_in_place", "backup"], False, "wait"),
        ("stopping", ["stop_in_place", "backup"], False, "wait"),
        ("locked", [], False, "locked"),
        ("something_new", RUNNING, False, "wait"),
    ],
)
def test_next_delete_step(state, allowed, refused, step):
    assert next_delete_step(state, allowed, refused) == step


# --- conversions --------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [(0.7875, "0.787500"), (1.469916, "1.469916"), (60, "60.000000"),
                                             (0.1 + 0.2, "0.300000"), (None, "0.000000")])
def test_hourly_price(value, expected):
    assert convert.hourly_price(value) == Decimal(expected)


@given(st.floats(min_value=0, max_value=10_000, allow_nan=False, allow_infinity=False))
def test_hourly_price_is_the_float_to_the_micro_euro(value):
    price = convert.hourly_price(value)
    assert price.as_tuple().exponent == -6
    assert abs(float(price) - value) <= 0.0000005 + value * 1e-15


def test_server_type_offer_reads_memory_in_gib_and_diskless_from_constraints():
    gib = 2**30
    l4 = SimpleNamespace(hourly_price=0.7875, gpu=1, ram=48 * gib, end_of_service=False,
                         gpu_info=SimpleNamespace(gpu_memory=24 * gib),
                         volumes_constraint=SimpleNamespace(min_size=0, max_size=0))
    offer = convert.server_type_offer("L4-1-24G", "fr-par-2", l4, "scarce")
    assert (offer.gpu_count, offer.gpu_memory_gb, offer.ram_gb, offer.diskless, offer.available) == (1, 24, 48, True, True)
    render = SimpleNamespace(hourly_price=1.221, gpu=1, ram=0, end_of_service=True, gpu_info=None,
                             volumes_constraint=SimpleNamespace(min_size=0, max_size=400 * 10**9))
    offer = convert.server_type_offer("RENDER-S", "fr-par-1", render, "available")
    assert (offer.gpu_memory_gb, offer.ram_gb, offer.diskless, offer.available) == (None, None, False, False)
    assert not convert.server_type_offer("X", "z", l4, "shortage").available
    assert not convert.server_type_offer("X", "z", l4, None).available  # stock unknown is not stock


# --- retry delay --------------------------------------------------------------------------


def test_retry_after_wins_over_jitter():
    assert retry_delay_s(RateLimited("x", retry_after_s=4.0), 1, 0.5, random.Random(1)) == 4.0


@given(attempt=st.integers(1, 20), seed=st.integers(0, 2**32))
def test_jitter_stays_under_the_capped_curve(attempt, seed):
    delay = retry_delay_s(Transient("x"), attempt, 0.5, random.Random(seed), cap_s=8.0)
    assert 0.0 <= delay <= min(8.0, 0.5 * 2 ** (attempt - 1))


# --- settings -----------------------------------------------------------------------------

ENV = {"SCW_ACCESS_KEY": "SCWTESTACCESSKEY0001", "SCW_SECRET_KEY": SECRET,
       "SCW_DEFAULT_PROJECT_ID": "0b6e4c1a-7d2f-4a3b-8c9d-1e2f3a4b5c6d"}


def test_settings_from_env_with_defaults():
    settings = settings_from_env({**ENV, "INVENTIV_SCW_API_URL": "http://127.0.0.1:9/", "INVENTIV_SCW_IP_MODE": "Dynamic"})
    assert settings.api_url == "http://127.0.0.1:9" and settings.ip_mode == "dynamic"
    assert (settings.default_zone, settings.engine_port, settings.agent_port, settings.root_volume_gb) == (
        "fr-par-2", 8000, 8080, 200)
    assert settings.image == "ubuntu_noble_gpu_os_13_nvidia" and settings.tag_prefix == "inv"


def test_missing_credentials_are_named():
    with pytest.raises(ScalewayConfigError, match="SCW_SECRET_KEY, SCW_DEFAULT_PROJECT_ID"):
        settings_from_env({"SCW_ACCESS_KEY": "SCWTESTACCESSKEY0001"})


@pytest.mark.parametrize("name, value", [("INVENTIV_SCW_IP_MODE", "ipv6"), ("INVENTIV_SCW_ROOT_VOLUME_GB", "five"),
                                         ("INVENTIV_SCW_ROOT_VOLUME_GB", "5")])
def test_bad_values_are_config_errors(name, value):
    with pytest.raises(ScalewayConfigError):
        settings_from_env({**ENV, name: value})


def test_ssh_key_from_a_file(tmp_path):
    key_file = tmp_path / "id.pub"
    key_file.write_text("ssh-ed25519 AAAAkey me@host\n")
    assert settings_from_env({**ENV, "INVENTIV_SCW_SSH_PUBLIC_KEY_FILE": str(key_file)}).ssh_public_key == (
        "ssh-ed25519 AAAAkey me@host")
    with pytest.raises(ScalewayConfigError):
        settings_from_env({**ENV, "INVENTIV_SCW_SSH_PUBLIC_KEY_FILE": str(tmp_path / "missing")})


def test_the_secret_never_shows():
    settings = ScalewaySettings(access_key="SCWTESTACCESSKEY0001", secret_key=SECRET, project_id="p")
    for text in (repr(settings), str(settings), f"{settings}"):
        assert SECRET not in text and "SCWTESTACCESSKEY0001" not in text
        assert "project_id='p'" in text
