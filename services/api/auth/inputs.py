"""Checks on identity input (pure): e-mail addresses, passwords, slugs, names.

Each raises a 422 problem naming the field, before anything is stored. Messages never echo
the value (a password typed into the wrong field must not come back in an error body or a log).
"""

from __future__ import annotations

import re
import unicodedata

from ..errors import field_error

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
MAX_EMAIL_LENGTH = 254

# Pragmatic, not RFC 5322: one @, no spaces or control characters, a dotted domain of DNS labels.
_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]{1,64}@(?=.{1,253}$)"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\Z"
)
_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\Z")
_NAME = re.compile(r"^[^\x00-\x1f\x7f<>]{1,100}\Z")


def normalize_email(value: str, field: str = "email") -> str:
    email = (value or "").strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email) or ".." in email:
        raise field_error(field, "must be an e-mail address like name@example.com")
    return email


def check_password(value: str, field: str = "password") -> str:
    if not isinstance(value, str) or len(value) < MIN_PASSWORD_LENGTH:
        raise field_error(field, f"must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(value) > MAX_PASSWORD_LENGTH:
        raise field_error(field, f"must be at most {MAX_PASSWORD_LENGTH} characters long")
    if value.strip() == "" or len(set(value)) < 3:
        raise field_error(field, "is too easy to guess")
    return value


def check_slug(value: str, field: str = "slug") -> str:
    if not isinstance(value, str) or len(value) < 2 or not _SLUG.match(value):
        raise field_error(field, "must be 2-63 characters among a-z 0-9 and '-', not starting or ending with '-'")
    return value


def slugify(name: str) -> str:
    """``"Acme Labs (EU)"`` -> ``"acme-labs-eu"``; may still be too short (checked by ``check_slug``)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:63].strip("-")


def check_name(value: str, field: str = "name") -> str:
    name = (value or "").strip()
    if not _NAME.match(name):
        raise field_error(field, "must be 1-100 printable characters (no < or >)")
    return name


def check_person_name(value: str, field: str) -> str:
    name = (value or "").strip()
    if name and not _NAME.match(name):
        raise field_error(field, "must be at most 100 printable characters (no < or >)")
    return name
