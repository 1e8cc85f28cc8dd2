"""The engine's command line and environment, built by pure functions so tests can pin them.

The agent owns ``--host``/``--port`` (and the API key): extra vLLM arguments may not override
them, so a typo in ``INVENTIV_VLLM_ARGS`` can never expose the engine on a public interface.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import msgspec

from .settings import AgentSettings

# Flags the agent sets itself; extra args must not repeat them (one source of truth per knob,
# and nothing can move the engine off the private address).
RESERVED_FLAGS = ("--host", "--port", "--api-key", "--served-model-name", "--tensor-parallel-size", "-tp",
                  "--gpu-memory-utilization", "--max-model-len", "--dtype")
FAKE_RESERVED_FLAGS = ("--host", "--port", "--model", "--api-key", "--exit-on-stdin-eof", "--tokens-per-s")


class EngineCommand(msgspec.Struct, frozen=True, kw_only=True):
    argv: tuple[str, ...]
    # Added on top of the agent's own environment.
    env: dict[str, str] = {}
    # Working directory of the engine; None = the agent's.
    cwd: str | None = None


# The directory holding the ``agent`` package: the fake engine runs from there, so
# ``python -m agent.engines.fake_server`` resolves whatever the agent's own working directory is.
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


def engine_base_url(host: str, port: int) -> str:
    """``http://host:port`` with IPv6 literals bracketed."""
    if ":" in host:
        return f"http://[{host}]:{port}"
    return f"http://{host}:{port}"


def check_bind_host(host: str) -> None:
    """Loopback or a specific address, never a wildcard: the engine has unauthenticated routes."""
    if host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"engine bind address must be an IP literal or localhost, got {host!r}") from None
    if address.is_unspecified:
        raise ValueError(f"refusing to bind the engine to a wildcard address ({host})")


def _check_extra(args: tuple[str, ...], reserved: tuple[str, ...] = RESERVED_FLAGS) -> None:
    for arg in args:
        name = arg.split("=", 1)[0]
        if name in reserved:
            raise ValueError(f"extra engine argument {name} is set by the agent and may not be overridden")


def _vllm_knobs(settings: AgentSettings) -> tuple[str, ...]:
    knobs = ["--tensor-parallel-size", str(settings.tensor_parallel_size)]
    if settings.gpu_memory_utilization is not None:
        knobs += ["--gpu-memory-utilization", repr(settings.gpu_memory_utilization)]
    if settings.max_model_len is not None:
        knobs += ["--max-model-len", str(settings.max_model_len)]
    if settings.dtype is not None:
        knobs += ["--dtype", settings.dtype]
    return tuple(knobs)


def vllm_command(settings: AgentSettings) -> EngineCommand:
    check_bind_host(settings.bind_host)
    _check_extra(settings.vllm_args)
    argv = (
        settings.vllm_bin, "serve", settings.model_source or settings.model,
        "--host", settings.bind_host,
        "--port", str(settings.engine_port),
        # The name clients and the proxy use; pinned so a local path or revision never leaks into routing.
        "--served-model-name", settings.model,
        *_vllm_knobs(settings),
        *settings.vllm_args,
    )
    env = {
        # vLLM reports usage statistics to its authors by default; a customer's worker should not phone home.
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if settings.engine_api_key:
        # By env rather than --api-key so the key does not show up in `ps`.
        env["VLLM_API_KEY"] = settings.engine_api_key
    return EngineCommand(argv=argv, env=env)


def fake_command(settings: AgentSettings, python: str) -> EngineCommand:
    check_bind_host(settings.bind_host)
    _check_extra(settings.fake_args, FAKE_RESERVED_FLAGS)
    argv = (
        python, "-m", "agent.engines.fake_server",
        "--host", settings.bind_host,
        "--port", str(settings.engine_port),
        "--model", settings.model,
        "--tokens-per-s", repr(float(settings.fake_tokens_per_s)),
        # The fake engine exits when the agent's end of its stdin closes, so it cannot outlive
        # the agent even when the agent is SIGKILLed.
        "--exit-on-stdin-eof",
        *settings.fake_args,
    )
    env = {"PYTHONUNBUFFERED": "1"}
    if settings.engine_api_key:
        env["VLLM_API_KEY"] = settings.engine_api_key
    return EngineCommand(argv=argv, env=env, cwd=PACKAGE_ROOT)


def engine_command(settings: AgentSettings, python: str) -> EngineCommand:
    if settings.engine == "fake":
        return fake_command(settings, python)
    return vllm_command(settings)
