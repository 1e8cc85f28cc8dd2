"""The files in nats/ are accepted by the server exactly as written, the way `nats stream add --config` sends them."""

from __future__ import annotations

import json

from services.runtime import natsio


async def test_stream_files_are_accepted_verbatim_by_the_server_api(nats_server):
    nc = await natsio.connect(nats_server.url, name="raw")
    try:
        for config in natsio.load_config_files("streams"):
            reply = await nc.request(f"$JS.API.STREAM.CREATE.{config['name']}", json.dumps(config).encode(), timeout=5)
            body = json.loads(reply.data)
            assert "error" not in body, (config["name"], body)
            assert body["config"]["subjects"] == config["subjects"]
        for wrapped in natsio.load_config_files("consumers"):
            cfg = wrapped["config"]
            subject = f"$JS.API.CONSUMER.CREATE.{wrapped['stream_name']}.{cfg['durable_name']}"
            payload = {"stream_name": wrapped["stream_name"], "config": cfg}
            body = json.loads((await nc.request(subject, json.dumps(payload).encode(), timeout=5)).data)
            assert "error" not in body, body
    finally:
        await nc.drain()


async def test_applying_over_existing_streams_keeps_their_messages(nats_client):
    js = nats_client.jetstream()
    await js.publish("cmd.instance.check", b"{}")
    await natsio.apply_nats_config(js)
    assert (await js.stream_info("COMMANDS")).state.messages == 1


async def test_heartbeats_survive_a_server_restart_and_an_old_memory_stream_is_replaced(nats_server, tmp_path):
    import dataclasses

    from nats.js.api import StorageType

    from services.runtime import natsio

    nc = await natsio.connect(nats_server.url, name="test")
    js = nc.jetstream()
    await natsio.apply_nats_config(js)
    info = await js.stream_info("HEARTBEATS")
    await js.delete_stream("HEARTBEATS")
    await js.add_stream(dataclasses.replace(info.config, storage=StorageType.MEMORY))  # as shipped before
    applied = await natsio.apply_nats_config(js)
    assert "stream HEARTBEATS: recreated (memory -> file)" in applied
    await js.publish("hb.org.inst", b"{}", stream="HEARTBEATS")
    await nc.close()

    nats_server.stop()
    nats_server.start()  # same port, same store dir
    nc = await natsio.connect(nats_server.url, name="test")
    assert (await nc.jetstream().stream_info("HEARTBEATS")).state.messages == 1
    await nc.close()
