"""Serving the app with uvicorn: the embedded default in one call.

``serve(host, port, data_dir)`` sets the data directory (SQLite file, Ray results, the local Ray
head's log), starts the app — whose lifespan reuses or starts a local Ray head on 127.0.0.1 —
prints where to look, and on SIGTERM or Ctrl-C shuts down cleanly, stopping the Ray head it
started.

Binding anything but a loopback interface without an API token would let anyone on the
network submit, cancel and delete studies: :func:`check_exposure` refuses it unless the caller
says ``insecure`` (``sensitivity serve --insecure``).
"""

import ipaddress
from pathlib import Path

from service.exceptions import ServiceError
from studies.settings import Settings


class InsecureBind(ServiceError):
    """A non-loopback interface without an API token (and without ``--insecure``)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_exposure(host: str, settings: Settings, insecure: bool = False) -> None:
    """Raise InsecureBind when ``host`` is reachable from the network, no API token is set and
    ``insecure`` was not asked for."""
    if is_loopback(host) or settings.api_token or insecure:
        return
    raise InsecureBind(
        f"refusing to serve on {host} without an API token: anyone who can reach it could "
        "submit, cancel and delete studies. Set SENSITIVITY_API_TOKEN (clients send "
        "'Authorization: Bearer <token>'), bind 127.0.0.1, or pass --insecure to serve it open"
    )


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    data_dir: Path | None = None,
    insecure: bool = False,
) -> None:
    """Run the API until interrupted (InsecureBind: see :func:`check_exposure`)."""
    overrides = {"data_dir": data_dir} if data_dir is not None else {}
    settings = Settings(**overrides)
    check_exposure(host, settings, insecure)
    import uvicorn  # here: the check above needs none of the server

    from service.app import create_app

    app = create_app(settings, public_url=f"http://{host}:{port}")
    uvicorn.run(app, host=host, port=port, log_level="info")
