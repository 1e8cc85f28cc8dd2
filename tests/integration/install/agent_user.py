"""What the run-as tests need from the machine: an ``inventiv-agent`` an unprivileged user can run, and
install directories it can reach.

Tests run as root here, so the bootstrap really switches to its unprivileged user. That user must be able
to execute the agent and its interpreter: this repo's ``.venv`` often points at an interpreter under a
private home (``/root/.pyenv``). Then the agent is run through a small venv made from a system Python of
the same version that loads ``.venv``'s site-packages (same ABI, same editable install of this repo).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

AGENT = Path(sys.executable).parent / "inventiv-agent"
# Who probes "can an unprivileged user run this" before the install's own user exists.
PROBE_USER = "nobody"


def _runs_as_nobody(python: Path) -> bool:
    try:
        entry = pwd.getpwnam(PROBE_USER)
    except KeyError:
        return False
    # Through env, as the bootstrap does: setpriv's own exec may still resolve the path with root's
    # capabilities, what the user's own exec of the agent would not.
    proc = subprocess.run(["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
                           "env", str(python), "-c", "import agent.main, aiohttp, nats, msgspec"],
                          capture_output=True, cwd="/", timeout=60, check=False)
    return proc.returncode == 0


def _same_version_pythons() -> list[Path]:
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return [Path(d) / name for d in ("/usr/bin", "/usr/local/bin", "/bin") if (Path(d) / name).is_file()]


def make_shared_agent(workdir: Path) -> Path | None:
    """An inventiv-agent any user can run (this repo's when it already is), or None when none can be made."""
    if _runs_as_nobody(Path(sys.executable)):
        return AGENT
    site_packages = sysconfig.get_paths()["purelib"]
    for python in _same_version_pythons():
        venv = workdir / f"venv-{python.parent.name}"
        shutil.rmtree(venv, ignore_errors=True)
        if subprocess.run([str(python), "-m", "venv", "--without-pip", str(venv)], capture_output=True,
                          check=False).returncode != 0:
            continue
        [own_site] = venv.glob("lib/python*/site-packages")
        # addsitedir also runs .venv's own .pth files: the editable install of this repo among them.
        (own_site / "_inventiv_tests.pth").write_text(f"import site; site.addsitedir({site_packages!r})\n")
        agent = venv / "bin" / "inventiv-agent"
        body = AGENT.read_text().split("\n", 1)[1]
        agent.write_text(f"#!{venv}/bin/python\n{body}")
        agent.chmod(0o755)
        subprocess.run(["chmod", "-R", "a+rX", str(workdir)], check=True)
        if _runs_as_nobody(venv / "bin" / "python"):
            return agent
    return None


def shared_workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="inventiv-shared-agent-"))
    path.chmod(0o755)
    return path


def make_reachable(path: Path) -> None:
    """Let other users search (not list) ``path`` and the pytest directories above it, as an install
    under /opt would be; pytest makes them 0700."""
    top = Path(tempfile.gettempdir()).resolve()
    for directory in (path, *path.parents):
        if directory == top or top not in directory.parents:
            break
        mode = directory.stat().st_mode
        if not mode & 0o001:
            os.chmod(directory, mode | 0o001)


def proc_ids(pid: int) -> dict[str, list[int]]:
    """``Uid``, ``Gid`` (real, effective, saved, filesystem) and ``Groups`` from /proc/<pid>/status."""
    ids: dict[str, list[int]] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("Uid", "Gid", "Groups"):
            ids[key] = [int(v) for v in value.split()]
    return ids
