"""Parse the ``ssh-host-fingerprints`` user-data key Scaleway images publish at boot (pure).

The content is ``ssh-keygen -l`` output, one line per host key:
``256 SHA256:n6f...Q root@host (ED25519)``. Only the ``SHA256:`` fingerprints are kept (MD5
lines, blank lines and noise are ignored), in order, without duplicates.
"""

from __future__ import annotations

import re

_FINGERPRINT = re.compile(r"(?<![A-Za-z0-9+/=:])SHA256:[A-Za-z0-9+/]{43}=?(?![A-Za-z0-9+/])")


def parse_fingerprints(content: str | bytes) -> tuple[str, ...]:
    text = content.decode("utf-8", errors="replace") if isinstance(content, bytes) else content
    found = [match.group(0).rstrip("=") for match in _FINGERPRINT.finditer(text)]
    return tuple(dict.fromkeys(found))
