"""Organisation roles and who may do what: pure rules, one table each.

The delegation rules are the original's (original-system.md §9, ``rbac.rs``), enforced here on
the server instead of only hidden in the UI:

- invite: owner invites any role; admin and manager invite only ``manager`` or ``user``;
- change a role: owner any change; admin toggles admin <-> user; manager toggles manager <-> user;
- remove: owner anyone; admin removes admins and users; manager removes managers and users;
  anyone may leave;
- the last owner can be neither demoted nor removed (checked in ``membership_rules``).

Instances: every member sees them, owners and admins operate them (the original defined this
and never enforced it). API-key scopes a role may hold: ``inference`` for everyone, ``manage``
(the management API) for owners, admins and managers.
"""

from __future__ import annotations

from typing import Literal

Role = Literal["owner", "admin", "manager", "user"]
ROLES: tuple[Role, ...] = ("owner", "admin", "manager", "user")
# Display order (owner first) and "how much" a role may do.
RANK: dict[str, int] = {"owner": 4, "admin": 3, "manager": 2, "user": 1}

INFERENCE = "inference"
MANAGE = "manage"
SCOPES: tuple[str, ...] = (INFERENCE, MANAGE)

OPERATE_ROLES: tuple[Role, ...] = ("owner", "admin")
"""Deploy, terminate, reinstall, archive instances of the organisation."""
AUDIT_ROLES: tuple[Role, ...] = ("owner", "admin")
"""Read the organisation's audit log; see every API key of the organisation."""
INVITE_ROLES: tuple[Role, ...] = ("owner", "admin", "manager")
"""Invite people, list and revoke invitations."""
SETTINGS_ROLES: tuple[Role, ...] = ("owner", "admin")
"""Rename the organisation."""

_TOGGLES: dict[str, frozenset[str]] = {
    "admin": frozenset({"admin", "user"}),
    "manager": frozenset({"manager", "user"}),
}


def is_role(value: object) -> bool:
    return value in RANK


def scopes_for_role(role: str | None) -> frozenset[str]:
    """The API-key scopes a member with ``role`` holds (and may therefore grant to a key)."""
    if role in ("owner", "admin", "manager"):
        return frozenset(SCOPES)
    if role == "user":
        return frozenset({INFERENCE})
    return frozenset()


def can_invite(actor: str | None, invited_role: str) -> bool:
    if actor == "owner":
        return is_role(invited_role)
    if actor in ("admin", "manager"):
        return invited_role in ("manager", "user")
    return False


def can_change_role(actor: str | None, current: str, new: str) -> bool:
    """Whether ``actor`` may move a member from ``current`` to ``new`` (the same role is a no-op)."""
    if not (is_role(current) and is_role(new)):
        return False
    if actor == "owner":
        return True
    allowed = _TOGGLES.get(actor or "")
    return allowed is not None and current in allowed and new in allowed


def can_remove(actor: str | None, target: str, *, is_self: bool) -> bool:
    if is_self:
        return True
    if actor == "owner":
        return True
    allowed = _TOGGLES.get(actor or "")
    return allowed is not None and target in allowed


def can_manage_invitation(actor: str | None, invited_role: str) -> bool:
    """Revoke an invitation: the same rule as creating it."""
    return can_invite(actor, invited_role)
