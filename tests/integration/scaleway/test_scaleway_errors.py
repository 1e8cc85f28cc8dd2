"""Error classes through the real SDK and the real HTTP path: every fault the fake can script
comes out of the adapter as the port's vocabulary, with bounded retries and Retry-After honoured."""

from __future__ import annotations

import logging

import pytest

from services.orchestrator.adapters.scaleway import ScalewayCompute
from services.orchestrator.ports import Conflict, NotFound, Permanent, RateLimited, Transient
from tests.fakes.scaleway_api import Fault

from .conftest import ZONE, gpu_placement, our_tags


@pytest.fixture
def server_id(scaleway_compute):
    return scaleway_compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1")).server_id


def test_a_json_500_is_retried_then_succeeds(scaleway_api, scaleway_compute, server_id):
    scaleway_api.fail_next("get_server", Fault.internal(), times=2)
    assert scaleway_compute.get_server(server_id, ZONE).server_id == server_id
    assert [c.status for c in scaleway_api.calls_of("get_server")][-3:] == [500, 500, 200]


@pytest.mark.parametrize("fault", [Fault.internal(), Fault.html(503), Fault.html(502), Fault(504, b"")],
                         ids=["json-500", "html-503", "html-502", "empty-504"])
def test_server_errors_are_transient_after_the_attempts(scaleway_api, scaleway_compute, server_id, fault):
    before = scaleway_api.count("get_server")
    scaleway_api.fail_next("get_server", fault, times=3)
    with pytest.raises(Transient) as caught:
        scaleway_compute.get_server(server_id, ZONE)
    assert type(caught.value) is Transient and str(fault.status) in str(caught.value)
    assert scaleway_api.count("get_server") - before == 3  # max_attempts, then up to the handler


def test_a_bare_429_is_rate_limited_without_retry_after(scaleway_api, scaleway_compute, server_id):
    scaleway_api.fail_next("get_server", Fault.rate_limited(), times=3)
    with pytest.raises(RateLimited) as caught:
        scaleway_compute.get_server(server_id, ZONE)
    assert caught.value.retry_after_s is None


def test_a_short_retry_after_is_waited_out(scaleway_api, scaleway_compute, server_id):
    scaleway_api.fail_next("get_server", Fault.rate_limited(retry_after=0.3))
    assert scaleway_compute.get_server(server_id, ZONE).server_id == server_id
    limited, ok = scaleway_api.calls_of("get_server")[-2:]
    assert (limited.status, ok.status) == (429, 200)
    assert ok.at - limited.at >= 0.3  # the adapter waited as long as it was told


def test_a_long_retry_after_goes_back_to_the_handler(scaleway_api, scaleway_compute, server_id):
    before = scaleway_api.count("get_server")
    scaleway_api.fail_next("get_server", Fault.rate_limited(retry_after=120))
    with pytest.raises(RateLimited) as caught:
        scaleway_compute.get_server(server_id, ZONE)
    assert caught.value.retry_after_s == 120.0  # the core schedules the retry, no thread held for 2 min
    assert scaleway_api.count("get_server") - before == 1


def test_404_is_not_found_at_once(scaleway_api, scaleway_compute, server_id):
    before = scaleway_api.count("get_server")
    scaleway_api.fail_next("get_server", Fault.not_found())
    with pytest.raises(NotFound):
        scaleway_compute.get_server(server_id, ZONE)
    assert scaleway_api.count("get_server") - before == 1
    with pytest.raises(NotFound):
        scaleway_compute.get_server("3d1f5e7a-0000-4000-8000-000000000000", ZONE)


def test_409_is_conflict(scaleway_api, scaleway_compute, server_id):
    volume_id = scaleway_compute.get_server(server_id, ZONE).volume_ids[0]
    scaleway_api.fail_next("delete_volume", Fault.conflict())
    with pytest.raises(Conflict):
        scaleway_compute.delete_volume(volume_id, ZONE)
    with pytest.raises(Conflict, match="412"):  # the real refusal: still attached
        scaleway_compute.delete_volume(volume_id, ZONE)


def test_a_slow_answer_times_out_as_transient(scaleway_api, make_compute):
    compute = make_compute(read_timeout_s=0.3, max_attempts=1)
    scaleway_api.fail_next("list_servers", Fault.slow(3.0))
    with pytest.raises(Transient, match="unreachable: ReadTimeout"):
        compute.list_servers(ZONE)


def test_a_wrong_secret_is_permanent(scaleway_api, make_compute):
    compute = make_compute(secret_key="00000000-0000-4000-8000-000000000000")
    with pytest.raises(Permanent, match="401"):
        compute.list_servers(ZONE)


def test_nothing_listening_is_transient(make_compute):
    compute = make_compute(api_url="http://127.0.0.1:9", max_attempts=1)  # discard port: refused
    with pytest.raises(Transient):
        compute.find_servers_by_tag("i1", ZONE)


def test_a_failed_poweron_is_retried_without_a_second_server(scaleway_api, scaleway_compute):
    scaleway_api.fail_next("server_action", Fault.internal(after_effect=True))  # accepted, then 500
    info = scaleway_compute.create_server("i2", "org1", gpu_placement(), None, our_tags("i2"))
    assert info.state in ("starting", "running")
    assert scaleway_api.count("create_server") == 1


def test_the_sdk_logger_never_prints_bodies(scaleway_settings):
    sdk_logger = logging.getLogger("scaleway")
    previous = sdk_logger.level
    sdk_logger.setLevel(logging.DEBUG)
    try:
        ScalewayCompute(scaleway_settings).close()
        assert sdk_logger.getEffectiveLevel() >= logging.INFO
    finally:
        sdk_logger.setLevel(previous)


def test_other_sdk_users_keep_the_plain_transport(scaleway_api, scaleway_compute):
    """The shim only routes our API objects through the shared session."""
    from scaleway.instance.v1 import InstanceV1API
    from scaleway_core.client import Client

    from .conftest import ACCESS_KEY, PROJECT_ID, SECRET_KEY

    plain = InstanceV1API(Client(access_key=ACCESS_KEY, secret_key=SECRET_KEY, default_project_id=PROJECT_ID,
                                 default_zone=ZONE, api_url=scaleway_api.url))
    assert plain.list_servers().servers == []
