"""``--engine vllm`` end to end, with a stand-in ``vllm`` executable (no GPU here): the agent runs
``vllm serve <model> --host --port ...`` and the stand-in serves the fake engine on what it was given."""

from __future__ import annotations

import json
import signal
import sys

from .conftest import AgentProcess, get_json, is_ready, subscribe_heartbeats, wait_for_exit
from tests.helpers import wait_until

STAND_IN = """#!{python}
import json, os, sys
args = sys.argv[1:]
record = {{"argv": args, "env": {{k: os.environ.get(k) for k in ("VLLM_API_KEY", "VLLM_NO_USAGE_STATS")}}}}
open({record!r}, "w").write(json.dumps(record))
assert args[0] == "serve"
flag = lambda name: args[args.index(name) + 1]
os.execv(sys.executable, [sys.executable, "-m", "agent.engines.fake_server", "--host", flag("--host"),
                          "--port", flag("--port"), "--model", flag("--served-model-name")])
"""


async def test_the_vllm_engine_is_launched_on_the_private_address_and_becomes_ready(agent_nats, nats_conn,
                                                                                   tmp_path, http):
    record = tmp_path / "vllm-args.json"
    vllm = tmp_path / "vllm"
    vllm.write_text(STAND_IN.format(python=sys.executable, record=str(record)))
    vllm.chmod(0o755)
    agent = AgentProcess(tmp_path, nats_url=agent_nats.url, engine="vllm", model="Qwen/Qwen2.5-0.5B-Instruct",
                         instance_id="inst-vllm",
                         extra_args=("--vllm-bin", str(vllm), "--model-source", str(tmp_path / "weights"),
                                     "--max-model-len", "1024", "--dtype", "bfloat16",
                                     "--vllm-args=--enforce-eager", "--engine-api-key", "per-instance-key"))
    beats = await subscribe_heartbeats(nats_conn, agent.subject)
    agent.start()
    try:
        await wait_until(lambda: is_ready(http, agent), timeout_s=20, message="readyz")
        ready = await beats.wait_for("ready")
        assert ready.engine.models == ("Qwen/Qwen2.5-0.5B-Instruct",)
        launched = json.loads(record.read_text())
        assert launched["argv"] == ["serve", str(tmp_path / "weights"), "--host", "127.0.0.1",
                                    "--port", str(agent.engine_port),
                                    "--served-model-name", "Qwen/Qwen2.5-0.5B-Instruct",
                                    "--tensor-parallel-size", "1", "--max-model-len", "1024", "--dtype", "bfloat16",
                                    "--enforce-eager"]
        assert launched["env"] == {"VLLM_API_KEY": "per-instance-key", "VLLM_NO_USAGE_STATS": "1"}
        _, info = await get_json(http, agent.url + "/info")
        assert info["engine"] == "vllm"
        agent.engine_pids.add(info["engine_pid"])
        agent.signal(signal.SIGTERM)
        assert await wait_for_exit(agent.proc) == 0, agent.log()
    finally:
        agent.cleanup()
