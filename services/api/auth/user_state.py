"""An account's state folded from its own events (pure): exists, names, admin flag, resets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from contracts.events import PasswordResetRequested, UserCreated, UserDeleted, UserPasswordChanged, UserUpdated


@dataclass
class PendingReset:
    reset_id: str
    token_hash: str
    expires_at: datetime


@dataclass
class UserState:
    exists: bool = False
    email: str = ""
    is_admin: bool = False
    first_name: str = ""
    last_name: str = ""
    password_hash: str = ""
    # Reset requests still usable: a password change (of any kind) or a deletion ends them all.
    resets: list[PendingReset] = field(default_factory=list)


def fold_user(events: Iterable[object]) -> UserState:
    state = UserState()
    for event in events:
        if isinstance(event, UserCreated):
            state = UserState(exists=True, email=event.email, is_admin=event.is_admin, first_name=event.first_name,
                              last_name=event.last_name, password_hash=event.password_hash)
        elif isinstance(event, UserUpdated):
            state.is_admin, state.first_name, state.last_name = event.is_admin, event.first_name, event.last_name
        elif isinstance(event, UserPasswordChanged):
            state.password_hash = event.password_hash
            state.resets = []
        elif isinstance(event, PasswordResetRequested):
            state.resets.append(PendingReset(event.reset_id, event.token_hash, event.expires_at))
        elif isinstance(event, UserDeleted):
            state = UserState()
    return state


def usable_reset(state: UserState, token_hash: str, now: datetime) -> PendingReset | None:
    """The pending reset a token digest opens, if any and not expired."""
    for reset in state.resets:
        if reset.token_hash == token_hash and reset.expires_at > now:
            return reset
    return None
