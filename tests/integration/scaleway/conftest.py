"""Fixtures: the fake Scaleway API on an ephemeral loopback port, and the real adapter pointed at it.

The adapter runs the real ``scaleway`` SDK over TCP; only the cloud behind it is fake. Timings
are short (transitions in 50 ms, polls every 20 ms) so the tests wait on conditions, not clocks.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from contracts.catalog import Placement
from services.orchestrator.adapters.scaleway import ScalewayCompute, ScalewaySettings
from tests.fakes.scaleway_api import FakeScalewayApi
from tests.fakes.scaleway_state import FakeScaleway

ACCESS_KEY = "SCWTESTACCESSKEY0001"
SECRET_KEY = "5f8a3c2e-1b4d-4e6f-9a7b-0c1d2e3f4a5b"
PROJECT_ID = "0b6e4c1a-7d2f-4a3b-8c9d-1e2f3a4b5c6d"
ZONE = "fr-par-2"


@pytest.fixture
def scaleway_api():
    api = FakeScalewayApi(FakeScaleway(secret_key=SECRET_KEY, project_id=PROJECT_ID)).start()
    yield api
    api.stop()


@pytest.fixture
def scaleway_settings(scaleway_api) -> ScalewaySettings:
    return ScalewaySettings(
        access_key=ACCESS_KEY, secret_key=SECRET_KEY, project_id=PROJECT_ID, default_zone=ZONE,
        api_url=scaleway_api.url, security_group_id="7c1e5d2a-3b4f-4c6d-8e9f-0a1b2c3d4e5f",
        root_volume_gb=150, connect_timeout_s=2.0, read_timeout_s=5.0, operation_budget_s=10.0,
        poll_interval_s=0.02, retry_base_s=0.01, max_inline_wait_s=2.0,
    )


@pytest.fixture
def make_compute(scaleway_settings):
    made: list[ScalewayCompute] = []

    def make(**changes) -> ScalewayCompute:
        compute = ScalewayCompute(replace(scaleway_settings, **changes))
        made.append(compute)
        return compute

    yield make
    for compute in made:
        compute.close()


@pytest.fixture
def scaleway_compute(make_compute) -> ScalewayCompute:
    return make_compute()


def gpu_placement(instance_type: str = "L4-1-24G", zone: str = ZONE) -> Placement:
    return Placement(
        provider_code="scaleway", region_code="fr-par", zone_code=zone, zone_id="zone-fr-par-2",
        instance_type_code=instance_type, instance_type_id="type-l4", gpu_count=1, vram_per_gpu_gb=24,
        hourly_price_eur=Decimal("0.7875"), model_id="m1", model_name="Qwen/Qwen2.5-0.5B-Instruct",
    )


def our_tags(instance_id: str, org_id: str = "org-scw") -> tuple[str, ...]:
    """The tags the handlers pass to create_server."""
    return ("inv", f"inv:instance={instance_id}", f"inv:org={org_id}")
