"""Identity and tenancy: people, sessions, organisations, roles, invitations, API keys, audit.

Map of the package (routes live in ``services/api/routes/``: ``auth``, ``sessions``,
``passwords``, ``users``, ``organizations``, ``members``, ``invitations``, ``api_keys``, ``audit``):

- ``principal``: who calls (session cookie / Bearer session token / API key), their organisation
  (always from the credential) and role; CSRF check for cookie writes; ``require_org_role``,
  ``require_admin``; failed API keys throttled per client address.
- ``roles`` (pure): the original's delegation rules; scopes a role holds.
- ``membership_rules``, ``user_state`` (pure): decisions folded from an organisation's membership
  events, an account's state from its events.
- ``identity_store``: load a consistency scope from EVENTS, append with optimistic concurrency
  over it, read-your-writes wait on the projector's checkpoint.
- ``inputs`` (pure): e-mail, password (>= 12), slug, name checks naming the field.
- ``tokens``: one-time tokens (invitations, resets), stored as SHA-256 only.
- ``sessions``: server-side sessions (``public.user_sessions``), Personal workspace, revocation.
- ``passwords``: argon2id; ``ratelimit``: the per-key failure window used by every throttle.
- ``runtime`` / ``settings``: per-process mailer (``services.api.mail``), throttles, background sends.

Every identity change is an event on EVENTS (``contracts.identity``), projected into ``rm``
(``services/projector/projections/identity*.py``) and into ``rm.audit_log``. Uniqueness without
locks: an account's id is derived from its e-mail address and an organisation's from its slug, and
their first event is appended with "no history yet" as the expected sequence.
"""
