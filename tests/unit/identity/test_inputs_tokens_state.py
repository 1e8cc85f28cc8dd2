"""Input checks, one-time tokens and an account's folded state."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.events import PasswordResetRequested, UserCreated, UserDeleted, UserPasswordChanged
from contracts.ids import new_id
from services.api.auth import inputs, tokens
from services.api.auth.user_state import fold_user, usable_reset
from services.api.errors import Problem

T = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("good", ["a@example.com", "First.Last+tag@sub.example.co", "x_y@e-x.io"])
def test_good_emails_are_normalised(good):
    assert inputs.normalize_email(f"  {good.upper()} ") == good.lower()


@pytest.mark.parametrize("bad", ["", "a", "a@b", "a@@b.com", "a b@c.com", "a@b..com", "a@-b.com", "a@b.com\nx", "a\n@b.com",
                                 "a\x00@b.com", "@b.com", "a@", "x" * 250 + "@b.com"])
def test_bad_emails_name_the_field(bad):
    with pytest.raises(Problem) as exc:
        inputs.normalize_email(bad, "email")
    assert exc.value.status_code == 422 and exc.value.errors[0]["field"] == "email"


@given(st.text(max_size=11))
def test_short_passwords_are_refused_with_a_message_that_does_not_depend_on_them(pw):
    with pytest.raises(Problem) as exc:
        inputs.check_password(pw, "new_password")
    assert exc.value.errors == [{"field": "new_password", "message": "must be at least 12 characters long"}]


@pytest.mark.parametrize(("name", "slug"), [("Acme Labs", "acme-labs"), ("  Été  Café ", "ete-cafe"),
                                            ("a.b>c*d", "a-b-c-d"), ("***", "")])
def test_slugify(name, slug):
    assert inputs.slugify(name) == slug


@given(st.text(max_size=80))
def test_any_accepted_slug_is_a_safe_subject_token(value):
    try:
        slug = inputs.check_slug(value)
    except Problem:
        return
    assert all(ch.isascii() and (ch.isalnum() or ch == "-") for ch in slug)


def test_reset_tokens_name_their_account_and_nothing_else_parses():
    uid = new_id()
    token = tokens.new_reset_token(uid)
    assert tokens.reset_token_user(token) == uid
    for bad in ("", "abc", token + "x", token.replace(".", "-"), uid + "." + "a" * 43):
        assert tokens.reset_token_user(bad) is None
    assert tokens.looks_like_token(tokens.new_secret()) and not tokens.looks_like_token("short")


def _env(**kw):
    return dict(id=new_id(), org_id="global", actor="system:test", correlation_id="c", causation_id="c",
                occurred_at=T, **kw)


def test_a_password_change_or_deletion_ends_pending_resets():
    uid = new_id()
    created = UserCreated(**_env(), user_id=uid, email="a@b.co", password_hash="h1")
    reset = PasswordResetRequested(**_env(), user_id=uid, reset_id="r1", token_hash="d1",
                                   expires_at=T + timedelta(hours=1))
    state = fold_user([created, reset])
    assert usable_reset(state, "d1", T) is not None
    assert usable_reset(state, "d1", T + timedelta(hours=2)) is None  # expired
    assert usable_reset(state, "other", T) is None
    changed = UserPasswordChanged(**_env(), user_id=uid, password_hash="h2", reason="reset", reset_id="r1")
    assert usable_reset(fold_user([created, reset, changed]), "d1", T) is None
    gone = fold_user([created, reset, UserDeleted(**_env(), user_id=uid)])
    assert not gone.exists and gone.resets == []
    recreated = fold_user([created, UserDeleted(**_env(), user_id=uid),
                           UserCreated(**_env(), user_id=uid, email="a@b.co", password_hash="h3")])
    assert recreated.exists and recreated.password_hash == "h3" and not recreated.is_admin
