"""Render the worker bootstrap (pure): a header of shell-quoted values + the static ``bootstrap.sh`` body.

No value from a spec is ever spliced into shell code: each one becomes ``NAME=<shlex.quote(value)>``
in the header and the body only expands ``"$NAME"``. The agent's environment is rendered the same
way into an env file the agent's shell sources (``set -a; . file``).
"""

from __future__ import annotations

import posixpath
import shlex
from functools import lru_cache
from pathlib import Path

from .model import WorkerSpec

# The environment variable every process of one install carries (agent and, by inheritance, the
# engine): how the bootstrap finds a previous worker's processes without trusting a pid alone.
MARKER_ENV = "INVENTIV_WORKER_HOME"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CREDS_FILE_NAME = "etc/nats.creds"
# The agent's own directory under logs/ (bootstrap.sh: AGENT_LOG_DIR), owned by the user it runs as:
# its rotating event log (INVENTIV_LOG_FILE) and the capture of its stderr live there.
AGENT_LOG_DIR_NAME = "logs/agent"
AGENT_LOG_FILE_NAME = f"{AGENT_LOG_DIR_NAME}/agent.log"


@lru_cache(maxsize=1)
def _body() -> str:
    return (Path(__file__).parent / "bootstrap.sh").read_text()


def render_env_file(spec: WorkerSpec) -> str:
    """The agent's environment as ``NAME='value'`` lines (see agent/settings.py for the names)."""
    args_name = "INVENTIV_VLLM_ARGS" if spec.engine == "vllm" else "INVENTIV_FAKE_ARGS"
    env: list[tuple[str, str]] = [
        (MARKER_ENV, spec.base_dir),
        ("INVENTIV_INSTALL_GENERATION", str(spec.generation)),
        ("INVENTIV_INSTANCE_ID", spec.instance_id),
        ("INVENTIV_ORG_ID", spec.org_id),
        ("INVENTIV_MODEL", spec.model_name),
        ("INVENTIV_ENGINE", spec.engine),
        ("NATS_URL", spec.nats_url),
        ("INVENTIV_HEARTBEAT_INTERVAL_S", repr(float(spec.heartbeat_interval_s))),
        ("INVENTIV_AGENT_PORT", str(spec.agent_port)),
        ("INVENTIV_ENGINE_PORT", str(spec.engine_port)),
        # Always explicit, never the agent's default: the engine is never bound to a wildcard.
        ("INVENTIV_BIND_HOST", spec.bind_host),
        ("INVENTIV_LOG_FORMAT", "json"),
        # Everything goes to the file the agent rotates itself; its stderr (captured by the bootstrap) keeps only
        # warnings and errors, capped per run: the worker's logs stay within spec.agent_log_budget_bytes.
        ("INVENTIV_LOG_FILE", f"{spec.base_dir}/{AGENT_LOG_FILE_NAME}"),
        ("INVENTIV_LOG_FILE_MAX_BYTES", str(spec.log_file_max_bytes)),
        ("INVENTIV_LOG_FILE_BACKUPS", str(spec.log_file_backups)),
        ("INVENTIV_LOG_STDERR_LEVEL", "warning"),
        # The agent's own bin directory first, so ``vllm`` from the same venv is found.
        ("PATH", f"{posixpath.dirname(spec.agent_executable)}:{SYSTEM_PATH}"),
    ]
    if spec.nats_creds is not None:
        env.append(("INVENTIV_NATS_CREDS_FILE", f"{spec.base_dir}/{CREDS_FILE_NAME}"))
    if spec.engine_api_key is not None:
        # The agent hands it to the engine by environment (VLLM_API_KEY): it never reaches a command line.
        env.append(("INVENTIV_ENGINE_API_KEY", spec.engine_api_key))
    if spec.engine_args:
        env.append((args_name, shlex.join(spec.engine_args)))
    env.extend(spec.extra_env)
    return "".join(f"{name}={shlex.quote(value)}\n" for name, value in env)


def render_bootstrap(spec: WorkerSpec) -> str:
    """The whole script, run as ``bash <file> launch`` (see render_launch_command)."""
    values: list[tuple[str, str]] = [
        ("BASE_DIR", spec.base_dir),
        ("GENERATION", str(spec.generation)),
        ("INSTANCE_ID", spec.instance_id),
        ("MODEL_NAME", spec.model_name),
        ("ENGINE", spec.engine),
        ("BIND_HOST", spec.bind_host),
        ("AGENT_PORT", str(spec.agent_port)),
        ("AGENT_START_TIMEOUT_S", str(spec.agent_start_timeout_s)),
        ("AGENT_STOP_TIMEOUT_S", str(spec.agent_stop_timeout_s)),
        ("PREINSTALLED_AGENT", spec.preinstalled_agent or ""),
        ("AGENT_REQUIREMENT", "" if spec.preinstalled_agent else spec.agent_install),
        ("PYTHON", spec.python),
        ("RUN_AS", spec.run_as or ""),
        ("VENV_DIR", spec.venv_dir),
        ("AGENT_BIN", spec.agent_executable),
        ("MARKER", f"{MARKER_ENV}={spec.base_dir}"),
        ("AGENT_ENV", render_env_file(spec)),
        ("NATS_CREDS", spec.nats_creds or ""),
    ]
    header = [
        "#!/usr/bin/env bash",
        f"# Inventiv worker bootstrap: instance {spec.instance_id}, generation {spec.generation}.",
        "# Rendered by services/orchestrator/install/script.py; holds secrets: never log or keep it.",
        "set -euo pipefail",
        "umask 077",
        *(f"{name}={shlex.quote(value)}" for name, value in values),
        "readonly " + " ".join(name for name, _ in values),
        "",
    ]
    return "\n".join(header) + _body()


def render_launch_command(base_dir: str) -> str:
    """The SSH exec command (POSIX sh): store the script from stdin in a private file, run its launcher.

    The file is unique per call (two concurrent starts never share one) and 0600 (umask); the detached
    run deletes it once it has read it, since it holds the NATS credentials.
    """
    state = shlex.quote(f"{base_dir}/state")
    return (
        f"umask 077 && mkdir -p -- {state} && f=$(mktemp {state}/bootstrap.XXXXXXXX) "
        '&& cat > "$f" && exec bash "$f" launch'
    )
