"""Password reset by a single-use, expiring token sent through the mail port.

``POST /auth/password-reset/request`` always answers 202 with the same body, at once: whether
the address exists is decided after the response, in a background task (so neither the body
nor the response time tells). For an existing account it appends
``user.password_reset_requested`` (the token's SHA-256 and expiry) and mails the link; mails
per address are capped (``resets_per_email``), silently.

``POST /auth/password-reset/reset`` finds the account the token names, checks the digest
against that account's pending requests (not expired, no password change since), and appends
``user.password_changed`` with optimistic concurrency on the account's events: a token works
once even when presented twice at the same moment. Every session of the account is revoked.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from litestar import Request, post
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT

from contracts.events import PasswordResetRequested, UserPasswordChanged
from contracts.ids import GLOBAL_ORG, new_id
from services.runtime.eventstore import ConcurrencyConflict

from .. import db
from ..auth import tokens
from ..auth.identity_store import append_in_scope, load_scope, user_scope, with_retries
from ..auth.inputs import check_password
from ..auth.passwords import hash_password_async
from ..auth.principal import check_csrf
from ..auth.runtime import IdentityRuntime, identity
from ..auth.schemas import Accepted, PasswordReset, PasswordResetRequest
from ..auth.user_state import fold_user, usable_reset
from ..auth.writes import envelope, settled
from ..context import client_ip, correlation_id, utcnow
from ..errors import Problem, field_error
from ..mail import messages
from ..state import Resources, resources

log = structlog.get_logger(__name__)

_ACCEPTED = Accepted(status="accepted",
                     detail="if an account uses this address, a link to reset its password is on its way")


async def _send_reset(res: Resources, runtime: IdentityRuntime, email: str, request_id: str) -> None:
    try:
        row = await db.fetchrow(res.pool, "SELECT id FROM rm.users WHERE lower(email) = $1 AND deleted_at IS NULL",
                                email)
        if row is None:
            return
        if runtime.reset_limiter.retry_after(f"email:{email}"):
            log.info("password_reset.throttled")
            return
        runtime.reset_limiter.failed(f"email:{email}")  # counts mails sent, not failures
        user_id = str(row["id"])
        token = tokens.new_reset_token(user_id)
        expires_at = utcnow() + timedelta(seconds=runtime.settings.password_reset_ttl_s)
        event = PasswordResetRequested(
            id=new_id(), org_id=GLOBAL_ORG, actor="system:api", correlation_id=request_id, causation_id=request_id,
            occurred_at=utcnow(), user_id=user_id, reset_id=new_id(), token_hash=tokens.digest(token),
            expires_at=expires_at)

        async def attempt() -> int:
            return await append_in_scope(res.js, event, await load_scope(res.js, user_scope(user_id)))

        await with_retries(attempt, what="the account")
        await runtime.mailer.send(messages.password_reset(to=email, public_url=runtime.settings.public_url,
                                                          token=token, expires_at=expires_at))
    except Exception as exc:  # noqa: BLE001 - a background task: log (without the address or token) and stop
        log.warning("password_reset.not_sent", error=type(exc).__name__)


@post("/auth/password-reset/request", status_code=HTTP_202_ACCEPTED, tags=["auth"],
      summary="Ask for a password-reset link by e-mail (the answer never says whether the address exists)")
async def request_reset(request: Request, data: PasswordResetRequest) -> Accepted:
    check_csrf(request)
    email = data.email.strip().lower()
    # Decided after the response: the answer and its timing are the same for every address.
    runtime = identity(request)
    runtime.spawn(_send_reset(resources(request), runtime, email, correlation_id(request)))
    return _ACCEPTED


@post("/auth/password-reset/reset", status_code=HTTP_204_NO_CONTENT, tags=["auth"],
      summary="Set a new password with the token from the reset link (single use); signs out every session")
async def reset_password(request: Request, data: PasswordReset) -> None:
    check_csrf(request)
    new_password = check_password(data.new_password, "new_password")
    res = resources(request)
    limiter = identity(request).key_limiter
    ip_key = f"ip:{client_ip(request)}"
    wait = limiter.retry_after(ip_key)
    if wait:
        raise Problem(429, "too many invalid reset tokens; try again later", type_="rate-limited",
                      headers={"Retry-After": str(wait)})
    user_id = tokens.reset_token_user(data.token)
    if user_id is None:
        limiter.failed(ip_key)
        raise field_error("token", "is not a valid password-reset token")
    password_hash = None
    for _attempt in range(3):
        scope = await load_scope(res.js, user_scope(user_id))
        state = fold_user(scope.events)
        reset = usable_reset(state, tokens.digest(data.token), utcnow()) if state.exists else None
        if reset is None:
            limiter.failed(ip_key)
            raise field_error("token", "is expired, already used or not valid")
        # Hashed only for a token that opens a reset: guessing costs the guesser, not our CPU.
        password_hash = password_hash or await hash_password_async(new_password)
        changed = UserPasswordChanged(**envelope(request, None, GLOBAL_ORG, actor=f"user:{user_id}"), user_id=user_id,
                                      password_hash=password_hash, reason="reset", reset_id=reset.reset_id)
        try:
            seq = await append_in_scope(res.js, changed, scope)
        except ConcurrencyConflict:
            continue  # decided again: if the token was just used, the next round refuses it
        await res.sessions.revoke_all(user_id)
        await settled(request, seq)
        return None
    raise field_error("token", "is expired, already used or not valid")


route_handlers = [request_reset, reset_password]
