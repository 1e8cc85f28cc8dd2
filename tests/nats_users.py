"""A real nats-server running the documented users file (``nats/workers.conf.example``) with fresh keys.

The sample keys in the example are swapped for new ones; the seeds land beside the config:
``control`` (the control plane's services: everything in the account) and workers ``a`` and ``b``
(their own heartbeat subject and inbox only).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nkeys

from services.runtime.embedded import EmbeddedNats
from contracts.subjects import heartbeat_subject

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "nats" / "workers.conf.example"
INCLUDE = 'authorization {\n  include "workers.conf"\n}\n'


def new_user_seed() -> bytes:
    return nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)


def public_key(seed: bytes) -> str:
    return nkeys.from_seed(bytearray(seed)).public_key.decode()


class Cluster:
    """The server plus the seeds of the control plane and of workers A and B (in file order)."""

    def __init__(self, server: EmbeddedNats, seeds: dict[str, Path], workers: list[tuple[str, str]]) -> None:
        self.server, self.seeds = server, seeds
        (self.org, self.a), (_, self.b) = workers
        self.subject_a = heartbeat_subject(self.org, self.a)
        self.subject_b = heartbeat_subject(self.org, self.b)


def start_cluster(data_dir: Path) -> Cluster:
    """The example users file with fresh keys in place of the samples, and a server including it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    text = EXAMPLE.read_text()
    samples = re.findall(r'nkey: "(U[A-Z2-7]{55})"', text)
    workers = re.findall(r'publish:\s*\{ allow: \["hb\.([^.]+)\.([^."]+)"\] \}', text)
    assert len(samples) == 3 and len(workers) == 2, "the example should hold the control plane and two workers"
    seeds: dict[str, Path] = {}
    for name, sample in zip(("control", "a", "b"), samples):
        seed = new_user_seed()
        text = text.replace(sample, public_key(seed))
        path = data_dir / f"{name}.nk"
        path.write_bytes(seed + b"\n")
        path.chmod(0o600)
        seeds[name] = path
    (data_dir / "workers.conf").write_text(text)
    return Cluster(EmbeddedNats(data_dir, extra_config=INCLUDE).start(), seeds, workers)


