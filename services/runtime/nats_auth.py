"""How the control plane's services authenticate to NATS: the nats CLI's own variables.

- ``NATS_CREDS``: a ``.creds`` file (user JWT + nkey seed; decentralised auth), or
- ``NATS_NKEY``: a user nkey seed file (``SU...``; users listed in the server config, as in
  ``nats/workers.conf.example``, whose first user is the control plane);
- ``NATS_CA``: a CA bundle to verify the server's TLS certificate; ``NATS_CERT`` + ``NATS_KEY``:
  a client certificate for mutual TLS. A ``tls://`` URL without them uses the system's CAs.
- A user and password (or a token) in ``NATS_URL`` itself keep working.

Using the CLI's names means one operator environment serves both the services and ``nats``
(event replay, stream inspection). Every variable names a file; the secrets never sit in the
environment or in argv. Bad settings stop the service at start with one line naming the variable:
a service that cannot authenticate would otherwise retry its connection forever.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

import msgspec

from agent.preflight import check_creds, check_nkey_seed
from agent.settings import ConfigError


class NatsAuth(msgspec.Struct, frozen=True, kw_only=True):
    creds_file: str | None = None
    nkey_seed_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


def _readable(name: str, path: str | None) -> None:
    if path is not None and not os.access(path, os.R_OK):
        raise SystemExit(f"inventiv: {name}: cannot read {path}")


def nats_auth_from_env(env: Mapping[str, str] | None = None) -> NatsAuth:
    """Read and check the variables; ``SystemExit`` with one line when they cannot work."""
    env = os.environ if env is None else env
    values = {name: (env.get(name) or "").strip() or None for name in
              ("NATS_CREDS", "NATS_NKEY", "NATS_CA", "NATS_CERT", "NATS_KEY")}
    if values["NATS_CREDS"] and values["NATS_NKEY"]:
        raise SystemExit("inventiv: NATS_CREDS and NATS_NKEY are exclusive: a service has one identity")
    if bool(values["NATS_CERT"]) != bool(values["NATS_KEY"]):
        raise SystemExit("inventiv: NATS_CERT and NATS_KEY go together (a client certificate and its key)")
    try:
        check_creds(values["NATS_CREDS"], "NATS_CREDS")
        check_nkey_seed(values["NATS_NKEY"], "NATS_NKEY")
    except ConfigError as exc:
        raise SystemExit(f"inventiv: {exc}") from None
    for name in ("NATS_CA", "NATS_CERT", "NATS_KEY"):
        _readable(name, values[name])
    return NatsAuth(creds_file=values["NATS_CREDS"], nkey_seed_file=values["NATS_NKEY"], ca_file=values["NATS_CA"],
                    cert_file=values["NATS_CERT"], key_file=values["NATS_KEY"])


def tls_context(auth: NatsAuth) -> ssl.SSLContext | None:
    """None unless a CA or a client certificate is configured (nats-py then applies its defaults)."""
    if not (auth.ca_file or auth.cert_file):
        return None
    context = ssl.create_default_context(cafile=auth.ca_file)
    if auth.cert_file:
        try:
            context.load_cert_chain(auth.cert_file, auth.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise SystemExit(f"inventiv: NATS_CERT/NATS_KEY: cannot load the client certificate: {exc}") from None
    return context


def connect_options(auth: NatsAuth) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect``."""
    options: dict[str, Any] = {}
    if auth.creds_file:
        options["user_credentials"] = auth.creds_file
    if auth.nkey_seed_file:
        options["nkeys_seed"] = auth.nkey_seed_file
    context = tls_context(auth)
    if context is not None:
        options["tls"] = context
    return options
