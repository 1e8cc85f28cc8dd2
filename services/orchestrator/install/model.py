"""What an install is made of: where to connect, what to install, what the server reports (pure values).

Everything that ends up in the bootstrap script is validated here, at construction, so a bad
value fails in the control plane with one line instead of half-way through an install on a
rented GPU. Values are still shell-quoted when rendered (script.py): validation narrows what
reaches the server, quoting makes whatever reaches it inert.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Literal

from agent.engine_command import FAKE_RESERVED_FLAGS, RESERVED_FLAGS, check_bind_host
from agent.settings import LOG_FILE_MIN_BYTES
from contracts.subjects import UnsafeSubjectToken, token

Engine = Literal["vllm", "fake"]
InstallState = Literal["not_started", "running", "succeeded", "failed"]

# The phases the bootstrap script reports, in order (the progress projection knows these names).
PHASES: tuple[str, ...] = ("installing", "engine_starting", "agent_started")
DEFAULT_BASE_DIR = "/opt/inventiv"
PREINSTALLED_PREFIX = "preinstalled:"
# The unprivileged user the agent (hence the engine) runs as when the install runs as root.
DEFAULT_RUN_AS = "inventiv"
# The agent's own rotating log (agent/logs.py): what a worker keeps on disk, per file and how many old ones.
DEFAULT_LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_LOG_FILE_BACKUPS = 5
# A sane ceiling for one log file (the floor is the agent's own, agent/settings.py).
LOG_FILE_MAX_BYTES = 1024**3

# asyncssh's ``key.get_fingerprint("sha256")``: "SHA256:" + unpadded base64 of 32 bytes.
_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
_USERNAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_NATS_SCHEMES = ("nats://", "tls://", "ws://", "wss://")
# Environment the installer sets itself (besides INVENTIV_*); extra_env may not override it.
_INSTALLER_ENV = frozenset({"PATH", "HOME", "LANG", "NATS_URL"})


class InvalidInstall(ValueError):
    """A target or spec the installer refuses; the message names the field."""


def _has_control_or_space(value: str) -> bool:
    return any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value)


def _has_control(value: str, allow: str = "") -> bool:
    return any((ord(ch) < 32 or ord(ch) == 127) and ch not in allow for ch in value)


def normalize_fingerprint(value: str) -> str:
    """``SHA256:<base64>`` with any ``=`` padding dropped; InvalidInstall for anything else (MD5 included)."""
    fingerprint = value.strip().rstrip("=")
    if not _FINGERPRINT.match(fingerprint):
        raise InvalidInstall(f"host key fingerprint must look like SHA256:<43 base64 chars>, got {value!r}")
    return fingerprint


@dataclass(frozen=True, slots=True)
class SshTarget:
    """A server to install on. ``host_key_fingerprints`` are the accepted host keys, published out of
    band (provider API, cloud-init injection); with none the installer refuses to connect."""

    host: str
    port: int = 22
    username: str = "root"
    host_key_fingerprints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.host or _has_control_or_space(self.host) or len(self.host) > 253:
            raise InvalidInstall(f"host must be a host name or IP address, got {self.host!r}")
        if not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise InvalidInstall(f"port must be 1-65535, got {self.port!r}")
        if not _USERNAME.match(self.username):
            raise InvalidInstall(f"username must be a POSIX user name, got {self.username!r}")
        if isinstance(self.host_key_fingerprints, str):
            raise InvalidInstall("host_key_fingerprints must be a tuple of fingerprints, not one string")
        normalized = tuple(dict.fromkeys(normalize_fingerprint(fp) for fp in self.host_key_fingerprints))
        object.__setattr__(self, "host_key_fingerprints", normalized)


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """One generation of a worker install: the agent (and through it the engine) with its identity.

    ``agent_install`` is a pip requirement or wheel path installed into a fresh venv per generation,
    or ``preinstalled:<path to an inventiv-agent executable>`` (no pip: images that ship the agent,
    and tests). ``served_model_name`` must equal ``model_name``: the agent serves the engine under
    the model name (agent/engine_command.py pins ``--served-model-name``), and routing uses it.
    ``generation`` counts reinstalls: a higher one replaces the worker, the same one is a no-op
    once running or succeeded.
    """

    instance_id: str
    org_id: str
    model_name: str
    served_model_name: str
    engine: Engine
    nats_url: str
    nats_creds: str | None
    heartbeat_interval_s: float
    agent_port: int
    engine_port: int
    engine_args: tuple[str, ...]
    agent_install: str
    base_dir: str = DEFAULT_BASE_DIR
    generation: int = 0
    # Where the agent and the engine listen: loopback or a private address, never a wildcard.
    bind_host: str = "127.0.0.1"
    # Extra environment for the agent and the engine (e.g. HF_TOKEN, HF_HOME); written to the 0600 env file.
    extra_env: tuple[tuple[str, str], ...] = ()
    # How long the agent may take to answer /healthz after it was launched (not the engine's model load).
    agent_start_timeout_s: int = 120
    # How long a previous agent may take to drain and stop before it is killed.
    agent_stop_timeout_s: int = 60
    # The interpreter that creates the agent's venv (pip installs only).
    python: str = "python3"
    # The key this worker's engine requires on /v1/* (derived per instance, services/runtime/engine_keys.py);
    # written to the 0600 env file as INVENTIV_ENGINE_API_KEY, never to argv. Kept out of repr: specs get printed.
    engine_api_key: str | None = field(default=None, repr=False)
    # The system user the agent and the engine run as when the bootstrap runs as root (created if missing,
    # no login shell, no password); None runs them as the SSH user. A non-root SSH user always runs them itself.
    run_as: str | None = DEFAULT_RUN_AS
    # The agent's log on disk (INVENTIV_LOG_FILE under logs/agent/): rotated at this size, this many old files kept.
    log_file_max_bytes: int = DEFAULT_LOG_FILE_MAX_BYTES
    log_file_backups: int = DEFAULT_LOG_FILE_BACKUPS

    def __post_init__(self) -> None:
        for name in ("instance_id", "org_id"):
            try:
                token(getattr(self, name))
            except UnsafeSubjectToken:
                raise InvalidInstall(f"{name} must be 1-128 of [A-Za-z0-9_-], got {getattr(self, name)!r}") from None
        for name in ("model_name", "served_model_name"):
            value = getattr(self, name)
            if not value or len(value) > 256 or _has_control_or_space(value):
                raise InvalidInstall(f"{name} must be a model id without whitespace or control characters, "
                                     f"got {value!r}")
        if self.served_model_name != self.model_name:
            raise InvalidInstall("served_model_name must equal model_name: the agent serves the engine under the "
                                 f"model name (got {self.served_model_name!r} and {self.model_name!r})")
        if self.engine not in ("vllm", "fake"):
            raise InvalidInstall(f"engine must be vllm or fake, got {self.engine!r}")
        self._check_nats()
        if not 0.05 <= self.heartbeat_interval_s <= 300:
            raise InvalidInstall(f"heartbeat_interval_s must be between 0.05 and 300, got {self.heartbeat_interval_s}")
        for name in ("agent_port", "engine_port"):
            port = getattr(self, name)
            if not isinstance(port, int) or not 1 <= port <= 65535:
                raise InvalidInstall(f"{name} must be a TCP port 1-65535, got {port!r}")
        if self.agent_port == self.engine_port:
            raise InvalidInstall(f"agent_port and engine_port must differ (both {self.agent_port})")
        self._check_engine_args()
        self._check_agent_install()
        base = self.base_dir
        if (not base.startswith("/") or base == "/" or _has_control(base) or posixpath.normpath(base) != base
                or len(base) > 512):
            raise InvalidInstall(f"base_dir must be a normalized absolute path other than /, got {base!r}")
        if not isinstance(self.generation, int) or not 0 <= self.generation < 2**31:
            raise InvalidInstall(f"generation must be an integer >= 0, got {self.generation!r}")
        _check_bind_host(self.bind_host)
        self._check_extra_env()
        if not 1 <= self.agent_start_timeout_s <= 3600 or not 1 <= self.agent_stop_timeout_s <= 3600:
            raise InvalidInstall("agent_start_timeout_s and agent_stop_timeout_s must be 1-3600 seconds")
        if not self.python or _has_control_or_space(self.python) or self.python.startswith("-"):
            raise InvalidInstall(f"python must be an interpreter name or path, got {self.python!r}")
        key = self.engine_api_key
        if key is not None and (not 16 <= len(key) <= 256 or not key.isascii() or not key.isprintable()
                                or _has_control_or_space(key)):
            # The value is a secret: never in the message.
            raise InvalidInstall("engine_api_key must be 16-256 printable ASCII characters without spaces")
        self._check_run_as_and_logs()

    def _check_nats(self) -> None:
        if _has_control_or_space(self.nats_url):
            raise InvalidInstall("nats_url must not contain whitespace or control characters")
        for server in self.nats_url.split(","):
            if not server.startswith(_NATS_SCHEMES):
                raise InvalidInstall(f"nats_url must be nats://, tls://, ws:// or wss:// URL(s), got {server!r}")
        if self.nats_creds is not None:
            # Same check as the agent's preflight, here so a bad file fails before an install starts.
            if "NATS USER JWT" not in self.nats_creds or "USER NKEY SEED" not in self.nats_creds:
                raise InvalidInstall("nats_creds must be the content of a NATS .creds file "
                                     "(a user JWT and an nkey seed)")
            if _has_control(self.nats_creds, allow="\n\r\t"):
                raise InvalidInstall("nats_creds contains control characters")

    def _check_engine_args(self) -> None:
        if isinstance(self.engine_args, str):
            raise InvalidInstall("engine_args must be a tuple of arguments, not one string")
        reserved = RESERVED_FLAGS if self.engine == "vllm" else FAKE_RESERVED_FLAGS
        for arg in self.engine_args:
            if not isinstance(arg, str) or _has_control(arg):
                raise InvalidInstall(f"engine_args must be strings without control characters, got {arg!r}")
            if arg.split("=", 1)[0] in reserved:
                raise InvalidInstall(f"engine argument {arg.split('=', 1)[0]} is set by the agent and may not be given")
            if "0.0.0.0" in arg or arg in ("::", "[::]"):
                raise InvalidInstall(f"engine_args must not name a wildcard address, got {arg!r}")

    def _check_agent_install(self) -> None:
        value = self.agent_install
        if not value or _has_control(value) or len(value) > 1024:
            raise InvalidInstall(f"agent_install must be a pip requirement or preinstalled:<path>, got {value!r}")
        if value.startswith(PREINSTALLED_PREFIX):
            path = self.preinstalled_agent
            if not path or not path.startswith("/") or _has_control_or_space(path):
                raise InvalidInstall(f"preinstalled agent must be an absolute path without spaces, got {path!r}")
        elif value.startswith("-"):
            # It is handed to pip as one argument; an option here would change where pip installs from.
            raise InvalidInstall(f"agent_install must not start with '-' (a pip option), got {value!r}")

    def _check_run_as_and_logs(self) -> None:
        # A user name reaches useradd, setpriv and chown (quoted, but an option-looking or odd name is refused here).
        if self.run_as is not None and (not isinstance(self.run_as, str) or not _USERNAME.match(self.run_as)
                                        or self.run_as.endswith("-")):
            raise InvalidInstall(f"run_as must be a POSIX user name (lowercase letter or _, then [a-z0-9_-], "
                                 f"at most 32) or None, got {self.run_as!r}")
        size = self.log_file_max_bytes
        if not isinstance(size, int) or not LOG_FILE_MIN_BYTES <= size <= LOG_FILE_MAX_BYTES:
            raise InvalidInstall(f"log_file_max_bytes must be {LOG_FILE_MIN_BYTES}-{LOG_FILE_MAX_BYTES}, got {size!r}")
        if not isinstance(self.log_file_backups, int) or not 0 <= self.log_file_backups <= 100:
            raise InvalidInstall(f"log_file_backups must be 0-100, got {self.log_file_backups!r}")

    def _check_extra_env(self) -> None:
        for item in self.extra_env:
            if not (isinstance(item, tuple) and len(item) == 2):
                raise InvalidInstall(f"extra_env must be (name, value) pairs, got {item!r}")
            name, value = item
            if not _ENV_NAME.match(name) or name in _INSTALLER_ENV or name.startswith("INVENTIV_"):
                raise InvalidInstall(f"extra_env name {name!r} is invalid or set by the installer")
            if _has_control(value):
                raise InvalidInstall(f"extra_env value of {name} contains control characters")

    @property
    def preinstalled_agent(self) -> str | None:
        if self.agent_install.startswith(PREINSTALLED_PREFIX):
            return self.agent_install[len(PREINSTALLED_PREFIX):]
        return None

    @property
    def venv_dir(self) -> str:
        return f"{self.base_dir}/venv-{self.generation}"

    @property
    def agent_executable(self) -> str:
        return self.preinstalled_agent or f"{self.venv_dir}/bin/inventiv-agent"

    @property
    def agent_log_budget_bytes(self) -> int:
        """The most the agent's logs take on disk: its rotated file and backups, plus its stderr capture
        (the agent caps it at ``log_file_max_bytes`` per run; the bootstrap keeps the previous run's)."""
        return (self.log_file_backups + 1 + 2) * self.log_file_max_bytes


def _check_bind_host(host: str) -> None:
    try:
        check_bind_host(host)  # the agent's own rule, so the installer never renders what the agent refuses
    except ValueError as exc:
        raise InvalidInstall(f"bind_host: {exc}") from None


@dataclass(frozen=True, slots=True)
class InstallStatus:
    """What the server reports. ``failed`` with ``exit_code`` None: the install was interrupted
    (the runner died without recording an exit code, e.g. a reboot); ``log_tail`` says more."""

    state: InstallState
    phase: str | None
    generation: int | None
    exit_code: int | None
    log_tail: str
