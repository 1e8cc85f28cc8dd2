"""INVENTIV_PROVIDER=scaleway: chosen by the bootstrap, failing fast and without leaking secrets."""

from __future__ import annotations

import pytest

from services.orchestrator import bootstrap
from services.orchestrator.adapters.scaleway import ScalewayCompute

SECRET = "5f8a3c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b"
CREDENTIALS = {"SCW_ACCESS_KEY": "SCWTESTACCESSKEY0001", "SCW_SECRET_KEY": SECRET,
               "SCW_DEFAULT_PROJECT_ID": "0b6e4c1a-7d2f-4a3b-8c9d-1e2f3a4b5c6d"}


@pytest.fixture
def scw_env(monkeypatch):
    for name in ("SCW_ACCESS_KEY", "SCW_SECRET_KEY", "SCW_DEFAULT_PROJECT_ID", "SCW_DEFAULT_ZONE", "SCW_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INVENTIV_PROVIDER", "scaleway")
    return monkeypatch


def test_missing_credentials_stop_the_start(scw_env):
    scw_env.setenv("SCW_ACCESS_KEY", "SCWTESTACCESSKEY0001")
    with pytest.raises(SystemExit, match="SCW_SECRET_KEY, SCW_DEFAULT_PROJECT_ID"):
        bootstrap.orchestrator_settings_from_env()


def test_scaleway_is_built_with_a_budget_under_the_provider_timeout(scw_env):
    for name, value in CREDENTIALS.items():
        scw_env.setenv(name, value)
    scw_env.setenv("INVENTIV_PROVIDER_TIMEOUT_S", "20")
    options = bootstrap.orchestrator_settings_from_env()
    assert options.provider == "scaleway" and options.scaleway is not None
    assert SECRET not in repr(options)
    compute = bootstrap.build_compute(None, options)  # no request is made at construction
    try:
        assert isinstance(compute, ScalewayCompute)
        assert compute.settings.operation_budget_s == 14.0
        assert compute.settings.api_url == "https://api.scaleway.com"
    finally:
        compute.close()


def test_a_malformed_secret_is_refused_without_being_printed(scw_env):
    for name, value in CREDENTIALS.items():
        scw_env.setenv(name, value)
    scw_env.setenv("SCW_SECRET_KEY", "not-a-uuid-but-a-secret")
    options = bootstrap.orchestrator_settings_from_env()
    with pytest.raises(SystemExit) as caught:
        bootstrap.build_compute(None, options)
    assert "secret key" in str(caught.value) and "not-a-uuid-but-a-secret" not in str(caught.value)
