"""The first administrator and the default organisation, as events (used by ``inventiv up``).

Idempotent without reading anything first: the ids are derived from the e-mail address and
the organisation slug, and each event is appended with ``expected_last_seq=0`` (this aggregate
has no history yet). A second run, or a concurrent one, is refused by JetStream with a
concurrency conflict, which here means "already exists". Event ids are random on purpose: a
deterministic id would be silently deduplicated inside the 10-minute window instead of refused,
and a re-run would then believe it had created the user with a freshly generated password.
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import datetime, timezone

import structlog
from nats.js import JetStreamContext

from contracts.events import MemberAdded, OrganizationCreated, UserCreated
from contracts.ids import GLOBAL_ORG, derived_id, new_id
from services.runtime.eventstore import ConcurrencyConflict, JetStreamEventStore

from .auth.passwords import hash_password_async

log = structlog.get_logger(__name__)

DEFAULT_ORG_NAME = "Inventiv IT"
DEFAULT_ORG_SLUG = "inventiv-it"
ACTOR = "system:bootstrap"
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$")


def admin_user_id(email: str) -> str:
    return derived_id("user-email", email.strip().lower())


def default_org_id(slug: str = DEFAULT_ORG_SLUG) -> str:
    return derived_id("org-slug", slug)


async def _append_new(store: JetStreamEventStore, event) -> bool:
    """Append an aggregate's first event; False when the aggregate already exists."""
    try:
        await store.append(event, expected_last_seq=0)
    except ConcurrencyConflict:
        return False
    return True


async def ensure_admin(js: JetStreamContext, *, email: str, password: str | None,
                       org_name: str = DEFAULT_ORG_NAME, org_slug: str = DEFAULT_ORG_SLUG) -> str | None:
    """Create the admin user, the default organisation and the owner membership if missing.

    Returns the generated password when none was given and the user was created by this call
    (print it once), else ``None``. An existing admin's password is never changed.
    """
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        raise ValueError(f"not an e-mail address: {email!r}")
    generated = None
    if password is None:
        generated = password = secrets.token_urlsafe(18)
    store = JetStreamEventStore(js)
    user_id = admin_user_id(email)
    org_id = default_org_id(org_slug)
    correlation = str(uuid.uuid4())
    now = datetime.now(timezone.utc)

    def envelope(org: str) -> dict:
        return dict(id=new_id(), org_id=org, actor=ACTOR, correlation_id=correlation, causation_id=correlation,
                    occurred_at=now)

    user_created = await _append_new(store, UserCreated(
        **envelope(GLOBAL_ORG), user_id=user_id, email=email, password_hash=await hash_password_async(password),
        is_admin=True,
    ))
    org_created = await _append_new(store, OrganizationCreated(
        **envelope(org_id), organization_id=org_id, name=org_name, slug=org_slug, created_by_user_id=user_id,
    ))
    member_added = await _append_new(store, MemberAdded(
        **envelope(org_id), organization_id=org_id, user_id=user_id, role="owner",
    ))
    log.info("bootstrap.admin", email=email, user_created=user_created, org_created=org_created,
             member_added=member_added)
    return generated if user_created else None
