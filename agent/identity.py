"""Who this agent build is: a version string and a SHA-256 over the agent package's source files.

The hash is the real identity (the original's version constant was bumped by hand and drifted).
It covers every ``.py`` file under ``agent/``, by relative path, so the control plane can check
that a worker runs exactly the build it installed.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def agent_version() -> str:
    try:
        return metadata.version("inventiv")
    except metadata.PackageNotFoundError:
        return "0+source"  # running from a checkout that was never installed


def package_sha256(root: Path = PACKAGE_DIR) -> str:
    """Hash of (relative path, file hash) pairs in path order: stable across machines and checkouts."""
    outer = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts):
        rel = path.relative_to(root).as_posix()
        outer.update(f"{rel}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return outer.hexdigest()
