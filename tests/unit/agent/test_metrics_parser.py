"""The /metrics parser is total: real vLLM pages parse, garbage is counted, nothing raises."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.metrics_parser import engine_load, parse_line, parse_prometheus_text

VLLM_V1_PAGE = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen2.5-0.5B-Instruct"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen2.5-0.5B-Instruct"} 2.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen2.5-0.5B-Instruct"} 0.125
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="Qwen/Qwen2.5-0.5B-Instruct"} 1234.0
vllm:generation_tokens_total{engine="0",model_name="Qwen/Qwen2.5-0.5B-Instruct"} 5678.0
vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf",model_name="Qwen/Qwen2.5-0.5B-Instruct"} 7.0
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="Qwen/Qwen2.5-0.5B-Instruct"} 1.5e+00
python_gc_objects_collected_total{generation="0"} 1.0 1700000000000
"""


def test_a_vllm_v1_page_gives_the_engine_load():
    parsed = parse_prometheus_text(VLLM_V1_PAGE)
    assert parsed.garbage_lines == 0
    load = engine_load(parsed, ("Qwen/Qwen2.5-0.5B-Instruct",), "Qwen/Qwen2.5-0.5B-Instruct")
    assert load.requests_running == 3.0
    assert load.requests_waiting == 2.0
    assert load.kv_cache_usage == 0.125
    assert load.prompt_tokens_total == 1234.0
    assert load.generation_tokens_total == 5678.0
    assert load.models == ("Qwen/Qwen2.5-0.5B-Instruct",)


def test_the_older_gpu_cache_gauge_is_accepted():
    text = 'vllm:gpu_cache_usage_perc{model_name="m"} 0.5\nvllm:num_requests_running{model_name="m"} 1\n'
    load = engine_load(parse_prometheus_text(text), (), "m")
    assert load.kv_cache_usage == 0.5
    assert load.requests_running == 1.0


def test_the_new_kv_gauge_wins_over_the_old_one():
    text = 'vllm:gpu_cache_usage_perc 0.9\nvllm:kv_cache_usage_perc 0.2\n'
    assert engine_load(parse_prometheus_text(text)).kv_cache_usage == 0.2


def test_data_parallel_engines_are_summed_and_the_fullest_cache_reported():
    text = "\n".join([
        'vllm:num_requests_running{engine="0",model_name="m"} 2',
        'vllm:num_requests_running{engine="1",model_name="m"} 5',
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.1',
        'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.7',
    ])
    load = engine_load(parse_prometheus_text(text), (), "m")
    assert load.requests_running == 7.0
    assert load.kv_cache_usage == 0.7


def test_another_models_series_are_not_mixed_in():
    text = 'vllm:num_requests_running{model_name="other"} 9\nvllm:num_requests_running{model_name="m"} 1\n'
    assert engine_load(parse_prometheus_text(text), (), "m").requests_running == 1.0


def test_a_missing_metric_means_none_or_zero_not_a_guess():
    load = engine_load(parse_prometheus_text(""))
    assert (load.requests_running, load.requests_waiting) == (0.0, 0.0)
    assert load.kv_cache_usage is None and load.prompt_tokens_total is None


def test_garbage_lines_are_counted_and_skipped():
    text = "\n".join([
        "vllm:num_requests_running 4",
        "this is not a metric",
        'vllm:num_requests_waiting{model_name="m} 1',  # unterminated label
        "vllm:num_requests_waiting 1_000",  # underscores are not Prometheus numbers
        'x{a="1" b="2"} 1',  # missing comma between labels
        "<html><body>502 Bad Gateway</body></html>",
        "# a comment is fine",
        "",
    ])
    parsed = parse_prometheus_text(text)
    assert parsed.garbage_lines == 5
    assert [s.name for s in parsed.samples] == ["vllm:num_requests_running"]


def test_label_escapes_and_special_values():
    sample = parse_line(r'm{path="a\"b\\c\nd",x="}"} NaN')
    assert sample is not None
    assert dict(sample.labels) == {"path": 'a"b\\c\nd', "x": "}"}
    assert math.isnan(sample.value)
    assert parse_line("m +Inf").value == math.inf
    nan_kv = engine_load(parse_prometheus_text("vllm:kv_cache_usage_perc NaN\nvllm:num_requests_running +Inf"))
    assert nan_kv.kv_cache_usage is None and nan_kv.requests_running == 0.0


def test_out_of_range_values_are_clamped():
    load = engine_load(parse_prometheus_text("vllm:kv_cache_usage_perc 1.7\nvllm:num_requests_waiting -3"))
    assert load.kv_cache_usage == 1.0 and load.requests_waiting == 0.0


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_never_raises(text):
    parsed = parse_prometheus_text(text)
    engine_load(parsed, (), "m")
    assert parsed.garbage_lines >= 0


_line = st.one_of(
    st.text(max_size=80),
    st.builds(lambda n, v: f"{n} {v}", st.sampled_from(["vllm:num_requests_running", "vllm:kv_cache_usage_perc"]),
              st.one_of(st.floats(allow_nan=True), st.text(max_size=5))),
    st.builds(lambda k, v: f'vllm:num_requests_waiting{{{k}="{v}"}} 1', st.text(max_size=8), st.text(max_size=8)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_line, max_size=30))
def test_mixed_valid_and_garbage_lines_never_raise_and_every_line_is_accounted_for(lines):
    text = "\n".join(lines)
    parsed = parse_prometheus_text(text)
    load = engine_load(parsed, (), None)
    content = [ln for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(parsed.samples) + parsed.garbage_lines == len(content)
    assert load.requests_running >= 0 and load.requests_waiting >= 0
    assert load.kv_cache_usage is None or 0.0 <= load.kv_cache_usage <= 1.0


def test_a_hostile_long_line_is_garbage_and_cheap():
    text = "a{" + "}" * 100_000 + " 1\n" + "vllm:num_requests_running 1\n"
    parsed = parse_prometheus_text(text)
    assert parsed.garbage_lines == 1 and len(parsed.samples) == 1
