"""The rendered bootstrap: valid bash, every value quoted (checked by running bash on it), never a wildcard bind."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.settings import parse_settings
from services.orchestrator.install.script import MARKER_ENV, render_bootstrap, render_env_file, render_launch_command
from tests.unit.orchestrator.test_install_model import CREDS, spec

BODY_MARKER = "# --- static body"
HOSTILE = "m'\"$(touch${IFS}CANARY)`touch${IFS}CANARY`;touch${IFS}CANARY;$HOME\\"


def run_bash(script: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], capture_output=True, cwd=cwd, timeout=30,
                          env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"})


def header_of(script: str) -> str:
    head, marker, _ = script.partition(BODY_MARKER)
    assert marker, "the body marker is missing"
    return head


def source_env_file(content: str, tmp_path: Path) -> dict[str, str]:
    """What the agent's environment would be: the env file sourced the way bootstrap.sh does it."""
    env_file = tmp_path / "agent.env"
    env_file.write_text(content)
    proc = subprocess.run(
        ["env", "-i", "/bin/bash", "-c", 'set -a; . "$1"; set +a; exec env -0', "sh", str(env_file)],
        capture_output=True, cwd=tmp_path, timeout=30)
    assert proc.returncode == 0, proc.stderr
    pairs = (item.split("=", 1) for item in proc.stdout.decode().split("\0") if item)
    return {k: v for k, v in pairs if k not in ("PWD", "SHLVL", "_", "OLDPWD")}


def test_the_script_is_valid_bash_for_both_install_modes():
    for s in (spec(), spec(engine="fake", engine_args=(), agent_install="preinstalled:/usr/bin/inventiv-agent")):
        proc = subprocess.run(["bash", "-n"], input=render_bootstrap(s).encode(), capture_output=True)
        assert proc.returncode == 0, proc.stderr.decode()


def test_the_body_is_static_text_whatever_the_spec():
    body = (Path(__file__).resolve().parents[3] / "services/orchestrator/install/bootstrap.sh").read_text()
    first = render_bootstrap(spec())
    second = render_bootstrap(spec(model_name=HOSTILE, served_model_name=HOSTILE, generation=7))
    assert first.endswith(body) and second.endswith(body)
    assert HOSTILE not in body


def test_header_values_reach_bash_exactly_and_run_nothing(tmp_path):
    s = spec(model_name=HOSTILE, served_model_name=HOSTILE, agent_install="inventiv @ file:///w/a'b.whl",
             base_dir="/opt/with space/'q'", extra_env=(("HF_TOKEN", HOSTILE),))
    dump = 'printf "%s\\0" "$MODEL_NAME" "$BASE_DIR" "$AGENT_REQUIREMENT" "$NATS_CREDS" "$AGENT_ENV" "$GENERATION"'
    proc = run_bash(header_of(render_bootstrap(s)) + dump, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    values = proc.stdout.decode().split("\0")[:-1]
    assert values == [HOSTILE, "/opt/with space/'q'", "inventiv @ file:///w/a'b.whl", CREDS, render_env_file(s), "0"]
    assert not (tmp_path / "CANARY").exists()


def test_the_env_file_gives_the_agent_exact_values_and_runs_nothing(tmp_path):
    s = spec(model_name=HOSTILE, served_model_name=HOSTILE, engine_args=("--chat-template", "{{ 'x' }} $(id)"),
             extra_env=(("HF_TOKEN", "tok'en $(touch CANARY)"),), nats_url="nats://u:p%40ss@10.0.0.2:4222")
    env = source_env_file(render_env_file(s), tmp_path)
    assert not (tmp_path / "CANARY").exists()
    assert env["INVENTIV_MODEL"] == HOSTILE
    assert env["HF_TOKEN"] == "tok'en $(touch CANARY)"
    assert env["NATS_URL"] == "nats://u:p%40ss@10.0.0.2:4222"
    assert env[MARKER_ENV] == "/opt/inventiv"
    assert env["PATH"].startswith("/opt/inventiv/venv-0/bin:")


def test_the_agent_parses_the_env_file_into_the_spec(tmp_path):
    # The contract with agent/settings.py: every name we write is one the agent reads, with our value.
    s = spec(engine_args=("--enforce-eager", "--chat-template", "a b"), bind_host="10.1.2.3", heartbeat_interval_s=2.5)
    settings_ = parse_settings([], source_env_file(render_env_file(s), tmp_path))
    assert (settings_.instance_id, settings_.org_id, settings_.model, settings_.engine) == \
        (s.instance_id, s.org_id, s.model_name, "vllm")
    assert (settings_.agent_port, settings_.engine_port, settings_.bind_host) == (8080, 8000, "10.1.2.3")
    assert settings_.heartbeat_interval_s == 2.5 and settings_.nats_url == s.nats_url
    assert settings_.vllm_args == ("--enforce-eager", "--chat-template", "a b")
    assert settings_.nats_creds_file == "/opt/inventiv/etc/nats.creds"
    fake = spec(engine="fake", engine_args=("--fail-after", "2"), nats_creds=None)
    fake_settings = parse_settings([], source_env_file(render_env_file(fake), tmp_path))
    assert fake_settings.engine == "fake" and fake_settings.fake_args == ("--fail-after", "2")
    assert fake_settings.nats_creds_file is None


def test_never_a_wildcard_address():
    for s in (spec(), spec(engine="fake", engine_args=())):
        script = render_bootstrap(s)
        assert "0.0.0.0" not in script and "INVENTIV_BIND_HOST=127.0.0.1" in script


_values = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_values)
def test_any_printable_value_round_trips_through_the_env_file(tmp_path, value):
    s = spec(extra_env=(("HF_TOKEN", value),))
    assert source_env_file(render_env_file(s), tmp_path)["HF_TOKEN"] == value


def test_the_launch_command_stores_the_script_privately_and_runs_its_launcher(tmp_path):
    base = tmp_path / "base dir 'q' $(x)"
    proc = subprocess.run(["bash", "-c", render_launch_command(str(base))], capture_output=True, timeout=30,
                          input=b'printf "%s|%s" "$0" "$1"')
    assert proc.returncode == 0, proc.stderr
    path, mode = proc.stdout.decode().split("|")
    assert mode == "launch"
    assert Path(path).parent == base / "state" and Path(path).name.startswith("bootstrap.")
    assert stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    assert stat.S_IMODE((base / "state").stat().st_mode) == 0o700


def test_a_spec_changes_only_the_header():
    a, b = render_bootstrap(spec()), render_bootstrap(dataclasses.replace(spec(), generation=3))
    assert a.partition(BODY_MARKER)[2] == b.partition(BODY_MARKER)[2]
    assert "GENERATION=3" in header_of(b)
