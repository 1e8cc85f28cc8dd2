"""The engine command lines are pinned: host/port come from the agent, never from extra args."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.engine_command import engine_base_url, engine_command, fake_command, vllm_command
from agent.settings import AgentSettings


def _settings(**overrides) -> AgentSettings:
    base = dict(instance_id="i-1", org_id="o-1", model="Qwen/Qwen2.5-0.5B-Instruct", engine="vllm",
                engine_port=8000, agent_port=8080)
    base.update(overrides)
    return AgentSettings(**base)


def test_vllm_command_line():
    cmd = vllm_command(_settings(vllm_args=("--enforce-eager", "--max-num-seqs=64")))
    assert cmd.argv == (
        "vllm", "serve", "Qwen/Qwen2.5-0.5B-Instruct",
        "--host", "127.0.0.1", "--port", "8000",
        "--served-model-name", "Qwen/Qwen2.5-0.5B-Instruct",
        "--tensor-parallel-size", "1",
        "--enforce-eager", "--max-num-seqs=64",
    )
    assert cmd.env["VLLM_NO_USAGE_STATS"] == "1"
    assert "VLLM_API_KEY" not in cmd.env


def test_vllm_knobs_and_a_local_model_source():
    cmd = vllm_command(_settings(model="tiny", model_source="/srv/models/tiny", tensor_parallel_size=4,
                                 gpu_memory_utilization=0.85, max_model_len=8192, dtype="bfloat16"))
    assert cmd.argv == (
        "vllm", "serve", "/srv/models/tiny",
        "--host", "127.0.0.1", "--port", "8000",
        "--served-model-name", "tiny",
        "--tensor-parallel-size", "4", "--gpu-memory-utilization", "0.85", "--max-model-len", "8192",
        "--dtype", "bfloat16",
    )


def test_the_api_key_goes_by_environment_not_argv():
    cmd = vllm_command(_settings(engine_api_key="s3cret"))
    assert cmd.env["VLLM_API_KEY"] == "s3cret"
    assert not any("s3cret" in a for a in cmd.argv)


def test_a_private_interface_is_used_as_given():
    cmd = vllm_command(_settings(bind_host="10.0.0.7", vllm_bin="/opt/venv/bin/vllm"))
    assert cmd.argv[:2] == ("/opt/venv/bin/vllm", "serve")
    assert cmd.argv[cmd.argv.index("--host") + 1] == "10.0.0.7"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "0:0:0:0:0:0:0:0", "example.com", ""])
def test_wildcard_or_non_literal_hosts_are_refused(host):
    with pytest.raises(ValueError):
        vllm_command(_settings(bind_host=host))
    with pytest.raises(ValueError):
        fake_command(_settings(bind_host=host), "python")


@pytest.mark.parametrize("extra", [("--host", "0.0.0.0"), ("--host=0.0.0.0",), ("--port", "1"),
                                   ("--api-key", "x"), ("--served-model-name=other",), ("-tp", "2"),
                                   ("--max-model-len=4096",), ("--dtype", "half")])
def test_extra_args_may_not_override_what_the_agent_owns(extra):
    with pytest.raises(ValueError):
        vllm_command(_settings(vllm_args=extra))


@pytest.mark.parametrize("extra", [("--host", "0.0.0.0"), ("--port=1",), ("--model", "other")])
def test_fake_extra_args_may_not_override_what_the_agent_owns(extra):
    with pytest.raises(ValueError):
        fake_command(_settings(engine="fake", fake_args=extra), "python")


def test_fake_command_line():
    cmd = engine_command(_settings(engine="fake", model="mock-echo-model", fake_tokens_per_s=50), "/py")
    assert cmd.argv == ("/py", "-m", "agent.engines.fake_server", "--host", "127.0.0.1", "--port", "8000",
                        "--model", "mock-echo-model", "--tokens-per-s", "50.0", "--exit-on-stdin-eof")
    scripted = fake_command(_settings(engine="fake", model="m", fake_args=("--control-routes",)), "/py")
    assert scripted.argv[-1] == "--control-routes"
    # Runs from the directory holding the agent package, so `-m` resolves from any working directory.
    assert (Path(cmd.cwd) / "agent" / "engines" / "fake_server.py").is_file()


def test_base_url_brackets_ipv6():
    assert engine_base_url("127.0.0.1", 8000) == "http://127.0.0.1:8000"
    assert engine_base_url("::1", 8000) == "http://[::1]:8000"
