"""The fleet-upkeep part of the Compute port in the in-memory fake and the mock provider."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.orchestrator.adapters.memory import FakeCompute
from services.orchestrator.adapters.mock_compute import MockCompute
from services.orchestrator.domain.resources import IpInfo, ServerTypeOffer, VolumeInfo
from services.orchestrator.ports import Compute, NotFound, Transient

from .factories import placement


def test_every_provider_implements_the_whole_port(tmp_path):
    assert isinstance(FakeCompute(), Compute)
    assert isinstance(MockCompute(tmp_path, nats_url="nats://127.0.0.1:1"), Compute)


def test_fake_compute_volumes_ips_types_and_host_keys():
    fake = FakeCompute()
    fake.volumes["v1"] = VolumeInfo("v1", "z1", "inv-i1-root", "available")
    fake.volumes["v2"] = VolumeInfo("v2", "z2", "other", "in_use", server_id="s9")
    fake.ips["ip1"] = IpInfo("ip1", "z1", "51.0.0.1", ("inv:instance=i1",))
    offer = ServerTypeOffer("L4-1-24G", "z1", Decimal("0.7875"), 1, 24, 48, True, True)
    fake.server_types["z1"] = [offer]

    assert [v.volume_id for v in fake.list_volumes("z1")] == ["v1"]
    fake.delete_volume("v1", "z1")
    with pytest.raises(NotFound):
        fake.delete_volume("v1", "z1")
    assert [ip.ip_id for ip in fake.list_ips("z1")] == ["ip1"]
    fake.delete_ip("ip1", "z1")
    with pytest.raises(NotFound):
        fake.delete_ip("ip1", "z1")
    assert fake.list_server_types("z1") == [offer] and fake.list_server_types("z2") == []

    server = fake.create_server("i1", "o1", placement(), None, ("inv:instance=i1",))
    assert fake.host_key_fingerprints(server.server_id, server.zone) == ()
    fake.host_keys[server.server_id] = ("SHA256:abc",)
    assert fake.host_key_fingerprints(server.server_id, server.zone) == ("SHA256:abc",)
    fake.delete_server(server.server_id, server.zone)
    with pytest.raises(NotFound):
        fake.host_key_fingerprints(server.server_id, server.zone)

    fake.fail_next("list_volumes", Transient("boom"))
    with pytest.raises(Transient):
        fake.list_volumes("z1")
    assert fake.calls["list_volumes"] == 2


def test_mock_provider_has_no_volumes_or_ips_and_offers_the_mock_types(tmp_path):
    mock = MockCompute(tmp_path, nats_url="nats://127.0.0.1:1")
    assert mock.list_volumes("local") == [] and mock.list_ips("local") == []
    with pytest.raises(NotFound):
        mock.delete_volume("v1", "local")
    with pytest.raises(NotFound):
        mock.delete_ip("ip1", "local")
    with pytest.raises(NotFound):
        mock.host_key_fingerprints("mock-unknown", "local")
    offers = {o.name: o for o in mock.list_server_types("local")}
    assert set(offers) == {"mock-local-instance", "mock-local-small"}
    assert offers["mock-local-small"].hourly_price_eur == Decimal("0.3600")
    assert all(o.available and not o.diskless and o.zone == "local" for o in offers.values())
    assert mock.list_server_types("fr-par-2") == []
