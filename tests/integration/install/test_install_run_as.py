"""The installed worker runs unprivileged, and its logs stay within their budget (real SSH, real bash).

Run as root, the bootstrap creates the spec's ``run_as`` user and starts the agent as that user (setpriv,
or runuser when setpriv is missing); the engine inherits it. Root keeps state/ and etc/; the agent's user
owns only its log directory, its home (caches) and its two secret files (0600).
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import json
import os
import pwd
import shutil
import stat
from pathlib import Path

import aiohttp
import pytest

from contracts.codec import decode_heartbeat
from contracts.subjects import heartbeat_subject
from services.orchestrator.adapters.loopback_sshd import LoopbackSshd
from services.orchestrator.install.model import SshTarget
from services.orchestrator.ports import Permanent
from tests.helpers import wait_until
from tests.nats_users import new_user_seed

from .agent_user import proc_ids
from .conftest import agent_pids, cmdline, finished, generation_of, marked_pids, wait_status

CREDS_JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2ln"  # a plain server does not check it


def creds() -> str:
    return (f"-----BEGIN NATS USER JWT-----\n{CREDS_JWT}\n------END NATS USER JWT------\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{new_user_seed().decode()}\n------END USER NKEY SEED------\n")


def recorded_agent(base_dir: str) -> int:
    return int((Path(base_dir) / "state" / "agent.pid").read_text())


def engine_pids(base_dir: str) -> list[int]:
    return [pid for pid in marked_pids(base_dir) if "inventiv-agent" not in cmdline(pid)]


def environ(pid: int) -> dict[str, str]:
    pairs = (item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item)
    return {k.decode(): v.decode(errors="replace") for k, v in pairs}


def owner_and_mode(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def assert_runs_as(pid: int, uid: int, gid: int) -> None:
    ids = proc_ids(pid)
    assert ids["Uid"] == [uid] * 4 and ids["Gid"] == [gid] * 4, (cmdline(pid), ids)
    assert 0 not in ids["Groups"], f"root's groups were kept: {ids}"


def path_without(tmp_path: Path, *tools: str) -> str:
    """A PATH holding every command of this one except ``tools`` (links, first match wins as in PATH)."""
    bin_dir = tmp_path / f"path-without-{'-'.join(tools)}"
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(":") + ["/usr/sbin", "/sbin"]:
        if not os.path.isdir(directory):
            continue
        for entry in os.scandir(directory):
            link = bin_dir / entry.name
            if entry.name not in tools and not link.exists() and not link.is_symlink():
                link.symlink_to(entry.path)
    return str(bin_dir)


@contextlib.asynccontextmanager
async def sshd_with_path(client_key, tmp_path: Path, path: str):
    home = tmp_path / "home-restricted"
    home.mkdir(exist_ok=True)
    env = {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8", "PIP_NO_INDEX": "1"}
    async with LoopbackSshd([client_key], cwd=home, env=env) as server:
        yield SshTarget(server.host, server.port, getpass.getuser(), (server.host_key_fingerprint,))


async def test_the_agent_and_its_engine_run_as_the_unprivileged_user(installer, target, make_spec, switching,
                                                                     nats_client):
    spec = make_spec(nats_creds=creds())
    sub = await nats_client.subscribe(heartbeat_subject(spec.org_id, spec.instance_id))
    await installer.start(target, spec)
    done = await wait_status(installer, target, spec.base_dir, finished(1))
    assert done.state == "succeeded", done.log_tail
    user = pwd.getpwnam(spec.run_as)
    assert f"the agent runs as {spec.run_as} (uid {user.pw_uid}" in done.log_tail
    assert user.pw_uid != 0 and user.pw_shell.endswith(("nologin", "false"))

    # The agent reads its env file and creds file as that user: it connected and heartbeats.
    heartbeat = decode_heartbeat((await sub.next_msg(timeout=60)).data)
    assert heartbeat.model == spec.model_name
    await sub.unsubscribe()

    agent = recorded_agent(spec.base_dir)
    assert agent_pids(spec.base_dir) == [agent] and "inventiv-agent" in cmdline(agent)
    assert_runs_as(agent, user.pw_uid, user.pw_gid)
    assert "NoNewPrivs:\t1" in Path(f"/proc/{agent}/status").read_text()
    with contextlib.suppress(KeyError):  # the GPU's device nodes, where the machine has the group
        assert grp.getgrnam("video").gr_gid in proc_ids(agent)["Groups"]
    assert environ(agent)["HOME"] == f"{spec.base_dir}/home"
    engines = await wait_until(lambda: engine_pids(spec.base_dir), timeout_s=30, message="the engine")
    for engine in engines:
        assert_runs_as(engine, user.pw_uid, user.pw_gid)

    base = Path(spec.base_dir)
    assert owner_and_mode(base / "etc" / "agent.env") == (user.pw_uid, user.pw_gid, 0o600)
    assert owner_and_mode(base / "etc" / "nats.creds") == (user.pw_uid, user.pw_gid, 0o600)
    for root_dir in (base, base / "etc", base / "logs"):
        assert owner_and_mode(root_dir) == (0, user.pw_gid, 0o750), root_dir
    assert owner_and_mode(base / "state") == (0, 0, 0o700)
    assert all(path.stat().st_uid == 0 for path in (base / "state").iterdir())
    assert owner_and_mode(base / "logs" / "install.log")[::2] == (0, 0o600)
    for own_dir in (base / "logs" / "agent", base / "home"):
        assert owner_and_mode(own_dir) == (user.pw_uid, user.pw_gid, 0o700), own_dir
    assert (base / "logs" / "agent" / "agent.log").stat().st_uid == user.pw_uid  # the agent's own rotated log


async def test_a_reinstall_stops_the_unprivileged_agent_and_starts_the_new_one(installer, target, make_spec,
                                                                               switching):
    first = make_spec(generation=1)
    await installer.start(target, first)
    assert (await wait_status(installer, target, first.base_dir, finished(1))).state == "succeeded"
    old_agent = recorded_agent(first.base_dir)
    old_engines = await wait_until(lambda: engine_pids(first.base_dir), timeout_s=30, message="the first engine")

    second = make_spec(generation=2)
    await installer.start(target, second)
    done = await wait_status(installer, target, second.base_dir, finished(2))
    assert done.state == "succeeded", done.log_tail
    assert f"stopping the previous agent (pid {old_agent})" in done.log_tail
    assert "SIGKILL" not in done.log_tail and "leftover" not in done.log_tail  # it drained and stopped its engine
    assert not set(marked_pids(second.base_dir)) & {old_agent, *old_engines}
    [new_agent] = agent_pids(second.base_dir)
    assert new_agent == recorded_agent(second.base_dir) and generation_of(new_agent) == "2"
    user = pwd.getpwnam(second.run_as)
    assert_runs_as(new_agent, user.pw_uid, user.pw_gid)
    events = [json.loads(line)["event"] for line in _agent_log_lines(second.base_dir)]
    assert "drained" in events and "agent_stopped" in events  # the first agent's orderly stop, in the shared log
    assert (Path(second.base_dir) / "logs" / "agent" / "stderr.log.1").exists()  # the first run's stderr, kept


async def test_without_setpriv_runuser_switches_and_the_recorded_pid_is_the_agent(installer, client_key, tmp_path,
                                                                                    make_spec, switching):
    if shutil.which("runuser") is None:
        pytest.skip("runuser is not installed")
    async with sshd_with_path(client_key, tmp_path, path_without(tmp_path, "setpriv")) as target:
        first = make_spec(generation=1)
        await installer.start(target, first)
        done = await wait_status(installer, target, first.base_dir, finished(1))
        assert done.state == "succeeded", done.log_tail
        assert "switched by runuser" in done.log_tail
        agent = recorded_agent(first.base_dir)
        # runuser stays as the agent's parent (root): the pid to signal is the agent's own, not runuser's.
        assert "inventiv-agent" in cmdline(agent) and agent_pids(first.base_dir) == [agent]
        user = pwd.getpwnam(first.run_as)
        assert_runs_as(agent, user.pw_uid, user.pw_gid)
        parent = int(Path(f"/proc/{agent}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert "runuser" in cmdline(parent)

        second = make_spec(generation=2)
        await installer.start(target, second)
        done = await wait_status(installer, target, second.base_dir, finished(2))
        assert done.state == "succeeded", done.log_tail
        assert f"stopping the previous agent (pid {agent})" in done.log_tail and "SIGKILL" not in done.log_tail
        assert agent not in marked_pids(second.base_dir)
        assert generation_of(recorded_agent(second.base_dir)) == "2"


async def test_without_setpriv_or_runuser_the_launch_fails_permanently(installer, client_key, tmp_path, make_spec,
                                                                       switching):
    async with sshd_with_path(client_key, tmp_path, path_without(tmp_path, "setpriv", "runuser")) as target:
        spec = make_spec()
        with pytest.raises(Permanent, match="neither setpriv nor runuser is installed"):
            await installer.start(target, spec)
    assert not (Path(spec.base_dir) / "state" / "generation").exists() and marked_pids(spec.base_dir) == []


async def test_without_run_as_the_agent_runs_as_the_ssh_user(installer, target, make_spec):
    spec = make_spec(run_as=None)
    await installer.start(target, spec)
    done = await wait_status(installer, target, spec.base_dir, finished(1))
    assert done.state == "succeeded", done.log_tail
    assert f"the agent runs as {getpass.getuser()}, the SSH user" in done.log_tail
    [agent] = agent_pids(spec.base_dir)
    assert proc_ids(agent)["Uid"] == [os.getuid()] * 4
    assert environ(agent)["HOME"] != f"{spec.base_dir}/home"
    base = Path(spec.base_dir)
    assert owner_and_mode(base / "etc" / "agent.env") == (os.getuid(), os.getgid(), 0o600)
    assert owner_and_mode(base)[::2] == (os.getuid(), 0o700)
    assert not (base / "home").exists()


# --- logs within their budget --------------------------------------------------------------------------

CHATTY_LINES = 3000


def chatty_worker(tmp_path: Path, agent: Path) -> Path:
    """An agent beside a ``vllm`` that prints far more than the log budget, then idles: the agent finds it
    first on its PATH (the agent's own directory) and copies every line into its log."""
    bin_dir = tmp_path / "chatty-bin"
    bin_dir.mkdir()
    (bin_dir / "inventiv-agent").write_text(agent.read_text())
    (bin_dir / "vllm").write_text(
        "#!/bin/bash\n"
        "pad=$(printf 'x%.0s' {1..80})\n"
        f"for ((i = 1; i <= {CHATTY_LINES}; i++)); do printf 'engine line %05d %s\\n' \"$i\" \"$pad\"; done\n"
        "echo 'the newest engine line'\n"
        "exec sleep 600\n")
    for name in ("inventiv-agent", "vllm"):
        (bin_dir / name).chmod(0o755)
    return bin_dir / "inventiv-agent"


def _agent_log_lines(base_dir: str) -> list[str]:
    try:
        return (Path(base_dir) / "logs" / "agent" / "agent.log").read_text().splitlines()
    except FileNotFoundError:  # between a rotation's rename and the new file's creation
        return []


async def test_the_agent_logs_stay_within_their_budget_and_the_newest_lines_are_current(
        installer, target, make_spec, agent_runtime, tmp_path):
    agent = chatty_worker(tmp_path, agent_runtime.agent)
    spec = make_spec(engine="vllm", agent_install=f"preinstalled:{agent}", log_file_max_bytes=4096,
                     log_file_backups=2)
    await installer.start(target, spec)
    done = await wait_status(installer, target, spec.base_dir, finished(1))
    assert done.state == "succeeded", done.log_tail
    assert "phase: agent_started" in done.log_tail  # the install status tail still reads install.log
    log_dir = Path(spec.base_dir) / "logs" / "agent"
    newest = await wait_until(
        lambda: any("the newest engine line" in line for line in _agent_log_lines(spec.base_dir)),
        timeout_s=60, message="the engine's last line in the current log file")
    assert newest

    files = sorted(log_dir.iterdir())
    sizes = {path.name: path.stat().st_size for path in files}
    assert sum(sizes.values()) <= spec.agent_log_budget_bytes, sizes
    rotated = [name for name in sizes if name.startswith("agent.log")]
    assert sorted(rotated) == ["agent.log", "agent.log.1", "agent.log.2"], sizes
    assert all(sizes[name] <= spec.log_file_max_bytes for name in rotated), sizes
    engine_lines = [json.loads(line)["line"] for line in _agent_log_lines(spec.base_dir)
                    if '"engine_output"' in line]
    assert engine_lines[-1] == "the newest engine line"
    # stderr (what the bootstrap captures) keeps warnings and errors only: no engine output there.
    assert "engine_output" not in (log_dir / "stderr.log").read_text()
    # GET /logs (the in-memory ring) still serves the newest events.
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{spec.agent_port}/logs?tail=50") as resp:
            body = await resp.json()
    assert any(e.get("line") == "the newest engine line" for e in body["events"])


async def test_a_large_install_log_is_set_aside_at_the_next_install(installer, target, make_spec):
    spec = make_spec()
    logs = Path(spec.base_dir) / "logs"
    logs.mkdir(parents=True)
    (logs / "install.log").write_text("an old install line\n" * 60_000)  # over 1 MiB
    await installer.start(target, spec)
    done = await wait_status(installer, target, spec.base_dir, finished(1))
    assert done.state == "succeeded", done.log_tail
    assert (logs / "install.log.1").read_text().startswith("an old install line")
    assert "an old install line" not in (logs / "install.log").read_text()
    assert (logs / "install.log").stat().st_size < 64 * 1024
