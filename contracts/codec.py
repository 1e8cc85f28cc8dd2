"""The one codec: JSON via msgspec, with typed decoders per union."""

from __future__ import annotations

import msgspec

from . import subjects
from .commands import AnyCommand
from .events import AnyEvent, CatalogOffersObserved, CommandRejected, Event, InstanceEvent, event_tag, split_tag
from .heartbeats import Heartbeat
from .ids import GLOBAL_ORG
from .usage import UsageRecord

_encoder = msgspec.json.Encoder(decimal_format="string")
_event_decoder = msgspec.json.Decoder(AnyEvent)
_command_decoder = msgspec.json.Decoder(AnyCommand)
_heartbeat_decoder = msgspec.json.Decoder(Heartbeat)
_usage_decoder = msgspec.json.Decoder(UsageRecord)

DecodeError = msgspec.DecodeError  # also raised for validation errors (msgspec.ValidationError subclasses it)


def encode(message) -> bytes:
    return _encoder.encode(message)


def decode_event(data: bytes) -> AnyEvent:
    return _event_decoder.decode(data)


def decode_command(data: bytes) -> AnyCommand:
    return _command_decoder.decode(data)


def decode_heartbeat(data: bytes) -> Heartbeat:
    return _heartbeat_decoder.decode(data)


def decode_usage(data: bytes) -> UsageRecord:
    return _usage_decoder.decode(data)


def event_address(event: Event) -> tuple[str, str]:
    """(aggregate, aggregate id) an event belongs to: its optimistic-concurrency scope."""
    if isinstance(event, InstanceEvent):
        return "instance", event.instance_id
    if isinstance(event, CommandRejected):
        return ("instance", event.instance_id) if event.instance_id else ("command", event.command_id)
    if isinstance(event, CatalogOffersObserved):
        return "catalog", event.catalog_key
    tag = event_tag(event)
    if tag.startswith("membership."):
        # A membership belongs to the user within the org the subject already names.
        return "membership", event.user_id  # type: ignore[attr-defined]
    if tag.startswith("invitation."):
        # An accepted invitation names the user too; it still belongs to the invitation.
        return "invitation", event.invitation_id  # type: ignore[attr-defined]
    for attr, aggregate in (("key_id", "api_key"), ("user_id", "user"), ("organization_id", "organization")):
        if hasattr(event, attr):
            return aggregate, getattr(event, attr)
    raise ValueError(f"no address for {event_tag(event)}")


def event_subject_for(event: Event) -> str:
    aggregate, aggregate_id = event_address(event)
    _, name = split_tag(event_tag(event))
    return subjects.event_subject(event.org_id, aggregate, aggregate_id, name)


def aggregate_filter_for(event: Event) -> str:
    aggregate, aggregate_id = event_address(event)
    return subjects.aggregate_filter(event.org_id, aggregate, aggregate_id)


def command_subject_for(command) -> str:
    return subjects.command_subject(command.__struct_config__.tag)


__all__ = [
    "GLOBAL_ORG",
    "DecodeError",
    "aggregate_filter_for",
    "command_subject_for",
    "decode_command",
    "decode_event",
    "decode_heartbeat",
    "decode_usage",
    "encode",
    "event_address",
    "event_subject_for",
]
