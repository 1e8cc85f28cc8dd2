"""Reinstall, archive and the fleet commands through the API: 202 once durable, scoped, admin-only where it must be."""

from __future__ import annotations

import pytest

from contracts import codec
from contracts.commands import ArchiveInstance, ReconcileFleet, ReinstallInstance, SyncCatalog

from .conftest import add_member, insert_instance


@pytest.fixture
async def owner(api):
    member = await add_member(api.js, api.pool, "ops@example.com", slug="ops")
    await api.login(member)
    return member


async def last_command(api):
    info = await api.js.stream_info("COMMANDS")
    return codec.decode_command((await api.js.get_msg("COMMANDS", seq=info.state.last_seq)).data)


@pytest.mark.parametrize(("method", "suffix", "kind", "status"), [
    ("POST", "reinstall", ReinstallInstance, "installing"),
    ("PUT", "archive", ArchiveInstance, "archived"),
])
async def test_instance_commands_are_published_for_own_instances_only(api, owner, method, suffix, kind, status):
    mine = await insert_instance(api.pool, owner.org_id)
    resp = await api.client.request(method, f"/instances/{mine}/{suffix}")
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == status
    command = await last_command(api)
    assert isinstance(command, kind) and command.instance_id == mine and command.org_id == owner.org_id

    stranger = await add_member(api.js, api.pool, "stranger@example.com", slug="strangers")
    theirs = await insert_instance(api.pool, stranger.org_id)
    before = await api.commands_count()
    assert (await api.client.request(method, f"/instances/{theirs}/{suffix}")).status_code == 404
    assert (await api.client.request(method, f"/instances/not-a-uuid/{suffix}")).status_code == 422
    assert await api.commands_count() == before


async def test_the_same_idempotency_key_is_the_same_command(api, owner):
    mine = await insert_instance(api.pool, owner.org_id)
    first = await api.client.post(f"/instances/{mine}/reinstall", headers={"Idempotency-Key": "k-1"})
    again = await api.client.post(f"/instances/{mine}/reinstall", headers={"Idempotency-Key": "k-1"})
    assert first.json()["command_id"] == again.json()["command_id"]
    assert await api.commands_count() == 1


@pytest.mark.parametrize(("path", "kind"), [("/reconcile", ReconcileFleet), ("/catalog/sync", SyncCatalog)])
async def test_fleet_commands_are_for_platform_admins_only(api, owner, path, kind):
    refused = await api.client.post(path)
    assert refused.status_code == 403 and refused.headers["content-type"].startswith("application/problem+json")
    assert await api.commands_count() == 0

    await api.pool.execute("UPDATE rm.users SET is_admin = true WHERE id = $1", owner.user_id)
    await api.login(owner)
    accepted = await api.client.post(path)
    assert accepted.status_code == 202, accepted.text
    command = await last_command(api)
    assert isinstance(command, kind) and command.id == accepted.json()["command_id"]
