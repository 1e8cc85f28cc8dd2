"""The plug-ins mounted by create_app: the OpenAI proxy under /v1 and the FinOps controller."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from .conftest import Api, add_member, make_app

async def test_proxy_is_mounted_and_accepts_api_keys_and_sessions(nats_server, nats_client, api_db, pool, tmp_path):
    app = make_app(nats_server, api_db, tmp_path, mount_proxy=True)
    async with AsyncTestClient(app, base_url="http://testserver.local") as client:
        api = Api(client, nats_client.jetstream(), pool, app)
        member = await add_member(api.js, pool, "proxy@example.com", slug="proxy-org")
        key = await api.api_key(member)
        models = await client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert models.status_code == 200, models.text
        assert models.json()["object"] == "list"
        token = await api.session_token(member)
        assert (await client.get("/v1/models", headers={"Authorization": f"Bearer {token}"})).status_code == 200
        refused = await client.get("/v1/models", headers={"Authorization": "Bearer sk-inv-" + "0" * 64})
        assert refused.status_code == 401 and "error" in refused.json()  # OpenAI's error shape, not problem+json


async def test_finops_routes_are_registered_and_need_credentials(api):
    assert (await api.client.get("/finops/cost/current")).status_code == 401
    spec = (await api.client.get("/api-docs/openapi.json")).json()
    assert any(path.startswith("/finops/") for path in spec["paths"])
