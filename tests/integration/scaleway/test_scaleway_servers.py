"""ScalewayCompute's servers with the real SDK against the fake API: create, find, get, delete,
and the cases that leak money when done wrong (scaleway.md §5)."""

from __future__ import annotations

import pytest

from services.orchestrator.ports import NotFound, Permanent, Transient
from tests.fakes.scaleway_api import Fault
from tests.helpers import wait_until_sync

from .conftest import ZONE, gpu_placement, our_tags

NOTHING = {"servers": [], "volumes": [], "ips": []}


def test_create_find_get_delete_leaves_nothing(scaleway_api, scaleway_compute):
    compute = scaleway_compute
    info = compute.create_server("i1", "org1", gpu_placement(), "#cloud-config\nruncmd: [true]\n", our_tags("i1", "org1"))

    assert info.state in ("starting", "running")  # powered on (the fake boots in 50 ms)
    assert scaleway_api.calls_of("server_action")[0].status == 202
    assert info.ip_address and info.upstream_url == f"http://{info.ip_address}:8000"
    assert info.agent_url == f"http://{info.ip_address}:8080"
    assert set(our_tags("i1", "org1")) <= set(info.tags)
    assert len(info.volume_ids) == 1 and len(info.ip_ids) == 1

    server = scaleway_api.fake.servers[info.server_id]
    assert server.name == "inv-i1" and server.commercial_type == "L4-1-24G" and server.boot_type == "local"
    assert server.security_group["id"] == "7c1e5d2a-3b4f-4c6d-8e9f-0a1b2c3d4e5f"
    root = scaleway_api.fake.volumes[info.volume_ids[0]]
    assert root.name == "inv-i1-root" and root.size == 150 * 10**9  # sized at create, no resize step
    assert {"inv:instance=i1", f"inv:server={info.server_id}"} <= set(root.tags)
    assert scaleway_api.fake.ips[info.ip_ids[0]].address == info.ip_address

    found = compute.find_servers_by_tag("i1", ZONE)
    assert [s.server_id for s in found] == [info.server_id]
    assert compute.find_servers_by_tag("i2", ZONE) == []
    wait_until_sync(lambda: compute.get_server(info.server_id, ZONE).state == "running", timeout_s=20,
                    message="running")

    compute.delete_server(info.server_id, ZONE)
    with pytest.raises(NotFound):
        compute.get_server(info.server_id, ZONE)
    assert scaleway_api.fake.inventory() == NOTHING
    with pytest.raises(NotFound):
        compute.delete_server(info.server_id, ZONE)  # deleting again says it is gone


def test_cloud_init_is_set_before_poweron(scaleway_api, scaleway_compute):
    info = scaleway_compute.create_server("i1", "org1", gpu_placement(), "#cloud-config\n", our_tags("i1"))
    assert scaleway_api.fake.servers[info.server_id].user_data["cloud-init"] == b"#cloud-config\n"
    order = [c.operation for c in scaleway_api.calls if c.operation in ("set_user_data", "server_action")]
    assert order == ["set_user_data", "server_action"]


def test_ssh_public_key_becomes_an_authorized_key_tag(scaleway_api, make_compute):
    compute = make_compute(ssh_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey control-plane")
    info = compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    assert "AUTHORIZED_KEY=ssh-ed25519_AAAAC3NzaC1lZDI1NTE5AAAAIKey" in info.tags
    root = scaleway_api.fake.volumes[info.volume_ids[0]]
    assert not any(t.startswith("AUTHORIZED_KEY=") for t in root.tags)


def test_unknown_type_is_permanent_and_leaves_nothing(scaleway_api, scaleway_compute):
    with pytest.raises(Permanent, match="400"):
        scaleway_compute.create_server("i1", "org1", gpu_placement("GPU-9000"), None, our_tags("i1"))
    assert scaleway_api.fake.inventory() == NOTHING  # the reserved IP was released
    assert scaleway_api.count("create_server") == 1


def test_an_ambiguous_create_is_found_by_tag_and_never_repeated(scaleway_api, scaleway_compute):
    scaleway_api.fail_next("create_server", Fault.internal(after_effect=True))
    with pytest.raises(Transient):
        scaleway_compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    assert scaleway_api.count("create_server") == 1  # a create is never retried blindly

    found = scaleway_compute.find_servers_by_tag("i1", ZONE)
    assert len(found) == 1
    assert found[0].ip_ids and found[0].upstream_url  # it holds the reserved IP: nothing dangles
    scaleway_compute.delete_server(found[0].server_id, ZONE)
    assert scaleway_api.fake.inventory() == NOTHING


def test_a_create_answered_too_late_is_found_by_tag(scaleway_api, make_compute):
    compute = make_compute(read_timeout_s=0.3)
    scaleway_api.fail_next("create_server", Fault(status=None, delay_s=2.0, after_effect=True))
    with pytest.raises(Transient):
        compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    assert len(compute.find_servers_by_tag("i1", ZONE)) == 1


def test_a_detached_ip_left_by_a_failed_attempt_is_reused(scaleway_api, scaleway_compute):
    scaleway_api.fail_next("create_server", Fault.internal())  # refused before anything was created
    with pytest.raises(Transient):
        scaleway_compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    assert len(scaleway_api.fake.ips) == 1  # outcome unknown to us: the IP is kept for the next attempt
    info = scaleway_compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    assert list(scaleway_api.fake.ips) == list(info.ip_ids)
    assert scaleway_api.count("create_ip") == 1


def test_terminate_refused_falls_back_to_poweroff_then_delete(scaleway_api, scaleway_compute):
    info = scaleway_compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    wait_until_sync(lambda: scaleway_compute.get_server(info.server_id, ZONE).state == "running", timeout_s=20)
    scaleway_api.fake.refuse_terminate = True

    scaleway_compute.delete_server(info.server_id, ZONE)
    actions = [c.status for c in scaleway_api.calls_of("server_action")]
    assert actions == [202, 400, 202]  # poweron, terminate refused, poweroff
    assert [c.status for c in scaleway_api.calls_of("delete_server")] == [204]
    assert scaleway_api.fake.inventory() == NOTHING


def test_delete_while_starting_waits_then_terminates(scaleway_api, scaleway_compute):
    scaleway_api.fake.timings.poweron_s = 0.3
    info = scaleway_compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    scaleway_compute.delete_server(info.server_id, ZONE)
    assert scaleway_api.fake.inventory() == NOTHING
    assert scaleway_api.count("delete_server") == 0  # terminate did it


def test_a_teardown_resumes_after_the_server_is_gone(scaleway_api, make_compute):
    """The first call runs out of budget while the server terminates; the next one, after the
    server vanished, still finds and deletes its volume and IP (by the server tag)."""
    hasty = make_compute(operation_budget_s=0.0)
    scaleway_api.fake.timings.terminate_s = 1.0
    info = hasty.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    wait_until_sync(lambda: hasty.get_server(info.server_id, ZONE).state == "running", timeout_s=20)

    hasty.delete_server(info.server_id, ZONE)  # returns at once: the server is still there
    assert hasty.get_server(info.server_id, ZONE).state == "stopping"
    wait_until_sync(lambda: not scaleway_api.fake.inventory()["servers"], timeout_s=20, message="server gone")
    assert scaleway_api.fake.inventory()["volumes"] and scaleway_api.fake.inventory()["ips"]

    with pytest.raises(NotFound):
        make_compute().delete_server(info.server_id, ZONE)
    assert scaleway_api.fake.inventory() == NOTHING


def test_volumes_still_detaching_past_the_budget_make_it_retry(scaleway_api, make_compute):
    scaleway_api.fake.timings.terminate_s = 0.0
    scaleway_api.fake.timings.detach_s = 2.0
    compute = make_compute(operation_budget_s=0.5)
    info = compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    wait_until_sync(lambda: compute.get_server(info.server_id, ZONE).state == "running", timeout_s=20)

    with pytest.raises(Transient, match="still detaching"):
        compute.delete_server(info.server_id, ZONE)
    # The handler retries: the server is gone; once the volume has detached, it goes too.
    _delete_until_gone(compute, info.server_id)
    assert scaleway_api.fake.inventory() == NOTHING


def _delete_until_gone(compute, server_id):
    def attempt():
        try:
            compute.delete_server(server_id, ZONE)
        except Transient:
            return False
        except NotFound:
            return True
        return False

    wait_until_sync(attempt, timeout_s=20, message="teardown finished")


def test_dynamic_ip_mode_waits_for_the_address(scaleway_api, make_compute):
    compute = make_compute(ip_mode="dynamic")
    info = compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    assert info.state == "running" and info.upstream_url == f"http://{info.ip_address}:8000"
    assert info.ip_ids == () and not scaleway_api.fake.ips  # nothing reserved, nothing to release
    compute.delete_server(info.server_id, ZONE)
    assert scaleway_api.fake.inventory() == NOTHING


def test_find_by_tag_is_exact_and_oldest_first(scaleway_api, scaleway_compute):
    first = scaleway_compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    second = scaleway_compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    scaleway_compute.create_server("i10", "org1", gpu_placement(), None, our_tags("i10"))
    found = scaleway_compute.find_servers_by_tag("i1", ZONE)
    assert [s.server_id for s in found] == [first.server_id, second.server_id]
    assert len(scaleway_compute.list_servers(ZONE)) == 3


def test_a_failure_after_the_create_is_transient_and_the_server_is_found(scaleway_api, scaleway_compute):
    """The server exists: "create failed" (Permanent) would make the core forget it."""
    denied = b'{"type": "permissions_denied", "message": "insufficient permissions", "details": []}'
    scaleway_api.fail_next("update_volume", Fault(403, denied))
    with pytest.raises(Transient, match="created but not started"):
        scaleway_compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    found = scaleway_compute.find_servers_by_tag("i1", ZONE)
    assert len(found) == 1 and found[0].state == "stopped"  # never powered on...
    scaleway_compute.power_on(found[0].server_id, ZONE)  # ...which the install driver does when it adopts it
    wait_until_sync(lambda: scaleway_compute.get_server(found[0].server_id, ZONE).state == "running", timeout_s=20)
    scaleway_compute.power_on(found[0].server_id, ZONE)  # running: nothing to do
    scaleway_compute.delete_server(found[0].server_id, ZONE)
    assert scaleway_api.fake.inventory() == NOTHING
