"""Reading an install's state: the parse (table) and the real status command run by bash on real files."""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

import pytest

from services.orchestrator.install.model import InstallStatus
from services.orchestrator.install.status import (
    LOG_SEPARATOR,
    LOG_TAIL_BYTES,
    UnreadableStatus,
    parse_status,
    render_status_command,
)


def out(generation="", phase="", exit_code="", locked="0", log="") -> str:
    return (f"generation={generation}\nphase={phase}\nexit_code={exit_code}\nlocked={locked}\n"
            f"{LOG_SEPARATOR}\n{log}")


@pytest.mark.parametrize("output, expected", [
    (f"{LOG_SEPARATOR}\n", InstallStatus("not_started", None, None, None, "")),
    (out(), InstallStatus("not_started", None, None, None, "")),
    (out(locked="1"), InstallStatus("running", None, None, None, "")),
    (out("2", "installing", locked="1", log="x\n"), InstallStatus("running", "installing", 2, None, "x\n")),
    (out("2", "agent_started", "0"), InstallStatus("succeeded", "agent_started", 2, 0, "")),
    (out("2", "agent_started", "0", locked="1"), InstallStatus("succeeded", "agent_started", 2, 0, "")),
    (out("2", "installing", "1", log="pip failed\n"), InstallStatus("failed", "installing", 2, 1, "pip failed\n")),
    # A generation, no exit code, nobody holding the lock: the run died (reboot, OOM kill).
    (out("3", "engine_starting"), InstallStatus("failed", "engine_starting", 3, None, "")),
])
def test_status_table(output, expected):
    assert parse_status(output) == expected


def test_output_without_the_separator_is_unreadable():
    with pytest.raises(UnreadableStatus):
        parse_status("Welcome to Ubuntu\n")


def test_a_full_log_tail_starts_at_a_whole_line():
    log = "partial line\n" + "line\n" * (LOG_TAIL_BYTES // 5)
    assert parse_status(out("1", log=log[-LOG_TAIL_BYTES:])).log_tail.startswith("line\n")


def run_status(base: Path) -> InstallStatus:
    proc = subprocess.run(["sh", "-c", render_status_command(str(base))], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return parse_status(proc.stdout)


def test_the_status_command_reads_real_state_files_and_the_lock(tmp_path):
    base = tmp_path / "base with space"
    assert run_status(base) == InstallStatus("not_started", None, None, None, "")
    (base / "state").mkdir(parents=True)
    (base / "logs").mkdir()
    (base / "state" / "generation").write_text("4\n")
    (base / "state" / "phase").write_text("engine_starting\n")
    (base / "logs" / "install.log").write_text("phase: engine_starting\n")
    with open(base / "state" / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # what a detached run holds
        assert run_status(base) == InstallStatus("running", "engine_starting", 4, None, "phase: engine_starting\n")
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert run_status(base).state == "failed"  # nobody holds the lock any more, no exit code
    (base / "state" / "exit_code").write_text("0\n")
    assert run_status(base).state == "succeeded"
