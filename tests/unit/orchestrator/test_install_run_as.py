"""Who the installed agent runs as, and its log budget: spec validation, what the script and env file carry,
the settings from the environment (pure; the real switch is exercised in tests/integration/install)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from agent.settings import parse_settings
from contracts.ids import new_id
from services.orchestrator.adapters.ssh_install_driver import WorkerTemplate
from services.orchestrator.domain.effects import DriveInstall
from services.orchestrator.install.model import DEFAULT_RUN_AS, InvalidInstall
from services.orchestrator.install.script import AGENT_LOG_DIR_NAME, render_bootstrap, render_env_file
from services.orchestrator.install_settings import worker_template_from_env
from tests.unit.orchestrator.test_install_model import spec
from tests.unit.orchestrator.test_install_script import header_of, run_bash, source_env_file

BOOTSTRAP = Path(__file__).resolve().parents[3] / "services/orchestrator/install/bootstrap.sh"


def test_the_agent_runs_as_an_unprivileged_user_by_default():
    assert spec().run_as == DEFAULT_RUN_AS == "inventiv"
    assert spec(run_as=None).run_as is None
    for name in ("svc_inventiv", "_vllm", "gpu-worker1", "a" * 32, "root"):
        assert spec(run_as=name).run_as == name


@pytest.mark.parametrize("name", [
    "", "Inventiv", "-inventiv", "inventiv-", "1user", "in ventiv", "in;ventiv", "$(id)", "in\nventiv",
    "a" * 33, "user$", "../etc", "in/ventiv", "ïnventiv", 1000,
])
def test_unsafe_user_names_are_refused(name):
    with pytest.raises(InvalidInstall, match="run_as"):
        spec(run_as=name)


@pytest.mark.parametrize("changes", [
    {"log_file_max_bytes": 4095}, {"log_file_max_bytes": 2**31}, {"log_file_max_bytes": 1.5},
    {"log_file_backups": -1}, {"log_file_backups": 101},
])
def test_log_budgets_out_of_range_are_refused(changes):
    with pytest.raises(InvalidInstall, match="log_file"):
        spec(**changes)


def test_the_log_budget_covers_the_rotated_file_its_backups_and_two_runs_of_stderr():
    assert spec().agent_log_budget_bytes == (5 + 1 + 2) * 10 * 1024 * 1024
    assert spec(log_file_max_bytes=4096, log_file_backups=0).agent_log_budget_bytes == 3 * 4096


def test_run_as_reaches_the_script_header_quoted(tmp_path):
    for run_as, expected in (("inventiv", "inventiv"), (None, "")):
        proc = run_bash(header_of(render_bootstrap(spec(run_as=run_as))) + 'printf "%s" "$RUN_AS"', cwd=tmp_path)
        assert proc.returncode == 0 and proc.stdout.decode() == expected, proc.stderr


def test_the_env_file_gives_the_agent_a_rotated_log_file_and_a_quiet_stderr(tmp_path):
    s = spec(base_dir="/srv/inv", log_file_max_bytes=8192, log_file_backups=3)
    settings = parse_settings([], source_env_file(render_env_file(s), tmp_path))
    assert settings.log_file == f"/srv/inv/{AGENT_LOG_DIR_NAME}/agent.log"
    assert (settings.log_file_max_bytes, settings.log_file_backups) == (8192, 3)
    assert settings.log_stderr_level == "warning" and settings.log_format == "json"


def test_the_bootstrap_gives_the_agent_the_directory_its_log_file_is_in(tmp_path):
    # The body's paths (evaluated by bash) against the env file's INVENTIV_LOG_FILE (parsed by the agent).
    s = spec(base_dir="/srv/inv")
    body = BOOTSTRAP.read_text()
    paths = body[body.index("readonly STATE_DIR="):].split("\n\n", 1)[0]  # the block of path constants
    proc = run_bash(header_of(render_bootstrap(s)) + paths + '\nprintf "%s|%s" "$AGENT_LOG_DIR" "$AGENT_EVENTS_LOG"',
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    log_dir, events_log = proc.stdout.decode().split("|")
    assert log_dir == f"/srv/inv/{AGENT_LOG_DIR_NAME}"
    assert events_log == parse_settings([], source_env_file(render_env_file(s), tmp_path)).log_file


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_bootstrap_body_is_shellcheck_clean():
    proc = subprocess.run(["shellcheck", "-s", "bash", str(BOOTSTRAP)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout


def test_the_template_passes_run_as_and_the_log_budget_to_each_spec():
    effect = DriveInstall("org", new_id(), "server", "zone", 2, "org/model")
    assert WorkerTemplate().spec_for(effect).run_as == DEFAULT_RUN_AS
    template = WorkerTemplate(run_as=None, log_file_max_bytes=65536, log_file_backups=1)
    s = template.spec_for(effect)
    assert (s.run_as, s.log_file_max_bytes, s.log_file_backups) == (None, 65536, 1)
    with pytest.raises(InvalidInstall, match="run_as"):
        WorkerTemplate(run_as="Bad Name").spec_for(effect)


def test_run_as_and_the_log_budget_from_the_environment(monkeypatch):
    monkeypatch.setenv("INVENTIV_WORKER_NATS_URL", "nats://10.0.0.2:4222")
    template = worker_template_from_env()
    assert (template.run_as, template.log_file_max_bytes, template.log_file_backups) == \
        ("inventiv", 10 * 1024 * 1024, 5)
    monkeypatch.setenv("INVENTIV_WORKER_RUN_AS", "-")  # the SSH user, no switch
    monkeypatch.setenv("INVENTIV_WORKER_LOG_FILE_MAX_BYTES", "1048576")
    monkeypatch.setenv("INVENTIV_WORKER_LOG_FILE_BACKUPS", "2")
    template = worker_template_from_env()
    assert (template.run_as, template.log_file_max_bytes, template.log_file_backups) == (None, 1048576, 2)
    monkeypatch.setenv("INVENTIV_WORKER_RUN_AS", "vllm")
    assert worker_template_from_env().run_as == "vllm"
