"""Installing the worker over real SSH: real bash on the "server", the real agent, real NATS heartbeats."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
from pathlib import Path

import asyncssh
import pytest

from contracts.codec import decode_heartbeat
from contracts.subjects import heartbeat_subject
from services.orchestrator.install.installer import HostKeyMismatch
from services.orchestrator.install.model import PHASES, SshTarget
from services.orchestrator.ports import Permanent
from tests.helpers import wait_until

from .conftest import agent_pids, finished, generation_of, marked_pids, wait_status


def phase_lines(base_dir: str) -> list[str]:
    log = (Path(base_dir) / "logs" / "install.log").read_text()
    return [line.rsplit("phase: ", 1)[1] for line in log.splitlines() if "phase: " in line]


async def test_install_runs_its_phases_then_the_agent_heartbeats(installer, target, make_spec, nats_client):
    spec = make_spec()
    heartbeats: asyncio.Queue = asyncio.Queue()

    async def on_heartbeat(msg):
        await heartbeats.put(decode_heartbeat(msg.data))

    sub = await nats_client.subscribe(heartbeat_subject(spec.org_id, spec.instance_id), cb=on_heartbeat)
    assert (await installer.status(target, spec.base_dir)).state == "not_started"

    await installer.start(target, spec)
    history = []
    first = await installer.status(target, spec.base_dir)
    assert first.generation == 1 and first.state in ("running", "succeeded")  # recorded before start returned
    done = await wait_status(installer, target, spec.base_dir, finished(1), history)

    assert (done.state, done.phase, done.exit_code) == ("succeeded", "agent_started", 0), done.log_tail
    assert phase_lines(spec.base_dir) == list(PHASES)
    seen = [s.phase for s in history if s.phase]
    assert seen == sorted(seen, key=PHASES.index), f"phases went backwards: {seen}"
    heartbeat = await asyncio.wait_for(heartbeats.get(), timeout=60)
    assert heartbeat.model == "mock-echo-model"
    [agent] = agent_pids(spec.base_dir)
    lock = str(Path(spec.base_dir) / "state" / "lock")
    assert lock not in [os.readlink(fd) for fd in Path(f"/proc/{agent}/fd").iterdir()], \
        "the agent must not inherit the install lock"
    env_file = Path(spec.base_dir) / "etc" / "agent.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert not list((Path(spec.base_dir) / "state").glob("bootstrap.*")), "the script (secrets) must be deleted"
    await sub.unsubscribe()


async def test_hostile_values_reach_the_agent_verbatim_and_run_nothing(installer, target, make_spec, nats_client,
                                                                       tmp_path):
    hostile = "m'\"$(touch${IFS}CANARY)`touch${IFS}CANARY`;touch${IFS}CANARY"
    spec = make_spec(model_name=hostile, served_model_name=hostile,
                     extra_env=(("HF_TOKEN", "x'$(touch CANARY)"),))
    sub = await nats_client.subscribe(heartbeat_subject(spec.org_id, spec.instance_id))
    await installer.start(target, spec)
    done = await wait_status(installer, target, spec.base_dir, finished(1))
    assert done.state == "succeeded", done.log_tail
    heartbeat = decode_heartbeat((await sub.next_msg(timeout=60)).data)
    assert heartbeat.model == hostile
    assert not list(tmp_path.rglob("CANARY")), "a value was executed as code"
    await sub.unsubscribe()


async def test_starting_twice_runs_one_install_and_one_agent(installer, target, make_spec):
    spec = make_spec()
    await asyncio.gather(installer.start(target, spec), installer.start(target, spec))
    await wait_status(installer, target, spec.base_dir, finished(1))
    agents = agent_pids(spec.base_dir)
    assert len(agents) == 1

    await installer.start(target, spec)  # the same generation, succeeded: a no-op
    assert (await installer.status(target, spec.base_dir)).state == "succeeded"
    assert agent_pids(spec.base_dir) == agents
    log = (Path(spec.base_dir) / "logs" / "install.log").read_text()
    assert log.count("install requested") == 1, log


async def test_a_higher_generation_replaces_the_agent_and_a_lower_one_is_ignored(installer, target, make_spec):
    first = make_spec(generation=1)
    await installer.start(target, first)
    await wait_status(installer, target, first.base_dir, finished(1))
    [old_agent] = agent_pids(first.base_dir)

    second = make_spec(generation=2)
    await installer.start(target, second)
    done = await wait_status(installer, target, second.base_dir, finished(2))
    assert done.state == "succeeded", done.log_tail
    assert old_agent not in marked_pids(first.base_dir), "the previous agent must be stopped"
    [new_agent] = agent_pids(second.base_dir)
    assert generation_of(new_agent) == "2"
    assert "stopping the previous agent" in done.log_tail

    await installer.start(target, first)  # a stale start (redelivered command) changes nothing
    status = await installer.status(target, first.base_dir)
    assert (status.generation, status.state) == (2, "succeeded")
    assert agent_pids(second.base_dir) == [new_agent]


async def test_a_higher_generation_supersedes_an_install_still_running(installer, target, make_spec, tmp_path):
    stuck_agent = tmp_path / "stuck-agent"
    stuck_agent.write_text("#!/bin/sh\nexec sleep 300\n")  # never answers /healthz
    stuck_agent.chmod(0o755)
    first = make_spec(generation=1, agent_install=f"preinstalled:{stuck_agent}", agent_start_timeout_s=300)
    await installer.start(target, first)
    await wait_status(installer, target, first.base_dir,
                      lambda s: s.state == "running" and s.phase == "engine_starting")
    stuck = await wait_until(lambda: marked_pids(first.base_dir), timeout_s=30, message="the stuck agent")

    second = make_spec(generation=2)
    await installer.start(target, second)
    done = await wait_status(installer, target, second.base_dir, finished(2))
    assert done.state == "succeeded", done.log_tail
    assert not set(stuck) & set(marked_pids(first.base_dir))
    assert len(agent_pids(second.base_dir)) == 1


async def test_a_failing_pip_install_reports_failed_with_its_exit_code_and_log(installer, target, make_spec, tmp_path):
    spec = make_spec(agent_install=str(tmp_path / "missing" / "inventiv_agent-0.0.0-py3-none-any.whl"),
                     python=sys.executable)
    await installer.start(target, spec)
    done = await wait_status(installer, target, spec.base_dir, finished(1), timeout_s=180)
    assert (done.state, done.phase) == ("failed", "installing")
    assert done.exit_code not in (None, 0)
    assert "pip install" in done.log_tail and "does not exist" in done.log_tail, done.log_tail
    assert marked_pids(spec.base_dir) == []


async def test_an_agent_that_exits_at_start_fails_the_install_with_its_log(installer, target, make_spec):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        spec = make_spec(engine_port=taken.getsockname()[1])  # the agent's preflight refuses a busy port
        await installer.start(target, spec)
        done = await wait_status(installer, target, spec.base_dir, finished(1))
    assert (done.state, done.phase, done.exit_code) == ("failed", "engine_starting", 70)
    assert "not available" in done.log_tail, done.log_tail


async def test_a_failed_generation_is_retried_by_the_same_start(installer, target, make_spec, tmp_path):
    missing = make_spec(agent_install=f"preinstalled:{tmp_path}/not-there")
    await installer.start(target, missing)
    failed = await wait_status(installer, target, missing.base_dir, finished(1))
    assert (failed.state, failed.exit_code) == ("failed", 69)
    fixed = make_spec()  # same generation, now installable
    await installer.start(target, fixed)
    done = await wait_status(installer, target, fixed.base_dir, lambda s: s.state == "succeeded")
    assert done.generation == 1 and len(agent_pids(fixed.base_dir)) == 1


async def test_a_wrong_host_key_is_permanent_and_nothing_runs(installer, sshd, make_spec):
    impostor = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")
    spec = make_spec()
    with pytest.raises(HostKeyMismatch) as info:
        await installer.start(SshTarget(sshd.host, sshd.port, "root", (impostor,)), spec)
    assert isinstance(info.value, Permanent) and sshd.host_key_fingerprint in str(info.value)
    assert sshd.commands == [] and not os.path.exists(spec.base_dir)
