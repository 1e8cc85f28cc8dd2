"""decode(encode(x)) == x for every wire contract, and tags are stable strings."""

from __future__ import annotations

from hypothesis import given, settings

from contracts import codec
from contracts.events import event_tag

from .strategies import ALL_COMMANDS, ALL_EVENTS, any_command, any_event, heartbeats, usage_records


@settings(max_examples=300)
@given(any_event)
def test_every_event_round_trips(event):
    assert codec.decode_event(codec.encode(event)) == event


@settings(max_examples=150)
@given(any_command)
def test_every_command_round_trips(command):
    assert codec.decode_command(codec.encode(command)) == command


@given(heartbeats)
def test_heartbeats_round_trip(hb):
    assert codec.decode_heartbeat(codec.encode(hb)) == hb


@given(usage_records)
def test_usage_records_round_trip(rec):
    assert codec.decode_usage(codec.encode(rec)) == rec


def test_tags_are_explicit_and_unique():
    tags = [event_tag(c) for c in (*ALL_EVENTS, *ALL_COMMANDS)]
    assert len(tags) == len(set(tags))
    for cls, tag in zip((*ALL_EVENTS, *ALL_COMMANDS), tags):
        assert tag != cls.__name__ and "." in tag


def test_money_is_encoded_as_a_string_so_no_precision_is_lost():
    from decimal import Decimal

    from contracts.catalog import Placement

    p = Placement(provider_code="p", region_code="r", zone_code="z", zone_id="z", instance_type_code="t",
                  instance_type_id="t", gpu_count=1, vram_per_gpu_gb=1, hourly_price_eur=Decimal("2.7300"),
                  model_id="m", model_name="m")
    assert b'"hourly_price_eur":"2.7300"' in codec.encode(p)
