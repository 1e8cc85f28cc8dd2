"""The delegation rules and membership decisions, by example and by property."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import MemberAdded, MemberRemoved, MemberRoleChanged
from services.api.auth import roles
from services.api.auth.membership_rules import Refusal, decide_removal, decide_role_change, fold_roster

ORG = "o"
T = datetime(2026, 1, 1, tzinfo=timezone.utc)


def env():
    return dict(id="e", org_id=ORG, actor="user:x", correlation_id="c", causation_id="c", occurred_at=T)


def roster(**members):
    return fold_roster([MemberAdded(**env(), organization_id=ORG, user_id=u, role=r) for u, r in members.items()])


# (actor, current, new) -> allowed; the original's rbac.rs table.
ROLE_CHANGES = {
    ("owner", "user", "owner"): True, ("owner", "admin", "manager"): True, ("owner", "manager", "admin"): True,
    ("admin", "user", "admin"): True, ("admin", "admin", "user"): True, ("admin", "user", "manager"): False,
    ("admin", "manager", "user"): False, ("admin", "user", "owner"): False, ("admin", "owner", "user"): False,
    ("manager", "user", "manager"): True, ("manager", "manager", "user"): True, ("manager", "user", "admin"): False,
    ("manager", "admin", "user"): False, ("user", "user", "manager"): False, ("user", "manager", "user"): False,
}


@pytest.mark.parametrize(("actor", "current", "new"), ROLE_CHANGES)
def test_role_change_table(actor, current, new):
    assert roles.can_change_role(actor, current, new) is ROLE_CHANGES[(actor, current, new)]


@pytest.mark.parametrize(("actor", "invited", "allowed"), [
    ("owner", "owner", True), ("owner", "admin", True), ("admin", "admin", False), ("admin", "manager", True),
    ("manager", "user", True), ("manager", "owner", False), ("user", "user", False), (None, "user", False)])
def test_invite_table(actor, invited, allowed):
    assert roles.can_invite(actor, invited) is allowed


@pytest.mark.parametrize(("actor", "target", "allowed"), [
    ("owner", "owner", True), ("admin", "admin", True), ("admin", "user", True), ("admin", "manager", False),
    ("manager", "manager", True), ("manager", "user", True), ("manager", "admin", False), ("user", "user", False)])
def test_remove_table(actor, target, allowed):
    assert roles.can_remove(actor, target, is_self=False) is allowed
    assert roles.can_remove(actor, target, is_self=True) is True


def test_scopes_per_role():
    assert roles.scopes_for_role("owner") == roles.scopes_for_role("manager") == {"inference", "manage"}
    assert roles.scopes_for_role("user") == {"inference"}
    assert roles.scopes_for_role(None) == frozenset()


def test_last_owner_is_protected_and_refusals_carry_statuses():
    r = roster(a="owner", b="admin", c="user")
    with pytest.raises(Refusal) as demote:
        decide_role_change(r, "a", "a", "admin")
    assert demote.value.status == 409 and demote.value.type_ == "last-owner"
    with pytest.raises(Refusal) as leave:
        decide_removal(r, "a", "a")
    assert leave.value.status == 409
    with pytest.raises(Refusal) as stranger:
        decide_role_change(r, "a", "zz", "user")
    assert stranger.value.status == 404
    with pytest.raises(Refusal) as outsider:
        decide_role_change(r, "zz", "c", "admin")
    assert outsider.value.status == 403
    assert decide_role_change(r, "a", "c", "user") is None  # no change, no event
    assert decide_role_change(r, "b", "c", "admin") == "user"
    assert decide_removal(r, "c", "c") == "left" and decide_removal(r, "a", "b") == "removed"


def _apply(r, actor, target, action):
    """Decide, then fold the resulting event, the way the API does."""
    try:
        if action == "remove":
            decide_removal(r, actor, target)
            return fold_roster([*_events(r), MemberRemoved(**env(), organization_id=ORG, user_id=target)])
        previous = decide_role_change(r, actor, target, action)
    except Refusal:
        return r
    if previous is None:
        return r
    return fold_roster([*_events(r), MemberRoleChanged(**env(), organization_id=ORG, user_id=target, role=action,
                                                       previous_role=previous)])


def _events(r):
    return [MemberAdded(**env(), organization_id=ORG, user_id=u, role=role) for u, role in r.roles.items()]


people = st.sampled_from(["a", "b", "c", "d"])
steps = st.lists(st.tuples(people, people, st.sampled_from([*roles.ROLES, "remove"])), max_size=30)


@settings(max_examples=300)
@given(st.dictionaries(people, st.sampled_from(roles.ROLES), min_size=1), steps)
def test_no_sequence_of_decisions_leaves_an_organization_without_owner(initial, sequence):
    if "owner" not in initial.values():
        initial = {**initial, "a": "owner"}
    r = roster(**initial)
    for actor, target, action in sequence:
        r = _apply(r, actor, target, action)
        assert r.owners(), (initial, sequence)
