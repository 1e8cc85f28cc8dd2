"""Hypothesis strategies for every wire contract."""

from __future__ import annotations

import typing
from datetime import timezone
from decimal import Decimal

from hypothesis import strategies as st

from contracts import commands, events
from contracts.catalog import Placement
from contracts.heartbeats import Heartbeat
from contracts.usage import UsageRecord

uuids = st.uuids().map(str)
text = st.text(min_size=0, max_size=40)
aware_datetimes = st.datetimes(timezones=st.just(timezone.utc))
money = st.decimals(min_value=Decimal("0"), max_value=Decimal("1000"), places=4, allow_nan=False)
finite = st.floats(allow_nan=False, allow_infinity=False, width=32)

st.register_type_strategy(Decimal, money)

placements = st.builds(Placement, hourly_price_eur=money, zone_id=uuids, instance_type_id=uuids, model_id=uuids,
                       gpu_count=st.integers(0, 8), vram_per_gpu_gb=st.integers(0, 288))
st.register_type_strategy(Placement, placements)

ENVELOPE = dict(id=uuids, org_id=uuids, actor=text, correlation_id=uuids, causation_id=uuids,
                occurred_at=aware_datetimes)


def message(cls):
    hints = typing.get_type_hints(cls)
    overrides = {k: v for k, v in ENVELOPE.items() if k in hints}
    for name, hint in hints.items():
        if hint is float or hint == (float | None):
            overrides.setdefault(name, finite)
        if "datetime" in str(hint) and name not in overrides:
            overrides[name] = st.one_of(st.none(), aware_datetimes) if "None" in str(hint) else aware_datetimes
    return st.builds(cls, **overrides)


ALL_EVENTS = typing.get_args(events.AnyEvent)
ALL_COMMANDS = typing.get_args(commands.AnyCommand)
any_event = st.one_of(*(message(c) for c in ALL_EVENTS))
any_command = st.one_of(*(message(c) for c in ALL_COMMANDS))
heartbeats = st.builds(Heartbeat, sent_at=aware_datetimes, interval_s=finite)
usage_records = st.builds(UsageRecord, occurred_at=aware_datetimes, duration_ms=finite,
                          ttft_ms=st.one_of(st.none(), finite))
