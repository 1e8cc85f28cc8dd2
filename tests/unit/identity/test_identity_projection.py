"""Identity events -> read-model rows and audit entries (pure, in memory)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from contracts import codec
from contracts.events import (
    ApiKeyCreated,
    ApiKeyRenamed,
    InvitationAccepted,
    InvitationCreated,
    InvitationRevoked,
    MemberAdded,
    MemberRemoved,
    MemberRoleChanged,
    OrganizationCreated,
    OrganizationRenamed,
    PasswordResetRequested,
    UserCreated,
    UserDeleted,
    UserPasswordChanged,
)
from contracts.ids import new_id
from services.projector.projections import EventMeta, project_batch
from services.projector.rowops import MemoryTables

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
KEYS = {"organizations": ("id",), "users": ("id",), "memberships": ("organization_id", "user_id"),
        "api_keys": ("id",), "invitations": ("id",), "audit_log": ("seq",), "action_logs": ("seq",)}


class World:
    def __init__(self) -> None:
        self.tables = MemoryTables(keys=KEYS)
        self.seq = 0

    def apply(self, *events) -> None:
        items = []
        for event in events:
            self.seq += 1
            items.append((event, EventMeta(self.seq, codec.event_subject_for(event), T0), {}, None))
        self.tables.apply(project_batch(items, {}))

    def row(self, table, *key):
        return self.tables.table(table).get(tuple(key))


def env(org, minutes=0, actor="user:" + "0" * 8):
    return dict(id=new_id(), org_id=org, actor=actor, correlation_id="c", causation_id="c",
                occurred_at=T0 + timedelta(minutes=minutes))


def test_members_roles_removal_and_readding():
    w, org, user, boss = World(), new_id(), new_id(), new_id()
    w.apply(OrganizationCreated(**env(org), organization_id=org, name="A", slug="a", created_by_user_id=boss),
            OrganizationRenamed(**env(org, 1), organization_id=org, name="B"),
            MemberAdded(**env(org, 1), organization_id=org, user_id=user, role="user"),
            MemberRoleChanged(**env(org, 2), organization_id=org, user_id=user, role="admin", previous_role="user"))
    assert w.row("organizations", org)["name"] == "B"
    assert w.row("memberships", org, user)["role"] == "admin"
    w.apply(MemberRemoved(**env(org, 3), organization_id=org, user_id=user, reason="left"))
    assert w.row("memberships", org, user)["removed_at"] == T0 + timedelta(minutes=3)
    w.apply(MemberAdded(**env(org, 4), organization_id=org, user_id=user, role="manager"))
    row = w.row("memberships", org, user)
    assert row["removed_at"] is None and row["role"] == "manager" and row["created_at"] == T0 + timedelta(minutes=4)


def test_membership_events_filed_under_another_org_change_nothing():
    w, org, other, user = World(), new_id(), new_id(), new_id()
    w.apply(MemberAdded(**env(org), organization_id=org, user_id=user, role="owner"))
    w.apply(MemberRoleChanged(**env(other), organization_id=org, user_id=user, role="user", previous_role="owner"))
    assert w.row("memberships", org, user)["role"] == "owner"
    logs = w.tables.rows("action_logs")
    assert logs[-1]["status"] == "failed" and logs[-1]["error_code"] == "INVALID_EVENT"


def test_user_deletion_marks_memberships_and_keys_and_recreation_starts_over():
    w, org, user, key = World(), new_id(), new_id(), new_id()
    w.apply(UserCreated(**env("global"), user_id=user, email="u@e.co", password_hash="$argon2id$x", is_admin=True),
            MemberAdded(**env(org), organization_id=org, user_id=user, role="owner"),
            ApiKeyCreated(**env(org), key_id=key, name="k", prefix="sk-inv-1", key_hash="h" * 64, user_id=user),
            ApiKeyRenamed(**env(org, 1), key_id=key, name="renamed"),
            UserPasswordChanged(**env("global", 1), user_id=user, password_hash="$argon2id$y"),
            UserDeleted(**env("global", 2), user_id=user))
    assert w.row("users", user)["deleted_at"] == T0 + timedelta(minutes=2)
    assert w.row("users", user)["password_hash"] == "$argon2id$y"
    assert w.row("memberships", org, user)["removed_at"] is not None
    assert w.row("api_keys", key)["revoked_at"] is not None and w.row("api_keys", key)["name"] == "renamed"
    w.apply(UserCreated(**env("global", 3), user_id=user, email="u@e.co", password_hash="$argon2id$z"))
    again = w.row("users", user)
    assert again["deleted_at"] is None and again["is_admin"] is False and again["password_hash"] == "$argon2id$z"


def test_invitations_first_writer_wins():
    w, org, inv, user = World(), new_id(), new_id(), new_id()
    w.apply(InvitationCreated(**env(org), invitation_id=inv, organization_id=org, email="g@e.co", role="user",
                              token_hash="t" * 64, expires_at=T0 + timedelta(days=7), invited_by_user_id=user),
            InvitationAccepted(**env(org, 1), invitation_id=inv, organization_id=org, user_id=user),
            InvitationAccepted(**env(org, 2), invitation_id=inv, organization_id=org, user_id=new_id()),
            InvitationRevoked(**env(org, 3), invitation_id=inv, organization_id=org))
    row = w.row("invitations", inv)
    assert row["accepted_at"] == T0 + timedelta(minutes=1) and row["accepted_by_user_id"] == user
    assert row["revoked_at"] == T0 + timedelta(minutes=3)


def test_audit_rows_name_actor_and_target_and_never_a_secret():
    w, org, user = World(), new_id(), new_id()
    w.apply(UserCreated(**env("global"), user_id=user, email="u@e.co", password_hash="$argon2id$secret"),
            PasswordResetRequested(**env("global"), user_id=user, reset_id=new_id(), token_hash="d" * 64,
                                   expires_at=T0),
            InvitationCreated(**env(org, actor=f"user:{user}"), invitation_id=new_id(), organization_id=org,
                              email="g@e.co", role="admin", token_hash="t" * 64, expires_at=T0,
                              invited_by_user_id=user))
    audit = sorted(w.tables.rows("audit_log"), key=lambda r: r["seq"])
    assert [(a["org_id"], a["action"], a["target_type"]) for a in audit] == [
        ("global", "user.created", "user"), ("global", "user.password_reset_requested", "user"),
        (org, "invitation.created", "invitation")]
    assert audit[2]["actor_user_id"] == user and audit[2]["details"]["email"] == "g@e.co"
    for row in [*audit, *w.tables.rows("action_logs")]:
        blob = repr(row)
        assert "secret" not in blob and "d" * 64 not in blob and "t" * 64 not in blob
    assert [r["action_type"] for r in sorted(w.tables.rows("action_logs"), key=lambda r: r["seq"])] == [
        "USER_CREATED", "USER_PASSWORD_RESET_REQUESTED", "ORG_INVITATION_CREATED"]
