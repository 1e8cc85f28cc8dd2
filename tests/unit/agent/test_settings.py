"""Settings: flags over env over defaults; every bad value is one ConfigError naming what to fix."""

from __future__ import annotations

import msgspec
import pytest

from agent.settings import AgentSettings, ConfigError, parse_settings

ENV = {"INVENTIV_INSTANCE_ID": "inst-1", "INVENTIV_ORG_ID": "org-1", "INVENTIV_MODEL": "mock-echo-model"}


def test_defaults_from_a_minimal_environment():
    s = parse_settings([], ENV)
    assert (s.instance_id, s.org_id, s.model) == ("inst-1", "org-1", "mock-echo-model")
    assert s.engine == "vllm" and s.bind_host == "127.0.0.1"
    assert (s.engine_port, s.agent_port, s.heartbeat_interval_s) == (8000, 8080, 4.0)
    assert s.nats_url == "nats://127.0.0.1:4222" and s.nats_creds_file is None and s.nats_nkey_seed_file is None
    assert s.stall_after_s == 60.0 and s.model_source is None and s.tensor_parallel_size == 1
    assert (s.gpu_memory_utilization, s.max_model_len, s.dtype, s.log_file) == (None, None, None, None)


def test_environment_variables_are_read():
    env = dict(ENV, INVENTIV_ENGINE="fake", NATS_URL="nats://10.0.0.1:4222", INVENTIV_NATS_CREDS_FILE="/etc/w.creds",
               INVENTIV_ENGINE_PORT="9000", INVENTIV_AGENT_PORT="9001", INVENTIV_BIND_HOST="10.0.0.5",
               INVENTIV_HEARTBEAT_INTERVAL_S="2.5", INVENTIV_FAKE_TOKENS_PER_S="100",
               INVENTIV_VLLM_ARGS="--max-model-len 4096 --enforce-eager", INVENTIV_LOG_FORMAT="json")
    s = parse_settings([], env)
    assert s.engine == "fake" and s.nats_url == "nats://10.0.0.1:4222" and s.nats_creds_file == "/etc/w.creds"
    assert (s.engine_port, s.agent_port, s.bind_host) == (9000, 9001, "10.0.0.5")
    assert s.heartbeat_interval_s == 2.5 and s.fake_tokens_per_s == 100.0 and s.log_format == "json"
    assert s.vllm_args == ("--max-model-len", "4096", "--enforce-eager")


def test_vllm_knobs_identity_and_stall_settings_are_read():
    env = dict(ENV, INVENTIV_NATS_NKEY_SEED_FILE="/etc/inventiv/nats.nk", INVENTIV_STALL_AFTER_S="0",
               INVENTIV_MODEL_SOURCE="/srv/models/tiny", INVENTIV_TENSOR_PARALLEL_SIZE="2",
               INVENTIV_GPU_MEMORY_UTILIZATION="0.85", INVENTIV_MAX_MODEL_LEN="8192", INVENTIV_DTYPE="bfloat16",
               INVENTIV_FAKE_ARGS="--control-routes --shutdown-timeout-s 0", INVENTIV_LOG_FILE="/var/log/a.jsonl")
    s = parse_settings([], env)
    assert s.nats_nkey_seed_file == "/etc/inventiv/nats.nk" and s.stall_after_s == 0.0
    assert (s.model_source, s.tensor_parallel_size, s.gpu_memory_utilization, s.max_model_len, s.dtype) == (
        "/srv/models/tiny", 2, 0.85, 8192, "bfloat16")
    assert s.fake_args == ("--control-routes", "--shutdown-timeout-s", "0") and s.log_file == "/var/log/a.jsonl"


def test_flags_win_over_the_environment():
    s = parse_settings(["--engine", "fake", "--model", "m2", "--agent-port", "7000"], dict(ENV, INVENTIV_ENGINE="vllm"))
    assert (s.engine, s.model, s.agent_port) == ("fake", "m2", 7000)


def test_log_format_is_json_only_when_asked_for():
    assert parse_settings([], dict(ENV, INVENTIV_LOG_FORMAT="JSON")).log_format == "json"
    assert parse_settings(["--log-format", "text"], ENV).log_format == "console"
    assert parse_settings([], dict(ENV, INVENTIV_LOG_LEVEL="WARNING")).log_level == "warning"


def test_settings_are_frozen_and_redacted_for_logs():
    s = parse_settings(["--engine-api-key", "k"], ENV)
    with pytest.raises(AttributeError):
        s.model = "x"  # type: ignore[misc]
    assert s.redacted()["engine_api_key"] == "***"
    with_password = parse_settings(["--nats-url", "nats://worker:hunter2@10.0.0.1:4222"], ENV)
    assert "hunter2" not in str(with_password.redacted()) and with_password.nats_url.endswith("@10.0.0.1:4222")
    assert isinstance(s, AgentSettings) and msgspec.structs.asdict(s)["engine_api_key"] == "k"


@pytest.mark.parametrize(("argv", "env", "needle"), [
    ([], {k: v for k, v in ENV.items() if k != "INVENTIV_MODEL"}, "INVENTIV_MODEL"),
    ([], {k: v for k, v in ENV.items() if k != "INVENTIV_INSTANCE_ID"}, "INVENTIV_INSTANCE_ID"),
    ([], {k: v for k, v in ENV.items() if k != "INVENTIV_ORG_ID"}, "INVENTIV_ORG_ID"),
    (["--instance-id", "a.b"], ENV, "NATS subject token"),
    (["--org-id", "*"], ENV, "NATS subject token"),
    (["--engine", "tgi"], ENV, "must be one of fake, vllm"),
    (["--engine-port", "eighty"], ENV, "--engine-port"),
    (["--agent-port", "70000"], ENV, "TCP port"),
    (["--agent-port", "8000"], ENV, "must differ"),
    (["--bind-host", "0.0.0.0"], ENV, "wildcard"),
    (["--bind-host", "::"], ENV, "wildcard"),
    (["--bind-host", "my-host"], ENV, "IP address"),
    (["--nats-url", "http://x"], ENV, "nats://"),
    (["--heartbeat-interval-s", "0"], ENV, "heartbeat"),
    (["--heartbeat-interval-s", "nan"], ENV, "heartbeat"),
    (["--fake-tokens-per-s", "-1"], ENV, "fake-tokens-per-s"),
    (["--probe-timeout-s", "0"], ENV, "probe-timeout"),
    (["--log-level", "loud"], ENV, "INVENTIV_LOG_LEVEL"),
    (["--model", "has space"], ENV, "without whitespace"),
    (["--no-such-flag"], ENV, "unrecognized"),
    ([], dict(ENV, INVENTIV_ENGINE_PORT="x"), "INVENTIV_ENGINE_PORT"),
    (["--nats-creds-file", "/a", "--nats-nkey-seed-file", "/b"], ENV, "exclusive"),
    (["--stall-after-s", "-1"], ENV, "--stall-after-s"),
    (["--dtype", "fp7"], ENV, "INVENTIV_DTYPE"),
    (["--tensor-parallel-size", "0"], ENV, "--tensor-parallel-size"),
    (["--gpu-memory-utilization", "1.5"], ENV, "--gpu-memory-utilization"),
    (["--max-model-len", "0"], ENV, "--max-model-len"),
    (["--model-source", "/my models/x"], ENV, "INVENTIV_MODEL_SOURCE"),
    (["--log-file-max-bytes", "10"], ENV, "--log-file-max-bytes"),
])
def test_bad_config_is_one_clear_line(argv, env, needle):
    with pytest.raises(ConfigError) as info:
        parse_settings(argv, env)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
