"""Decisions on an organisation's members, folded from its membership events (pure).

The API loads every ``membership.*`` event of one organisation (``evt.<org>.membership.>``),
folds them into a :class:`Roster`, decides here, and appends with the roster's last sequence
as the expected one: a concurrent change to any member of the organisation makes the append
fail and the decision is taken again on fresh state. That is what keeps the last owner:
two owners demoting each other at once cannot both succeed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from contracts.events import MemberAdded, MemberRemoved, MemberRoleChanged

from .roles import can_change_role, can_remove, is_role


class Refusal(Exception):
    """A decision's "no": an HTTP status, a problem type and a message (and the field, if any)."""

    def __init__(self, status: int, type_: str, detail: str, field_name: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.type_ = type_
        self.detail = detail
        self.field_name = field_name


@dataclass
class Roster:
    """Active members of one organisation: user id -> role."""

    roles: dict[str, str] = field(default_factory=dict)

    def role_of(self, user_id: str) -> str | None:
        return self.roles.get(user_id)

    def owners(self) -> list[str]:
        return [u for u, r in self.roles.items() if r == "owner"]


def fold_roster(events: Iterable[object]) -> Roster:
    roster = Roster()
    for event in events:
        if isinstance(event, MemberAdded):
            roster.roles[event.user_id] = event.role
        elif isinstance(event, MemberRoleChanged):
            if event.user_id in roster.roles:
                roster.roles[event.user_id] = event.role
        elif isinstance(event, MemberRemoved):
            roster.roles.pop(event.user_id, None)
    return roster


def _actor_role(roster: Roster, actor_id: str) -> str:
    role = roster.role_of(actor_id)
    if role is None:
        raise Refusal(403, "not-a-member", "you are not a member of this organization")
    return role


def _target_role(roster: Roster, target_id: str) -> str:
    role = roster.role_of(target_id)
    if role is None:
        raise Refusal(404, "not-found", "no such member")
    return role


def decide_role_change(roster: Roster, actor_id: str, target_id: str, new_role: str) -> str | None:
    """The previous role when ``target`` becomes ``new_role``; ``None`` when nothing changes."""
    if not is_role(new_role):
        raise Refusal(422, "validation", "role: must be one of owner, admin, manager, user", "role")
    actor = _actor_role(roster, actor_id)
    current = _target_role(roster, target_id)
    if current == new_role:
        return None
    if not can_change_role(actor, current, new_role):
        raise Refusal(403, "forbidden", f"a {actor} cannot change a {current} into a {new_role}")
    if current == "owner" and roster.owners() == [target_id]:
        raise Refusal(409, "last-owner", "the last owner cannot be demoted; make someone else owner first")
    return current


def decide_removal(roster: Roster, actor_id: str, target_id: str) -> str:
    """The reason (``left`` or ``removed``) when ``actor`` removes ``target``."""
    is_self = actor_id == target_id
    actor = _actor_role(roster, actor_id)
    target = actor if is_self else _target_role(roster, target_id)
    if not can_remove(actor, target, is_self=is_self):
        raise Refusal(403, "forbidden", f"a {actor} cannot remove a {target}")
    if target == "owner" and roster.owners() == [target_id]:
        raise Refusal(409, "last-owner", "the last owner cannot leave or be removed; make someone else owner first")
    return "left" if is_self else "removed"


def decide_join(roster: Roster, user_id: str) -> bool:
    """Whether ``user_id`` must be added (an existing member keeps the role they have)."""
    return roster.role_of(user_id) is None
