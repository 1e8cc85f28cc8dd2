from services.db.seed import seed_catalog
from services.runtime.pg import connect


async def test_seeding_twice_changes_nothing(database_url):
    conn = await connect(database_url)
    try:
        first = await seed_catalog(conn)
        snapshot = await conn.fetch("SELECT * FROM instance_types ORDER BY code")
        second = await seed_catalog(conn)
        assert first == second
        assert await conn.fetch("SELECT * FROM instance_types ORDER BY code") == snapshot
        price = await conn.fetchval("SELECT cost_per_hour FROM instance_types WHERE code = 'H100-1-80G'")
        assert str(price) == "2.7300"
        restriction = await conn.fetchval("SELECT metadata->>'provider_restriction' FROM models "
                                          "WHERE model_id = 'mock-echo-model'")
        assert restriction == "mock"
        zones = await conn.fetch("SELECT z.code FROM instance_type_zones tz JOIN zones z ON z.id = tz.zone_id "
                                 "JOIN instance_types t ON t.id = tz.instance_type_id WHERE t.code = 'L4-1-24G'")
        assert [r["code"] for r in zones] == ["fr-par-2"]
    finally:
        await conn.close()
