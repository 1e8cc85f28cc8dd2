"""Commands: imperative requests consumed by the orchestrator from the COMMANDS stream.

Subject: ``cmd.<tag>`` (e.g. ``cmd.instance.provision``). A command may be rejected; the
rejection is recorded as a ``command.rejected`` event.
"""

from __future__ import annotations

from typing import Union

from .base import Envelope
from .catalog import Placement


class Command(Envelope, frozen=True, kw_only=True):
    pass


class ProvisionInstance(Command, frozen=True, kw_only=True, tag="instance.provision"):
    instance_id: str
    placement: Placement
    # Seconds from the request to ``ready`` before the instance is marked startup_failed.
    startup_timeout_s: int = 3600


class TerminateInstance(Command, frozen=True, kw_only=True, tag="instance.terminate"):
    instance_id: str
    reason: str = "user_request"


class CheckInstance(Command, frozen=True, kw_only=True, tag="instance.check"):
    """A durable timer: redelivered with a backoff delay until the instance settles."""

    instance_id: str


class ReinstallInstance(Command, frozen=True, kw_only=True, tag="instance.reinstall"):
    instance_id: str


class ArchiveInstance(Command, frozen=True, kw_only=True, tag="instance.archive"):
    instance_id: str


AnyCommand = Union[ProvisionInstance, TerminateInstance, CheckInstance, ReinstallInstance, ArchiveInstance]

INSTANCE_COMMANDS = (ProvisionInstance, TerminateInstance, CheckInstance, ReinstallInstance, ArchiveInstance)
