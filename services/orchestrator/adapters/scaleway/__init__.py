"""The Scaleway provider: the Compute port on Scaleway Instances through the official SDK.

- ``settings``: ``ScalewaySettings`` from the environment (credentials never in repr or logs);
- ``client``: the SDK with timeouts, a shared session, status-preserving errors, bounded retries;
- ``errors``: HTTP answers -> Transient / RateLimited / Conflict / NotFound / Permanent (pure);
- ``naming``, ``convert``, ``deletion``, ``fingerprints``: pure helpers;
- ``teardown``: terminate-or-fallback and the release of volumes and IPs;
- ``compute``: ``ScalewayCompute``.

Importing this package imports the SDK; ``bootstrap`` does it only when the provider is chosen.
"""

from .compute import ScalewayCompute
from .settings import ScalewayConfigError, ScalewaySettings, settings_from_env

__all__ = ["ScalewayCompute", "ScalewayConfigError", "ScalewaySettings", "settings_from_env"]
