"""Subject builders refuse tokens that could widen a filter or cross tenants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import headers, subjects

UNSAFE = ["a.b", "*", ">", "a b", "a\tb", "a\r\nb", "", "x" * 129, "a\x00b", "ü"]


@pytest.mark.parametrize("bad", UNSAFE)
def test_unsafe_tokens_are_refused_everywhere(bad):
    with pytest.raises(subjects.UnsafeSubjectToken):
        subjects.token(bad)
    with pytest.raises(subjects.UnsafeSubjectToken):
        subjects.event_subject("org", "instance", bad, "ready")
    with pytest.raises(subjects.UnsafeSubjectToken):
        subjects.heartbeat_subject(bad, "i")


@given(st.text())
def test_a_built_subject_always_has_exactly_its_tokens(value):
    try:
        subject = subjects.event_subject("org", "instance", value, "ready")
    except subjects.UnsafeSubjectToken:
        return
    assert subject.split(".") == ["evt", "org", "instance", value, "ready"]


def test_parse_heartbeat_subject_takes_the_instance_from_the_subject():
    assert subjects.parse_heartbeat_subject("hb.org1.inst1") == ("org1", "inst1")
    with pytest.raises(subjects.UnsafeSubjectToken):
        subjects.parse_heartbeat_subject("hb.org1.inst1.extra")


@pytest.mark.parametrize("bad", ["a\r\nInjected: 1", "a\nb", "", "x" * 300, "tab\there"])
def test_header_values_with_control_characters_are_refused(bad):
    with pytest.raises(headers.UnsafeHeaderValue):
        headers.safe_header_value(bad)
