"""Installing the worker (agent + engine) on a server over SSH: detached on the server, observed by polls."""

from .model import DEFAULT_BASE_DIR, PHASES, InstallStatus, InvalidInstall, SshTarget, WorkerSpec
from .port import Installer

__all__ = ["DEFAULT_BASE_DIR", "PHASES", "InstallStatus", "Installer", "InvalidInstall", "SshTarget", "WorkerSpec"]
