"""SshTarget / WorkerSpec validation: what the installer refuses before anything reaches a server."""

from __future__ import annotations

import dataclasses

import pytest

from services.orchestrator.install.model import InvalidInstall, SshTarget, WorkerSpec, normalize_fingerprint

FP = "SHA256:" + "n6fQ" * 10 + "abc"
CREDS = "-----BEGIN NATS USER JWT-----\nabc\n------END NATS USER JWT------\n" \
        "-----BEGIN USER NKEY SEED-----\nSUA\n------END USER NKEY SEED------\n"


def spec(**changes) -> WorkerSpec:
    base = WorkerSpec(
        instance_id="inst-1", org_id="org-1", model_name="Qwen/Qwen2.5-0.5B-Instruct",
        served_model_name="Qwen/Qwen2.5-0.5B-Instruct", engine="vllm", nats_url="nats://10.0.0.2:4222",
        nats_creds=CREDS, heartbeat_interval_s=4.0, agent_port=8080, engine_port=8000,
        engine_args=("--enforce-eager",), agent_install="inventiv[agent,gpu]==0.1.0",
    )
    return dataclasses.replace(base, **changes)


def test_a_valid_spec_is_accepted_with_its_defaults():
    s = spec()
    assert (s.base_dir, s.generation, s.bind_host) == ("/opt/inventiv", 0, "127.0.0.1")
    assert s.agent_executable == "/opt/inventiv/venv-0/bin/inventiv-agent"
    assert spec(agent_install="preinstalled:/usr/local/bin/inventiv-agent").agent_executable == \
        "/usr/local/bin/inventiv-agent"


@pytest.mark.parametrize("changes", [
    {"instance_id": "a.b"}, {"instance_id": "*"}, {"org_id": ""}, {"org_id": "o rg"},
    {"model_name": "two words", "served_model_name": "two words"},
    {"model_name": "line\nbreak", "served_model_name": "line\nbreak"},
    {"model_name": "tab\tin", "served_model_name": "tab\tin"},
    {"model_name": "", "served_model_name": ""},
    {"served_model_name": "another-name"},
    {"engine": "docker"},
    {"nats_url": "http://x:4222"}, {"nats_url": "nats://a:1,redis://b"}, {"nats_url": "nats://a b"},
    {"nats_creds": "not a creds file"}, {"nats_creds": CREDS + "\x00"},
    {"heartbeat_interval_s": 0.0}, {"heartbeat_interval_s": 1000.0},
    {"agent_port": 0}, {"engine_port": 70000}, {"agent_port": 8000},
    {"engine_args": "--max-model-len 4096"},
    {"engine_args": ("--host", "0.0.0.0")}, {"engine_args": ("--port=1",)}, {"engine_args": ("--api-key", "k")},
    {"engine_args": ("--foo=0.0.0.0",)}, {"engine_args": ("a\nb",)},
    {"agent_install": ""}, {"agent_install": "--index-url=https://evil/ inventiv"},
    {"agent_install": "preinstalled:relative/agent"}, {"agent_install": "preinstalled:/with space/agent"},
    {"agent_install": "inventiv\n; rm -rf /"},
    {"base_dir": "relative"}, {"base_dir": "/"}, {"base_dir": "/opt/../etc"}, {"base_dir": "/opt/inventiv/"},
    {"base_dir": "/opt/in\nventiv"},
    {"generation": -1}, {"generation": 1.5},
    {"bind_host": "0.0.0.0"}, {"bind_host": "::"}, {"bind_host": "example.com"},
    {"extra_env": (("PATH", "/tmp"),)}, {"extra_env": (("INVENTIV_ENGINE", "fake"),)},
    {"extra_env": (("NATS_URL", "nats://x"),)}, {"extra_env": (("BAD NAME", "x"),)},
    {"extra_env": (("HF_TOKEN", "a\nb"),)}, {"extra_env": ("HF_TOKEN=x",)},
    {"agent_start_timeout_s": 0}, {"agent_stop_timeout_s": 100_000},
    {"python": "-c"}, {"python": "python 3"},
])
def test_invalid_specs_are_refused(changes):
    with pytest.raises(InvalidInstall):
        spec(**changes)


def test_fake_engine_reserves_its_own_flags():
    with pytest.raises(InvalidInstall):
        spec(engine="fake", engine_args=("--model", "x"))
    assert spec(engine="fake", engine_args=("--fail-after", "3")).engine_args == ("--fail-after", "3")


def test_hostile_but_whitespace_free_values_are_accepted_then_quoted_by_the_renderer():
    # Quotes, $( ), backticks and ; are legal in ids that are not subject tokens; script.py quotes them.
    hostile = "m'\"$(touch${IFS}/tmp/pwn)`id`;x"
    assert spec(model_name=hostile, served_model_name=hostile).model_name == hostile


def test_fingerprints_are_normalized_and_deduplicated():
    target = SshTarget("10.0.0.5", host_key_fingerprints=(FP + "=", FP, " " + FP))
    assert target.host_key_fingerprints == (FP,)
    assert (target.port, target.username) == (22, "root")
    assert normalize_fingerprint(FP + "=") == FP


@pytest.mark.parametrize("bad", ["MD5:aa:bb", "SHA256:short", FP[:-1] + "!", "sha256:" + FP[7:], ""])
def test_bad_fingerprints_are_refused(bad):
    with pytest.raises(InvalidInstall):
        SshTarget("10.0.0.5", host_key_fingerprints=(bad,))


@pytest.mark.parametrize("changes", [
    {"host": ""}, {"host": "a b"}, {"host": "a\nb"}, {"port": 0}, {"port": 65536},
    {"username": "root; id"}, {"username": "-oProxyCommand"}, {"host_key_fingerprints": FP},
])
def test_bad_targets_are_refused(changes):
    with pytest.raises(InvalidInstall):
        SshTarget(**{"host": "10.0.0.5", **changes})


def test_a_target_without_fingerprints_can_be_built_but_the_installer_refuses_it():
    # Refusal happens at connect time (test_install_errors): a target may be built before the pin is known.
    assert SshTarget("10.0.0.5").host_key_fingerprints == ()
