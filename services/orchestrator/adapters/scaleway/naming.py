"""Names and tags we put on Scaleway resources (pure).

There is no idempotency key on any Scaleway create: our own ids in names and tags are what
make a create findable after a crash or a timeout (scaleway.md §5).

- server name ``inv-<instance_id>``, root volume name ``inv-<instance_id>-root``;
- ``<prefix>:instance=<id>`` on the server, its root volume and its reserved IP (the handlers
  pass it with ``<prefix>`` and ``<prefix>:org=<org>``);
- ``<prefix>:server=<server_id>`` on the root volume and the IP once the server id is known,
  so a deletion that resumes after the server is gone still finds what it left behind;
- ``AUTHORIZED_KEY=<type>_<base64>``: cloud-init on Scaleway images adds it to root's
  authorized keys (spaces written as ``_``).
"""

from __future__ import annotations

from typing import Iterable, Sequence


def server_name(instance_id: str) -> str:
    return f"inv-{instance_id}"


def root_volume_name(instance_id: str) -> str:
    return f"inv-{instance_id}-root"


def instance_tag(prefix: str, instance_id: str) -> str:
    return f"{prefix}:instance={instance_id}"


def server_tag(prefix: str, server_id: str) -> str:
    return f"{prefix}:server={server_id}"


def authorized_key_tag(public_key: str) -> str:
    """``ssh-ed25519 AAAA... comment`` -> ``AUTHORIZED_KEY=ssh-ed25519_AAAA...`` (the comment dropped:
    tags are short and a comment may hold spaces)."""
    parts = public_key.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
        raise ValueError("not an OpenSSH public key line ('<type> <base64> [comment]')")
    return f"AUTHORIZED_KEY={parts[0]}_{parts[1]}"


def server_tags(prefix: str, instance_id: str, given: Sequence[str], ssh_public_key: str | None) -> list[str]:
    """The tags of a new server: what the caller gave, our instance tag if missing, the SSH key tag."""
    tags = list(dict.fromkeys(given))
    wanted = instance_tag(prefix, instance_id)
    if wanted not in tags:
        tags.append(wanted)
    if ssh_public_key:
        tags.append(authorized_key_tag(ssh_public_key))
    return tags


def resource_tags(server_tags_: Iterable[str]) -> list[str]:
    """Tags copied from a server to its volume and IP: ours only, never the SSH key."""
    return [tag for tag in server_tags_ if not tag.startswith("AUTHORIZED_KEY=")]


def with_tag(tags: Iterable[str], tag: str) -> list[str]:
    tags = list(tags)
    return tags if tag in tags else [*tags, tag]
