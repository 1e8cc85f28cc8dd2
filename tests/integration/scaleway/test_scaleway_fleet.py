"""Fleet upkeep through ScalewayCompute: volumes, reserved IPs, server types with prices, SSH
host-key fingerprints, with the real SDK against the fake API."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.orchestrator.ports import Conflict, NotFound
from tests.fakes.scaleway_state import Volume, default_server_types
from tests.helpers import wait_until_sync

from .conftest import ZONE, gpu_placement, our_tags

ED25519 = "SHA256:n6fPfW3cCz9b4fsbkGDbG0Uc4yFXMbQqDkKsx+7C3wM"
ECDSA = "SHA256:Xy1Zp9LkQm2Hn5Jd8Ft3Rv6Bw0Cs4Ge7Ua1Oi9Ke2Lb"


def test_volumes_are_listed_with_their_server_and_deleted_when_detached(scaleway_api, scaleway_compute):
    info = scaleway_compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    orphan = Volume("6a0f2b1c-1111-4222-8333-444455556666", "ubuntu_sbs_volume_0", ZONE, 20 * 10**9,
                    scaleway_api.fake.project_id, [])
    scaleway_api.fake.volumes[orphan.id] = orphan  # an untagged root left by someone's crash

    volumes = {v.volume_id: v for v in scaleway_compute.list_volumes(ZONE)}
    assert set(volumes) == {info.volume_ids[0], orphan.id}
    root = volumes[info.volume_ids[0]]
    assert (root.name, root.state, root.server_id, root.zone) == ("inv-i1-root", "in_use", info.server_id, ZONE)
    assert "inv:instance=i1" in root.tags
    assert (volumes[orphan.id].state, volumes[orphan.id].server_id, volumes[orphan.id].tags) == ("available", None, ())

    with pytest.raises(Conflict):
        scaleway_compute.delete_volume(root.volume_id, ZONE)  # in use: refused, never "deleted"
    scaleway_compute.delete_volume(orphan.id, ZONE)
    with pytest.raises(NotFound):
        scaleway_compute.delete_volume(orphan.id, ZONE)
    assert [v.volume_id for v in scaleway_compute.list_volumes(ZONE)] == [root.volume_id]
    assert scaleway_compute.list_volumes("nl-ams-1") == []


def test_volume_listing_reads_every_page(scaleway_api, scaleway_compute):
    for n in range(130):
        volume = Volume(f"00000000-0000-4000-8000-{n:012d}", f"v{n}", ZONE, 10**10, scaleway_api.fake.project_id, [])
        scaleway_api.fake.volumes[volume.id] = volume
    assert len(scaleway_compute.list_volumes(ZONE)) == 130


def test_ips_are_listed_with_their_server_and_deleted(scaleway_api, scaleway_compute):
    info = scaleway_compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    with scaleway_api.fake.lock:
        spare = scaleway_api.fake.create_ip(ZONE, {"tags": ["inv", "inv:instance=gone"]})

    ips = {ip.ip_id: ip for ip in scaleway_compute.list_ips(ZONE)}
    assert set(ips) == {info.ip_ids[0], spare.id}
    assert ips[info.ip_ids[0]].server_id == info.server_id
    assert ips[info.ip_ids[0]].address == info.ip_address
    assert (ips[spare.id].server_id, ips[spare.id].tags) == (None, ("inv", "inv:instance=gone"))

    scaleway_compute.delete_ip(spare.id, ZONE)
    with pytest.raises(NotFound):
        scaleway_compute.delete_ip(spare.id, ZONE)
    assert [ip.ip_id for ip in scaleway_compute.list_ips(ZONE)] == [info.ip_ids[0]]


def test_server_types_come_with_prices_stock_and_disk_facts(scaleway_compute):
    offers = {o.name: o for o in scaleway_compute.list_server_types(ZONE)}
    assert set(offers) == set(default_server_types())
    l4 = offers["L4-1-24G"]
    assert l4.hourly_price_eur == Decimal("0.7875") and isinstance(l4.hourly_price_eur, Decimal)
    assert (l4.zone, l4.gpu_count, l4.gpu_memory_gb, l4.ram_gb, l4.available, l4.diskless) == (
        ZONE, 1, 24, 48, True, True)
    assert offers["L40S-1-48G"].hourly_price_eur == Decimal("1.469916")
    assert not offers["L40S-1-48G"].available  # "shortage"
    assert offers["H100-1-80G"].available  # "scarce" still creates
    assert not offers["RENDER-S"].diskless and offers["RENDER-S"].gpu_memory_gb == 16
    assert offers["DEV1-S"].gpu_count == 0 and offers["DEV1-S"].gpu_memory_gb is None


def test_server_types_read_every_page(scaleway_api, scaleway_compute):
    template = default_server_types()["L4-1-24G"]
    for n in range(150):
        scaleway_api.fake.server_types[f"T{n:03d}"] = dict(template, hourly_price=0.01 * n)
        scaleway_api.fake.availability[f"T{n:03d}"] = "available"
    offers = {o.name: o for o in scaleway_compute.list_server_types(ZONE)}
    assert len(offers) == 155
    assert offers["T149"].hourly_price_eur == Decimal("1.49") and offers["T149"].available


def test_host_key_fingerprints_once_published(scaleway_api, scaleway_compute):
    info = scaleway_compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    assert scaleway_compute.host_key_fingerprints(info.server_id, ZONE) == ()  # 404 until the VM writes it

    scaleway_api.fake.publish_host_keys(info.server_id, f"256 {ED25519} root@inv-i1 (ED25519)\n"
                                                        f"256 {ECDSA} root@inv-i1 (ECDSA)\n")
    assert scaleway_compute.host_key_fingerprints(info.server_id, ZONE) == (ED25519, ECDSA)

    scaleway_compute.delete_server(info.server_id, ZONE)
    with pytest.raises(NotFound):
        scaleway_compute.host_key_fingerprints(info.server_id, ZONE)


def test_host_keys_of_an_unknown_server_are_not_found(scaleway_compute):
    with pytest.raises(NotFound):
        scaleway_compute.host_key_fingerprints("3d1f5e7a-0000-4000-8000-000000000000", ZONE)


def test_a_stopped_server_shows_its_state(scaleway_api, scaleway_compute):
    info = scaleway_compute.create_server("i1", "org1", gpu_placement(), None, our_tags("i1"))
    wait_until_sync(lambda: scaleway_compute.get_server(info.server_id, ZONE).state == "running", timeout_s=20)
    with scaleway_api.fake.lock:
        scaleway_api.fake.action(ZONE, info.server_id, "poweroff")
    wait_until_sync(lambda: scaleway_compute.get_server(info.server_id, ZONE).state == "stopped", timeout_s=20)
    # The reserved IP stays with a stopped server: the engine URL recorded at create still holds.
    assert scaleway_compute.get_server(info.server_id, ZONE).ip_address == info.ip_address
