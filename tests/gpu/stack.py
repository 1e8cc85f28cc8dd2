"""One real worker and the data plane in front of it, on this machine, for the GPU tests and the
GPU benchmark: an embedded nats-server (streams applied), ``inventiv-agent --engine vllm`` serving
the tiny local model, and the OpenAI proxy (``services.api.proxy.standalone``) fed the way
production feeds it: an ``api_key.created`` and an ``instance.ready`` event in EVENTS, and the
agent's own heartbeats on ``hb.<org>.<instance>``.

Self-contained (no pytest fixtures) so ``benchmarks/gpu`` can use it too. ``engine="fake"``
runs the same stack with the agent's CPU fake engine: how the harness itself is checked on a
machine without a GPU (``benchmarks/gpu/bench_worker_tokens.py --engine fake``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import nats

from contracts import codec, ids
from contracts.events import ApiKeyCreated, InstanceReady
from contracts.heartbeats import Heartbeat
from contracts.subjects import heartbeat_subject
from services.api.keys import generate_api_key, hash_api_key, visible_prefix
from services.runtime import natsio
from services.runtime.embedded import EmbeddedNats, free_port, wait_for_port
from services.runtime.eventstore import JetStreamEventStore

REPO = Path(__file__).resolve().parents[2]
SERVED_NAME = "tiny-llama"
# vLLM's first start compiles and captures CUDA graphs; generous, it is a one-time cost per run.
READY_TIMEOUT_S = float(os.environ.get("INVENTIV_GPU_READY_TIMEOUT_S", "900"))


def gpu_present() -> bool:
    """At least one NVIDIA GPU, by NVML, else by ``nvidia-smi -L``."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetCount() > 0
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU " in out.stdout


def vllm_executable() -> str:
    beside = Path(sys.executable).parent / "vllm"
    found = str(beside) if beside.exists() else shutil.which("vllm")
    if not found:
        raise RuntimeError("the vllm executable is not installed (pip install 'inventiv[gpu]')")
    return found


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVENTIV_") and k not in ("NATS_URL",)}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


class GpuWorkerStack:
    def __init__(self, workdir: Path, model_dir: Path | None, *, engine: str = "vllm",
                 gpu_memory_utilization: float = 0.3, heartbeat_interval_s: float = 1.0) -> None:
        self.workdir = workdir
        self.model_dir = model_dir
        self.engine = engine
        self.org, self.instance = ids.new_id(), ids.new_id()
        self.subject = heartbeat_subject(self.org, self.instance)
        self.engine_port, self.agent_port, self.proxy_port = free_port(), free_port(), free_port()
        self.gpu_memory_utilization = gpu_memory_utilization
        self.heartbeat_interval_s = heartbeat_interval_s
        self.api_key = generate_api_key()
        self.nats = EmbeddedNats(workdir / "nats")
        self.nc = None
        self.agent: subprocess.Popen | None = None
        self.proxy: subprocess.Popen | None = None
        self.heartbeats: list[Heartbeat] = []
        self.agent_log = workdir / "agent.log"

    # --- addresses ---------------------------------------------------------------------------

    @property
    def engine_url(self) -> str:
        return f"http://127.0.0.1:{self.engine_port}"

    @property
    def agent_url(self) -> str:
        return f"http://127.0.0.1:{self.agent_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    # --- lifecycle ---------------------------------------------------------------------------

    def agent_argv(self) -> list[str]:
        argv = [
            sys.executable, "-m", "agent.main", "--engine", self.engine, "--model", SERVED_NAME,
            "--org-id", self.org, "--instance-id", self.instance, "--nats-url", self.nats.url,
            "--engine-port", str(self.engine_port), "--agent-port", str(self.agent_port),
            "--heartbeat-interval-s", str(self.heartbeat_interval_s), "--probe-timeout-s", "10",
        ]
        if self.engine == "fake":
            return argv
        return argv + [
            "--model-source", str(self.model_dir), "--vllm-bin", vllm_executable(), "--max-model-len", "512",
            "--dtype", "bfloat16", "--gpu-memory-utilization", str(self.gpu_memory_utilization),
            "--vllm-args=--max-num-seqs 64",
        ]

    async def start(self) -> GpuWorkerStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.nats.start()
        self.nc = await nats.connect(self.nats.url, name="gpu-stack")
        await natsio.apply_nats_config(self.nc.jetstream())
        await self.nc.subscribe(self.subject, cb=self._on_heartbeat)
        with open(self.agent_log, "wb") as log:
            self.agent = subprocess.Popen(self.agent_argv(), cwd=REPO, env=_env(INVENTIV_LOG_FORMAT="json"),
                                          stdout=log, stderr=subprocess.STDOUT)
        await self._feed()
        with open(self.workdir / "proxy.log", "wb") as log:
            self.proxy = subprocess.Popen(
                [sys.executable, "-m", "services.api.proxy.standalone", "--host", "127.0.0.1",
                 "--port", str(self.proxy_port)],
                cwd=REPO, env=_env(NATS_URL=self.nats.url, INVENTIV_LOG_LEVEL="warning"),
                stdout=log, stderr=subprocess.STDOUT)
        await asyncio.to_thread(wait_for_port, "127.0.0.1", self.proxy_port, 60, self.proxy, "proxy")
        return self

    async def _on_heartbeat(self, msg) -> None:
        self.heartbeats.append(codec.decode_heartbeat(msg.data))

    async def _feed(self) -> None:
        store = JetStreamEventStore(self.nc.jetstream())
        envelope = dict(org_id=self.org, actor="system:gpu-test", correlation_id=ids.new_id(),
                        causation_id=ids.new_id(), occurred_at=datetime.now(UTC))
        await store.append(ApiKeyCreated(id=ids.new_id(), **envelope, key_id=ids.new_id(), name="gpu",
                                         prefix=visible_prefix(self.api_key), key_hash=hash_api_key(self.api_key),
                                         user_id=ids.new_id(), scopes=("inference",)), expected_last_seq=None)
        await store.append(InstanceReady(id=ids.new_id(), **envelope, instance_id=self.instance,
                                         upstream_url=self.engine_url, model_name=SERVED_NAME),
                           expected_last_seq=None)

    async def wait_ready(self, session: aiohttp.ClientSession, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until the agent's /readyz says ready (vLLM loaded the model and produced a warm-up token)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.agent is not None and self.agent.poll() is not None:
                raise RuntimeError(f"the agent exited with {self.agent.returncode}:\n{self.log_tail()}")
            try:
                async with session.get(self.agent_url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
        raise TimeoutError(f"the worker was not ready within {timeout_s}s:\n{self.log_tail()}")

    async def wait_routable(self, session: aiohttp.ClientSession, timeout_s: float = 60) -> None:
        """Until the proxy routes a chat completion to the worker."""
        body = {"model": SERVED_NAME, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            try:
                async with session.post(self.proxy_url + "/v1/chat/completions", json=body, headers=self.auth) as r:
                    last = (r.status, (await r.read())[:300])
                    if r.status == 200:
                        return
            except aiohttp.ClientError as exc:
                last = repr(exc)
            await asyncio.sleep(0.25)
        raise TimeoutError(f"the proxy never routed to the worker (last answer {last!r})")

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.agent_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no agent log)"

    async def stop_agent(self, timeout_s: float = 90) -> int | None:
        """SIGTERM (drain, stop the engine) and wait; SIGKILL if it does not exit in time."""
        if self.agent is None or self.agent.poll() is not None:
            return None if self.agent is None else self.agent.returncode
        self.agent.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.agent.wait, timeout_s)
        except subprocess.TimeoutExpired:
            self.agent.kill()
            return await asyncio.to_thread(self.agent.wait)

    async def stop(self) -> None:
        await self.stop_agent()
        if self.proxy is not None and self.proxy.poll() is None:
            self.proxy.terminate()
            try:
                await asyncio.to_thread(self.proxy.wait, 30)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()
        self.nats.stop()
