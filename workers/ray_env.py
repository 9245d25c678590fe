"""Ray's environment, set in one place before Ray is imported or started.

- usage statistics off (no network here, and none wanted from a research cluster);
- token authentication explicit: ``disabled`` locally, ``token`` when a Ray token is configured
  (compose), otherwise the dashboard and Jobs API may answer 401;
- the local head stays on the loopback interface.

The Ray token is a secret: it is exported into the processes themselves (the local head is
started with it, compose sets it in the containers), never put into a job's ``runtime_env``,
which the Ray dashboard shows (``ray_environment(secrets=False)``).
"""

import os
from collections.abc import Mapping

from studies.settings import Settings


def ray_environment(settings: Settings | None = None, *, secrets: bool = True) -> dict[str, str]:
    """The environment variables every Ray process of this service gets; ``secrets=False``
    leaves the Ray token out (what a job's runtime_env may carry: the dashboard shows it)."""
    settings = settings or Settings()
    env = {
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token" if settings.ray_auth_token else "disabled",
    }
    if settings.ray_auth_token and secrets:
        env["RAY_AUTH_TOKEN"] = settings.ray_auth_token
    return env


def apply_ray_environment(settings: Settings | None = None) -> Mapping[str, str]:
    """Export :func:`ray_environment` into this process (explicit values already set win)."""
    env = ray_environment(settings)
    for key, value in env.items():
        os.environ.setdefault(key, value)
    return env
