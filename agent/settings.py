"""The agent's configuration: CLI flags over environment variables over defaults, parsed once.

Everything is validated here, before anything starts, so a bad config fails with one line
that names the flag/variable to fix instead of a half-started worker. Checks that need the
machine (is the creds file readable, is a port free, is ``vllm`` installed) live in
``preflight.py``; this module is pure apart from reading ``argv`` and ``env`` it is given.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec

from contracts.subjects import UnsafeSubjectToken, token

Engine = Literal["fake", "vllm"]
LogFormat = Literal["console", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
ENGINES: tuple[str, ...] = ("fake", "vllm")
# vLLM's --dtype choices (``vllm serve --help``).
DTYPES: tuple[str, ...] = ("auto", "half", "float16", "bfloat16", "float", "float32")
_USERINFO = re.compile(r"//[^/@]*@")
# Smallest rotation size: a file holds at least one event (larger ones are replaced by a short record).
LOG_FILE_MIN_BYTES = 4096


class ConfigError(Exception):
    """A configuration the agent refuses to start with. The message is the one line shown to the operator."""


class AgentSettings(msgspec.Struct, frozen=True, kw_only=True):
    instance_id: str
    org_id: str
    # The served model name: what clients and the proxy ask for, and what heartbeats report.
    model: str
    # What vLLM loads (a Hugging Face repo id or a local directory); defaults to ``model``.
    model_source: str | None = None
    engine: Engine = "vllm"
    nats_url: str = "nats://127.0.0.1:4222"
    # The worker's NATS identity, read from a file (reliability.md §4.7); at most one of the two.
    # A .creds file (user JWT + nkey seed, decentralised auth) or a bare nkey seed (server-config users).
    nats_creds_file: str | None = None
    nats_nkey_seed_file: str | None = None
    engine_port: int = 8000
    agent_port: int = 8080
    # Where both the engine and the agent listen. Never a wildcard: vLLM has unauthenticated routes
    # (reliability.md §4.3), and the original exposed vLLM and the agent on 0.0.0.0 (original-system.md §14.2).
    bind_host: str = "127.0.0.1"
    heartbeat_interval_s: float = 4.0
    fake_tokens_per_s: float = 0.0
    log_format: LogFormat = "console"
    log_level: LogLevel = "info"
    max_restarts: int = 5
    restart_backoff_s: float = 1.0
    # Per probe of the engine's /v1/models and /metrics; three failures in a row make a ready worker unhealthy.
    probe_timeout_s: float = 5.0
    drain_timeout_s: float = 30.0
    stop_grace_s: float = 10.0
    # Requests running and no generation token for this long -> unhealthy/stalled; 0 = never (progress.py).
    stall_after_s: float = 60.0
    vllm_bin: str = "vllm"
    # vLLM's own knobs; None leaves vLLM's default.
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    dtype: str | None = None
    vllm_args: tuple[str, ...] = ()
    # Extra flags for the fake engine (tests script its metrics and hangs with these).
    fake_args: tuple[str, ...] = ()
    # Structured events are also appended here as JSON lines, rotated by size; None = stderr only.
    log_file: str | None = None
    log_file_max_bytes: int = 10 * 1024 * 1024
    log_file_backups: int = 5
    # Only events at or above this level reach stderr (None: every event logged); the file keeps them all.
    log_stderr_level: LogLevel | None = None
    # Optional shared key the engine requires on /v1/* (defence in depth); handed to the engine by env, never argv.
    engine_api_key: str | None = None

    def redacted(self) -> dict:
        """The settings as a dict safe to log: no API key, no password inside the NATS URL."""
        out = msgspec.structs.asdict(self)
        if out["engine_api_key"]:
            out["engine_api_key"] = "***"
        out["nats_url"] = _USERINFO.sub("//***@", self.nats_url)
        return out


# (flag, env var, field, parser). Parsers turn a raw string into the field's value or raise ValueError.
def _str(raw: str) -> str:
    return raw.strip()


def _int(raw: str) -> int:
    return int(raw.strip())


def _float(raw: str) -> float:
    value = float(raw.strip())
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("not a finite number")
    return value


def _args(raw: str) -> tuple[str, ...]:
    return tuple(shlex.split(raw))


_OPTIONS: tuple[tuple[str, str, str, object], ...] = (
    ("--instance-id", "INVENTIV_INSTANCE_ID", "instance_id", _str),
    ("--org-id", "INVENTIV_ORG_ID", "org_id", _str),
    ("--model", "INVENTIV_MODEL", "model", _str),
    ("--model-source", "INVENTIV_MODEL_SOURCE", "model_source", _str),
    ("--engine", "INVENTIV_ENGINE", "engine", _str),
    ("--nats-url", "NATS_URL", "nats_url", _str),
    ("--nats-creds-file", "INVENTIV_NATS_CREDS_FILE", "nats_creds_file", _str),
    ("--nats-nkey-seed-file", "INVENTIV_NATS_NKEY_SEED_FILE", "nats_nkey_seed_file", _str),
    ("--engine-port", "INVENTIV_ENGINE_PORT", "engine_port", _int),
    ("--agent-port", "INVENTIV_AGENT_PORT", "agent_port", _int),
    ("--bind-host", "INVENTIV_BIND_HOST", "bind_host", _str),
    ("--heartbeat-interval-s", "INVENTIV_HEARTBEAT_INTERVAL_S", "heartbeat_interval_s", _float),
    ("--fake-tokens-per-s", "INVENTIV_FAKE_TOKENS_PER_S", "fake_tokens_per_s", _float),
    ("--log-format", "INVENTIV_LOG_FORMAT", "log_format", _str),
    ("--log-level", "INVENTIV_LOG_LEVEL", "log_level", lambda raw: raw.strip().lower()),
    ("--max-restarts", "INVENTIV_ENGINE_MAX_RESTARTS", "max_restarts", _int),
    ("--restart-backoff-s", "INVENTIV_ENGINE_RESTART_BACKOFF_S", "restart_backoff_s", _float),
    ("--probe-timeout-s", "INVENTIV_ENGINE_PROBE_TIMEOUT_S", "probe_timeout_s", _float),
    ("--drain-timeout-s", "INVENTIV_DRAIN_TIMEOUT_S", "drain_timeout_s", _float),
    ("--stop-grace-s", "INVENTIV_ENGINE_STOP_GRACE_S", "stop_grace_s", _float),
    ("--stall-after-s", "INVENTIV_STALL_AFTER_S", "stall_after_s", _float),
    ("--vllm-bin", "INVENTIV_VLLM_BIN", "vllm_bin", _str),
    ("--tensor-parallel-size", "INVENTIV_TENSOR_PARALLEL_SIZE", "tensor_parallel_size", _int),
    ("--gpu-memory-utilization", "INVENTIV_GPU_MEMORY_UTILIZATION", "gpu_memory_utilization", _float),
    ("--max-model-len", "INVENTIV_MAX_MODEL_LEN", "max_model_len", _int),
    ("--dtype", "INVENTIV_DTYPE", "dtype", _str),
    ("--vllm-args", "INVENTIV_VLLM_ARGS", "vllm_args", _args),
    ("--fake-args", "INVENTIV_FAKE_ARGS", "fake_args", _args),
    ("--log-file", "INVENTIV_LOG_FILE", "log_file", _str),
    ("--log-file-max-bytes", "INVENTIV_LOG_FILE_MAX_BYTES", "log_file_max_bytes", _int),
    ("--log-file-backups", "INVENTIV_LOG_FILE_BACKUPS", "log_file_backups", _int),
    ("--log-stderr-level", "INVENTIV_LOG_STDERR_LEVEL", "log_stderr_level", lambda raw: raw.strip().lower()),
    ("--engine-api-key", "INVENTIV_ENGINE_API_KEY", "engine_api_key", _str),
)


class _Parser(argparse.ArgumentParser):
    # argparse prints usage plus an error and exits 2; we want our one-line ConfigError instead.
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="inventiv-agent",
        description="Inventiv worker agent: supervises the inference engine and heartbeats over NATS. "
        "Every flag can also be set by the environment variable shown.",
        argument_default=None,
    )
    for flag, env, field, _ in _OPTIONS:
        parser.add_argument(flag, dest=field, metavar=env, help=f"env {env}")
    return parser


def parse_settings(argv: Sequence[str], env: Mapping[str, str]) -> AgentSettings:
    """Flags win over environment variables, which win over defaults. Raises ConfigError."""
    flags = vars(_build_parser().parse_args(list(argv)))
    values: dict[str, object] = {}
    for flag, env_name, field, parse in _OPTIONS:
        raw = flags.get(field)
        source = flag
        if raw is None:
            raw = env.get(env_name)
            source = env_name
        if raw is None or raw.strip() == "":
            continue
        try:
            values[field] = parse(raw)  # type: ignore[operator]
        except ValueError as exc:
            raise ConfigError(f"{source}={raw!r} is invalid: {exc}") from None
    return validate(values)


def validate(values: dict[str, object]) -> AgentSettings:
    ids = (("instance_id", "--instance-id / INVENTIV_INSTANCE_ID"), ("org_id", "--org-id / INVENTIV_ORG_ID"))
    for field, where in (*ids, ("model", "--model / INVENTIV_MODEL")):
        if not values.get(field):
            raise ConfigError(f"{where} is required")
    for field, where in ids:
        try:
            token(values[field])  # type: ignore[arg-type]
        except UnsafeSubjectToken:
            raise ConfigError(f"{where} must be 1-128 of [A-Za-z0-9_-] (it becomes a NATS subject token), "
                              f"got {values[field]!r}") from None
    for field, where in (("model", "--model / INVENTIV_MODEL"), ("model_source", "--model-source / INVENTIV_MODEL_SOURCE")):
        name = values.get(field)
        if isinstance(name, str) and (len(name) > 256 or any(ch.isspace() or ord(ch) < 32 for ch in name)):
            raise ConfigError(f"{where} must be a model id without whitespace, got {name!r}")
    if values.get("nats_creds_file") and values.get("nats_nkey_seed_file"):
        raise ConfigError("--nats-creds-file and --nats-nkey-seed-file are exclusive: a worker has one identity")
    dtype = values.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise ConfigError(f"--dtype / INVENTIV_DTYPE must be one of {', '.join(DTYPES)}, got {dtype!r}")
    engine = values.get("engine", "vllm")
    if engine not in ENGINES:
        raise ConfigError(f"--engine / INVENTIV_ENGINE must be one of {', '.join(ENGINES)}, got {engine!r}")
    # JSON for machines when asked for, readable console lines otherwise.
    values["log_format"] = "json" if str(values.get("log_format", "")).lower() == "json" else "console"
    level = values.get("log_level", "info")
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"--log-level / INVENTIV_LOG_LEVEL must be debug, info, warning or error, got {level!r}")
    stderr_level = values.get("log_stderr_level")
    if stderr_level is not None and stderr_level not in ("debug", "info", "warning", "error"):
        raise ConfigError("--log-stderr-level / INVENTIV_LOG_STDERR_LEVEL must be debug, info, warning or error, "
                          f"got {stderr_level!r}")
    _check_bind_host(values.get("bind_host", "127.0.0.1"))  # type: ignore[arg-type]
    nats_url = values.get("nats_url", "nats://127.0.0.1:4222")
    assert isinstance(nats_url, str)
    for server in nats_url.split(","):
        if not server.strip().startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ConfigError(f"--nats-url / NATS_URL must be nats://, tls://, ws:// or wss:// URL(s), got {server!r}")
    try:
        settings = msgspec.convert(values, AgentSettings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid setting: {exc}") from None
    for flag, port in (("--engine-port / INVENTIV_ENGINE_PORT", settings.engine_port),
                       ("--agent-port / INVENTIV_AGENT_PORT", settings.agent_port)):
        if not 1 <= port <= 65535:
            raise ConfigError(f"{flag} must be a TCP port 1-65535, got {port}")
    if settings.engine_port == settings.agent_port:
        raise ConfigError(f"--engine-port and --agent-port must differ (both {settings.engine_port})")
    _check_ranges(settings)
    return settings


def _check_bind_host(host: str) -> None:
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"--bind-host / INVENTIV_BIND_HOST must be an IP address or localhost, "
                          f"got {host!r}") from None
    if address.is_unspecified:
        raise ConfigError(f"--bind-host / INVENTIV_BIND_HOST must not be a wildcard ({host}): bind to loopback "
                          "or the private interface, the engine has unauthenticated routes")


def _check_ranges(s: AgentSettings) -> None:
    checks = (
        (0.05 <= s.heartbeat_interval_s <= 300, "--heartbeat-interval-s must be between 0.05 and 300"),
        (s.fake_tokens_per_s >= 0, "--fake-tokens-per-s must be >= 0 (0 = no delay)"),
        (0 <= s.max_restarts <= 1000, "--max-restarts must be between 0 and 1000"),
        (0 <= s.restart_backoff_s <= 600, "--restart-backoff-s must be between 0 and 600"),
        (0.05 <= s.probe_timeout_s <= 300, "--probe-timeout-s must be between 0.05 and 300"),
        (0 <= s.drain_timeout_s <= 3600, "--drain-timeout-s must be between 0 and 3600"),
        (0 <= s.stop_grace_s <= 600, "--stop-grace-s must be between 0 and 600"),
        (0 <= s.stall_after_s <= 86400, "--stall-after-s must be between 0 (off) and 86400"),
        (bool(s.vllm_bin), "--vllm-bin must not be empty"),
        (1 <= s.tensor_parallel_size <= 64, "--tensor-parallel-size must be between 1 and 64"),
        (s.gpu_memory_utilization is None or 0 < s.gpu_memory_utilization <= 1,
         "--gpu-memory-utilization must be in (0, 1]"),
        (s.max_model_len is None or s.max_model_len >= 1, "--max-model-len must be >= 1"),
        (s.log_file_max_bytes >= LOG_FILE_MIN_BYTES, f"--log-file-max-bytes must be at least {LOG_FILE_MIN_BYTES}"),
        (0 <= s.log_file_backups <= 100, "--log-file-backups must be between 0 and 100"),
    )
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
