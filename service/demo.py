"""``make run``: the service on the embedded default, a smoke study, and the answer.

``python -m service.demo [--port 8000] [--data-dir ./data] [--preset smoke] [--override K=JSON]
[--exit-when-done]``:

1. serves the API with uvicorn in a background thread of this process; its lifespan reuses or
   starts a local Ray head on 127.0.0.1 (``SENSITIVITY_RAY_ADDRESS`` points it at an existing
   cluster instead) and a SQLite file under the data directory;
2. waits for ``/health``, submits the preset (``smoke``: 3 optimizers × 5 η) — every run submits
   a *fresh* study, no idempotency key, so each ``make run`` shows the sweep running live; the
   earlier ones stay listed on the page;
3. follows it with a progress bar, prints the good-η table and writes the heatmap to
   ``<data-dir>/<preset>-heatmap.png``;
4. prints where to look (the page, the API docs, the Ray dashboard, the PNG) and keeps serving
   until Ctrl-C or SIGTERM — or, with ``--exit-when-done``, stops right away (exit code 0 when the
   study succeeded, 1 otherwise).

Stopping (Ctrl-C, SIGTERM, or the end with ``--exit-when-done``) first cancels the demo's study
if it is still running, then shuts the server down through its lifespan, which stops the Ray
head it started (never ``ray stop``); a second Ctrl-C while that happens is ignored so the head
is never left behind.
"""

import argparse
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from rich.console import Console

from service.cli import follow, parse_overrides, robustness_table, summary
from service.client import FINISHED, ApiClient, ApiError

console = Console(highlight=False)


class ServiceThread:
    """An ASGI app served by uvicorn in a daemon thread (signals stay with the main thread).

    The main thread waits on an event, never on ``Thread.join``: in Python 3.11 a Ctrl-C that
    interrupts ``join()`` marks the thread as stopped while it still runs, so the process would
    exit without the lifespan shutdown that stops the Ray head.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
            timeout_graceful_shutdown=5,
        )  # fmt: skip
        self.url = f"http://{host}:{port}"
        self.server = uvicorn.Server(config)
        self.finished = threading.Event()  # set when the server (and its lifespan) has ended
        self.thread = threading.Thread(target=self._run, name="uvicorn", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        finally:
            self.finished.set()

    def start(self, timeout: float = 180.0) -> str:
        """Start serving; return the base URL once the lifespan has started and the socket is
        bound. Raises ``RuntimeError`` if the server stops or does not start in ``timeout``."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if self.finished.is_set():
                raise RuntimeError("the service did not start (see its log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start within {timeout:g} s")
            time.sleep(0.1)
        return self.url

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server has ended (or ``timeout``); whether it has. Interruptible."""
        return self.finished.wait(timeout)

    def stop(self, timeout: float = 120.0) -> None:
        """Shut down gracefully (the lifespan stops the Ray head it started) and wait for it;
        Ctrl-C while waiting is ignored so that the shutdown always completes."""
        if not self.thread.is_alive() and not self.finished.is_set():
            return  # never started
        self.server.should_exit = True  # never force_exit: it would skip the lifespan shutdown
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.finished.wait(0.5):
                    return
            except KeyboardInterrupt:
                console.print("[yellow]Still stopping the service and its Ray head…[/yellow]")


def port_is_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (checked before a Ray head is started)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The demo's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m service.demo",
        description="Serve the η-sensitivity service, run a preset study, show the answer.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--port", type=int, default=8000, help="port of the API (8000)")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("SENSITIVITY_DATA_DIR", "./data")),
        help="SQLite file, Ray results, logs and the heatmap PNG (./data)",
    )  # fmt: skip
    parser.add_argument("--preset", default="smoke", help="the preset to run (smoke)")
    parser.add_argument(
        "--override", action="append", metavar="KEY=JSON",
        help='a change to the preset, e.g. budget=\'{"epochs": 1}\' (repeatable)',
    )  # fmt: skip
    parser.add_argument(
        "--exit-when-done", action="store_true",
        help="stop once the study is finished instead of serving until Ctrl-C",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        args.overrides = parse_overrides(args.override)
    except ValueError as error:
        parser.error(f"--override: {error}")
    return args


def where_to_look(base: str, dashboard: str, study_id: str, png: Path | None) -> None:
    """Print the page, API docs, Ray dashboard and heatmap locations."""
    console.print("\n[bold]Where to look[/bold]")
    rows = [
        ("page", f"{base}/  (this study: {base}/ui/studies/{study_id})"),
        ("API docs", f"{base}/docs"),
        ("Ray dashboard", dashboard),
        ("heatmap", str(png) if png else "(not written: the study did not succeed)"),
        ("CLI", f"sensitivity --url {base} robustness {study_id}"),
    ]
    for label, where in rows:
        console.print(f"  {label:<14} {where}", markup=False, soft_wrap=True)


def run_study(client: ApiClient, args: argparse.Namespace, base: str, submitted: list[str]) -> bool:
    """Submit the preset (its id goes into ``submitted``), follow it, print the good-η table,
    write the heatmap PNG and where to look; whether the study succeeded."""
    health = client.health()
    dashboard = health.ray.dashboard or "(unknown)"
    created = client.submit(preset=args.preset, overrides=args.overrides)
    study_id = created.id
    submitted.append(study_id)
    console.print(
        f"Submitted the [bold]{args.preset}[/bold] study {study_id} "
        f"({created.n_trials} trials); Ray dashboard: {dashboard}"
    )
    study = follow(client, study_id, console)
    succeeded = study.status == "succeeded"
    console.print(summary(study), style="green" if succeeded else "red", markup=False)
    png = None
    if succeeded:
        console.print(robustness_table(client.robustness(study_id)))
        png = args.data_dir / f"{args.preset}-heatmap.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        image = client.heatmap(study_id, format="png")
        assert isinstance(image, bytes)  # format png: the image itself
        png.write_bytes(image)
    where_to_look(base, dashboard, study_id, png)
    return succeeded


def cancel_unfinished(client: ApiClient, study_id: str) -> None:
    """Best effort on Ctrl-C: mark a still-running study cancelled (its trials stop with Ray)."""
    try:
        if client.get_study(study_id).status not in FINISHED:
            client.cancel(study_id)
            console.print(f"Cancelled the unfinished study {study_id}.")
    except ApiError as error:
        console.print(f"Could not cancel study {study_id}: {error}", markup=False)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; the process exit code."""
    args = parse_args(argv)
    if not port_is_free(args.host, args.port):
        console.print(
            f"[red]Port {args.port} on {args.host} is in use (another service running?); "
            "stop it or pass --port.[/red]"
        )
        return 1
    # SIGTERM stops the demo the way Ctrl-C does (default_int_handler raises KeyboardInterrupt)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    from service.app import create_app  # heavy imports: after the argument checks
    from studies.settings import Settings

    settings = Settings(data_dir=args.data_dir)
    service = ServiceThread(create_app(settings), args.host, args.port)
    client = ApiClient(service.url, settings.api_token)
    submitted: list[str] = []
    code = 0
    try:
        where = settings.ray_address or "a local Ray head (reused if one is already running)"
        with console.status(f"Starting the service on {service.url} with {where}…"):
            service.start()
        succeeded = run_study(client, args, service.url, submitted)
        if args.exit_when_done:
            return 0 if succeeded else 1
        console.print("\nServing until Ctrl-C…")
        while not service.wait(1.0):
            pass
        console.print("[red]The server stopped by itself.[/red]")
        code = 1
    except KeyboardInterrupt:
        console.print("\nStopping…")
        if submitted and service.server.started:
            cancel_unfinished(client, submitted[-1])
    except (ApiError, RuntimeError) as error:
        console.print(f"Error: {error}", style="red", markup=False, soft_wrap=True)
        code = 1
    finally:
        client.close()
        service.stop()
        console.print("Stopped (the service, and the Ray head if it started one).")
    return code


if __name__ == "__main__":
    sys.exit(main())
