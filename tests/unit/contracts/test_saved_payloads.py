"""Payloads saved from earlier versions must keep decoding: stored history is forever.

`tests/fixtures/payloads/v1/` holds one message of every type as this version wrote it. Never
edit those files; when a contract changes, add new fixtures beside them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts import codec
from contracts.events import event_tag

from .strategies import ALL_COMMANDS, ALL_EVENTS

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "payloads"
SAVED = sorted(FIXTURES.glob("v*/*.json"))


@pytest.mark.parametrize("path", SAVED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_saved_payload_still_decodes(path):
    raw = path.read_bytes()
    kind = json.loads(raw)["type"]
    decoder = codec.decode_command if path.stem.startswith("cmd.") else codec.decode_event
    message = decoder(raw)
    assert event_tag(message) == kind
    # Re-encoding keeps every field that was stored.
    assert json.loads(codec.encode(message)).items() >= json.loads(raw).items()


def test_every_current_type_has_a_saved_v1_payload():
    saved = {p.stem.removeprefix("cmd.").removeprefix("evt.") for p in FIXTURES.glob("v1/*.json")}
    assert {event_tag(c) for c in (*ALL_EVENTS, *ALL_COMMANDS)} <= saved
