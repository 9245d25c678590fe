"""``sensitivity serve``: the API (and a local Ray head) in this process until Ctrl-C."""

import signal
import sys
from contextlib import suppress
from pathlib import Path
from typing import Annotated

import typer

from service.cli.core import ExitCode, app, fail, say


@app.command(rich_help_panel="Catalog and service")
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port of the API.")] = 8000,
    data_dir: Annotated[
        Path,
        typer.Option(
            envvar="SENSITIVITY_DATA_DIR", help="SQLite file, Ray results and logs go here."
        ),
    ] = Path("./data"),
    insecure: Annotated[
        bool,
        typer.Option(help="Serve a non-loopback --host without SENSITIVITY_API_TOKEN (open)."),
    ] = False,
) -> None:
    """Serve the API (and a local Ray head unless SENSITIVITY_RAY_ADDRESS is set) until Ctrl-C.

    The service logs the page, API docs and Ray dashboard URLs once it is ready; on Ctrl-C or
    SIGTERM it stops cleanly, with the Ray head it started. A --host other than loopback needs
    SENSITIVITY_API_TOKEN, or --insecure: it refuses to start otherwise (exit 2).
    """
    from service.server import InsecureBind, check_exposure
    from studies.settings import Settings

    try:
        check_exposure(host, Settings(data_dir=data_dir), insecure)
    except InsecureBind as error:
        raise fail(str(error), ExitCode.USAGE) from None
    base = f"http://{host}:{port}"
    # say: the path and host as they are (a data dir named "[x]" is no markup)
    say(
        f"Starting the η-sensitivity service: API {base} · docs {base}/docs · data in "
        f"{data_dir.resolve()}\n(a local Ray head takes a few seconds; the Ray dashboard URL "
        "is logged when the service is ready; Ctrl-C stops it all)"
    )
    from service.server import serve as run  # heavy: the app, torch, Ray client

    # SIGTERM: uvicorn shuts down gracefully, restores this handler and re-raises the signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn has shut down, then re-raises it
        run(host=host, port=port, data_dir=data_dir, insecure=insecure)
    say("The service stopped.")
