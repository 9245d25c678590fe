"""The ``sensitivity`` command line: serve the API, submit studies, follow them, get the answer.

Every command but ``serve`` talks to a running service over HTTP (``service.client.ApiClient``):
its URL comes from ``--url`` or ``SENSITIVITY_URL`` (default ``http://127.0.0.1:8000``), its
token from ``--token`` or ``SENSITIVITY_API_TOKEN`` (the variable the server reads too). An API
error prints the server's message in red on stderr and exits with code 1, never a traceback; a
usage error exits with code 2.

Commands: ``serve``, ``submit FILE|--preset NAME``, ``status ID``, ``heatmap ID -o out.png``,
``robustness ID``, ``export ID -o results.csv``, ``cancel ID``, ``resume ID``, ``delete ID``,
``list``, ``reconcile``. ``submit`` prints only the new study's id on stdout
(``ID=$(sensitivity submit …)``); the human-readable notes go to stderr.
"""

import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from service.client import FINISHED, ApiClient, ApiError
from service.models import Reproduction, Robustness, StudyOut, StudySummary

DEFAULT_URL = "http://127.0.0.1:8000"
IMAGE_SUFFIXES = {".png": "png", ".svg": "svg"}

app = typer.Typer(
    name="sensitivity",
    help="η-sensitivity studies of deep-learning optimizers: serve, submit, follow, analyse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)  # stdout (rich resolves sys.stdout when it prints)
err_console = Console(stderr=True, highlight=False)
StudyId = Annotated[str, typer.Argument(metavar="ID", help="The study's id.")]


@dataclass(frozen=True)
class Target:
    """Where the commands send their requests (the global options)."""

    url: str
    token: str | None


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="SENSITIVITY_URL", help="The service's base URL.")
    ] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(envvar="SENSITIVITY_API_TOKEN", help="API token for mutating requests."),
    ] = None,
) -> None:
    """η-sensitivity studies of deep-learning optimizers: serve, submit, follow, analyse."""
    ctx.obj = Target(url=url, token=token or None)


def say(text: str, style: str | None = None, *, to: Console = console) -> None:
    """Print ``text`` as it is: no rich markup (ids, paths and server messages may hold
    brackets) and no wrapping (so they stay whole to copy)."""
    to.print(text, style=style, markup=False, soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print ``message`` in red on stderr; the ``typer.Exit(1)`` for the caller to raise."""
    say(f"Error: {message}", "red", to=err_console)
    return typer.Exit(1)


@contextmanager
def api(ctx: typer.Context) -> Iterator[ApiClient]:
    """A client of the service named by the global options; an :class:`ApiError` raised in the
    block is printed (the server's message, in red) and ends the command with exit code 1."""
    target: Target = ctx.obj
    client = ApiClient(target.url, target.token)
    try:
        yield client
    except ApiError as error:
        raise fail(str(error)) from None
    finally:
        client.close()


# --- shared rendering (also used by service.demo) -------------------------------------------


def number(value: float | None, infinity: bool = False) -> str:
    """A short number for a table: 3 significant digits; ``∞`` when ``infinity``; ``—`` for
    ``None``."""
    if infinity:
        return "∞"
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.3g}"


def robustness_table(data: Robustness) -> Table:
    """The good-η table of a ``/robustness`` answer: one row per optimizer."""
    rule = (
        f"threshold {number(data.threshold)}"
        if data.mode == "absolute"
        else f"tolerance {number(data.tolerance)}"
    )
    better = "≥" if data.direction == "maximize" else "≤"
    table = Table(
        title=f"good-η ranges ({data.metric}, {data.direction})",
        caption=f"{rule}: good means {data.metric} {better} {number(data.cutoff)} with at least "
        f"{data.min_finite_fraction:.0%} of a cell's seeds finite; seeds = per cell, diverged = "
        "seeds that diverged over the optimizer's grid",
    )
    headers = ("optimizer", "η low", "η high", "decades", "best η", "best value", "seeds",
               "diverged")  # fmt: skip
    for header in headers:
        table.add_column(header, justify="left" if header == "optimizer" else "right")
    for name, r in data.ranges.items():
        run_has_inf = r.includes_infinity  # the run reaches ALI-G∞ (η = ∞)
        best_is_inf = r.best_eta is None and r.best_value is not None
        table.add_row(
            name,
            number(r.eta_low, infinity=run_has_inf and r.eta_low is None),
            number(r.eta_high, infinity=run_has_inf),
            number(r.decades, infinity=run_has_inf and r.eta_low is not None),
            number(r.best_eta, infinity=best_is_inf),
            number(r.best_value),
            str(r.seeds),
            str(r.diverged_seeds),
        )
    return table


def summary(study: StudySummary) -> str:
    """One line on a study: its status and trial counts (and its error, if any)."""
    p = study.progress
    line = (
        f"study {study.id} ({study.name}) {study.status}: "
        f"{p.done}/{p.total} trials finished, {p.diverged} diverged, {p.failed} failed"
    )
    if study.error:
        line += f" — {study.error}"
    return line


def _bar_fields(study: StudySummary) -> dict[str, Any]:
    """The progress bar's description, total, completed count and counts column."""
    p = study.progress
    return {
        "description": f"{escape(str(study.name))} [bold]{study.status}[/bold]",
        "total": p.total or None,  # None: an indeterminate bar (a search still sampling)
        "completed": p.done,
        "counts": f"running {p.running} · diverged {p.diverged} · failed {p.failed}",
    }


def follow(
    client: ApiClient,
    study_id: str,
    out: Console,
    interval: float = 1.0,
    timeout: float | None = None,
) -> StudyOut:
    """Show a live progress bar of the study until it is finished; return the last state.

    Raises :class:`ApiError` from the client, and ``TimeoutError`` when ``timeout`` seconds
    pass before the study finishes.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
    )
    updates = client.watch(study_id, interval)  # ends with the first finished state
    study = next(updates)  # errors (unknown id, no service) before any bar
    if study.status in FINISHED:
        return study
    with Progress(*columns, console=out) as progress:
        bar = progress.add_task(**_bar_fields(study))
        for study in updates:
            progress.update(bar, **_bar_fields(study))
            late = deadline is not None and time.monotonic() > deadline
            if late and study.status not in FINISHED:
                state = study.status
                raise TimeoutError(f"study {study_id} is still {state} after {timeout:g} s")
    return study


# --- overrides: KEY=JSON with dotted keys -------------------------------------------------------


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["budget={\\"epochs\\": 1}", "budget.epochs=1", "name=my-run"]`` → a nested dict.

    The value is JSON when it parses as JSON, else the plain string; a dotted key sets a nested
    field. Later items win and nested dicts merge. Raises ``ValueError`` on an item without ``=``.
    """
    merged: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected KEY=JSON, got {item!r}")
        try:
            value: Any = json.loads(text)
        except ValueError:
            value = text
        for part in reversed(key.strip().split(".")[1:]):
            value = {part: value}
        merged = merge(merged, {key.strip().split(".")[0]: value})
    return merged


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in (nested dicts merge by key, as the presets do)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_spec(path: Path) -> dict[str, Any]:
    """A study spec from a JSON or YAML file (``-``: standard input)."""
    text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    try:
        # YAML for every other name (and stdin): it reads JSON objects too
        spec = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise fail(f"{path}: not valid JSON/YAML: {error}") from None
    if not isinstance(spec, dict):
        raise fail(f"{path}: a study spec must be a JSON/YAML object (a mapping)")
    return spec


# --- commands ---------------------------------------------------------------------------------


@app.command()
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
        say(f"Error: {error}", "red", to=err_console)
        raise typer.Exit(2) from None
    base = f"http://{host}:{port}"
    console.print(
        f"Starting the η-sensitivity service: API {base} · docs {base}/docs · data in "
        f"{data_dir.resolve()}\n(a local Ray head takes a few seconds; the Ray dashboard URL "
        "is logged when the service is ready; Ctrl-C stops it all)",
        soft_wrap=True,
    )
    from service.server import serve as run  # heavy: the app, torch, Ray client

    # SIGTERM: uvicorn shuts down gracefully, restores this handler and re-raises the signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn has shut down, then re-raises it
        run(host=host, port=port, data_dir=data_dir, insecure=insecure)
    console.print("The service stopped.")


@app.command()
def submit(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Argument(
            exists=True, dir_okay=False, allow_dash=True, help="A JSON or YAML spec (- = stdin)."
        ),
    ] = None,
    preset: Annotated[str | None, typer.Option("--preset", "-p", help="A preset name.")] = None,
    override: Annotated[
        list[str] | None,
        typer.Option(
            "--override", "-O", help="KEY=JSON, e.g. budget='{\"epochs\": 1}' or budget.epochs=1."
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Same key + same spec → the same study, not a new one.")
    ] = None,
) -> None:
    """Submit a study from FILE or a --preset; print its id."""
    if (file is None) == (preset is None):
        raise typer.BadParameter("give either FILE or --preset NAME", param_hint="FILE")
    try:
        overrides = parse_overrides(override)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--override") from None
    with api(ctx) as client:
        if file is not None:
            created = client.submit(
                merge(read_spec(file), overrides), idempotency_key=idempotency_key
            )
        else:
            created = client.submit(
                preset=preset, overrides=overrides, idempotency_key=idempotency_key
            )
    say(
        f"Submitted study {created.name!r} ({created.n_trials} trials, "
        f"{created.status}); follow it with: sensitivity status {created.id}",
        to=err_console,
    )
    say(created.id)


@app.command()
def status(
    ctx: typer.Context,
    study_id: StudyId,
    watch: Annotated[
        bool, typer.Option(help="Follow a live progress bar until the study is finished.")
    ] = True,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between polls.")] = 1.0,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Give up (exit 1) after this many seconds.")
    ] = None,
) -> None:
    """Show a study's progress (live until it is finished), then a summary line.

    Exits with 1 when the study failed (or --timeout passed), 0 otherwise.
    """
    with api(ctx) as client:
        if watch:
            try:
                study = follow(client, study_id, console, interval, timeout)
            except TimeoutError as error:
                raise fail(str(error)) from None
        else:
            study = client.get_study(study_id)
    style = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(study.status)
    say(summary(study), style)
    if study.status == "failed":
        raise typer.Exit(1)


def _axes(items: list[str] | None) -> dict[str, str]:
    axes: dict[str, str] = {}
    for item in items or []:
        separator = "=" if "=" in item else ":"
        name, sep, value = item.partition(separator)
        if not sep or not name:
            raise typer.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--axis")
        axes[name] = value
    return axes


MetricOption = Annotated[
    str | None, typer.Option(help="final_objective (default), val_accuracy, …")
]
DirectionOption = Annotated[
    str | None, typer.Option(help="minimize or maximize (default: the metric's own).")
]
BatchSizeOption = Annotated[int | None, typer.Option(help="The batch-size slice.")]
RadiusOption = Annotated[str | None, typer.Option(help="The radius slice: a number or 'none'.")]
WeightDecayOption = Annotated[
    str | None, typer.Option(help="The weight-decay slice: a number or 'none'.")
]
AxisOption = Annotated[
    list[str] | None, typer.Option(help="Another axis's slice: NAME=VALUE (repeatable).")
]


@app.command()
def heatmap(
    ctx: typer.Context,
    study_id: StudyId,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The image to write: a .png or .svg file.")
    ],
    metric: MetricOption = None,
    direction: DirectionOption = None,
    batch_size: BatchSizeOption = None,
    radius: RadiusOption = None,
    weight_decay: WeightDecayOption = None,
    axis: AxisOption = None,
) -> None:
    """Write the optimizer × η heatmap image (PNG or SVG, by the file's suffix); print its path."""
    fmt = IMAGE_SUFFIXES.get(output.suffix.lower())
    if fmt is None:
        raise typer.BadParameter("use a .png or .svg file name", param_hint="--output")
    with api(ctx) as client:
        image = client.heatmap(
            study_id, format=fmt, metric=metric, direction=direction, batch_size=batch_size,
            radius=radius, weight_decay=weight_decay, axes=_axes(axis),
        )  # fmt: skip
    assert isinstance(image, bytes)  # format png or svg: the image itself
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(image)
    say(str(output))


def reproduction_table(data: Reproduction) -> Table:
    """The claims of a ``/reproduction`` answer: one row per claim."""
    budget = data.budget
    table = Table(
        title=f"reproduction of {data.preset or 'no preset'}",
        caption=f"budget: study {budget.get('study')}, paper {budget.get('paper')}",
    )
    for header in ("claim", "source", "claimed", "measured", "seeds", "status"):
        table.add_column(header, justify="right" if header in ("seeds",) else "left")
    for claim in data.claims:
        table.add_row(
            claim.id,
            claim.source,
            _plain(claim.claimed),
            _plain(claim.measured),
            f"{claim.seeds_holding}/{claim.seeds_total}",
            claim.status,
        )
    return table


def _plain(value: Any) -> str:
    """A claimed or measured value as short text (numbers through :func:`number`)."""
    if isinstance(value, float):
        return number(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    return "—" if value is None else str(value)


@app.command()
def reproduction(
    ctx: typer.Context,
    study_id: StudyId,
    json_output: Annotated[bool, typer.Option("--json", help="Print the JSON answer.")] = False,
) -> None:
    """Check the study's paper claims: claimed, measured, seeds that hold, pass/fail."""
    with api(ctx) as client:
        data = client.reproduction(study_id)
    if json_output:
        print(data.model_dump_json(indent=2))
        return
    console.print(reproduction_table(data))


@app.command()
def robustness(
    ctx: typer.Context,
    study_id: StudyId,
    tolerance: Annotated[
        float | None,
        typer.Option(help="Good = within this factor (minimise) or gap (maximise) of the best."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Good = better than this absolute value.")
    ] = None,
    metric: MetricOption = None,
    direction: DirectionOption = None,
    batch_size: BatchSizeOption = None,
    radius: RadiusOption = None,
    weight_decay: WeightDecayOption = None,
    axis: AxisOption = None,
) -> None:
    """Print the good-η range of each optimizer as a table."""
    with api(ctx) as client:
        data = client.robustness(
            study_id, tolerance=tolerance, threshold=threshold, metric=metric,
            direction=direction, batch_size=batch_size, radius=radius,
            weight_decay=weight_decay, axes=_axes(axis),
        )  # fmt: skip
    console.print(robustness_table(data))


@app.command()
def export(
    ctx: typer.Context,
    study_id: StudyId,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The CSV file to write (default: stdout)."),
    ] = None,
) -> None:
    """Export one CSV row per trial (axes, status, final objective, last metrics)."""
    with api(ctx) as client:
        text = client.export(study_id)
    assert isinstance(text, str)  # format csv: the text
    if output is None:
        sys.stdout.write(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    rows = max(len(text.splitlines()) - 1, 0)
    say(f"{output} ({rows} trials)")


@app.command()
def cancel(ctx: typer.Context, study_id: StudyId) -> None:
    """Cancel a pending or running study (finished trials keep their results)."""
    _act(ctx, study_id, ApiClient.cancel)


@app.command()
def resume(ctx: typer.Context, study_id: StudyId) -> None:
    """Re-launch an interrupted study: only its unfinished trials run."""
    _act(ctx, study_id, ApiClient.resume)


def _act(ctx: typer.Context, study_id: str, action: Callable[[ApiClient, str], StudyOut]) -> None:
    """Run a lifecycle action of the API on the study and print its summary."""
    with api(ctx) as client:
        study = action(client, study_id)
    say(summary(study))


@app.command()
def delete(
    ctx: typer.Context,
    study_id: StudyId,
) -> None:
    """Delete a finished study and all its results."""
    with api(ctx) as client:
        client.delete(study_id)
    say(f"study {study_id} deleted")


@app.command()
def reconcile(
    ctx: typer.Context,
    grace: Annotated[
        float | None,
        typer.Option(min=0, help="Skip studies changed less than this many seconds ago."),
    ] = None,
) -> None:
    """Run one reconciler pass now: launch stranded pending studies and relaunch studies whose
    driver died (the service also does it every SENSITIVITY_RECONCILE_INTERVAL_SECONDS)."""
    with api(ctx) as client:
        report = client.reconcile(grace_seconds=grace)
    say(
        f"checked {report['checked']} unfinished studies: {len(report['launched'])} launched, "
        f"{len(report['resumed'])} relaunched, {len(report['failed'])} failed, "
        f"{len(report['noted'])} with a reason noted"
    )
    for action in ("launched", "resumed", "failed", "noted"):
        for study_id in report[action]:
            say(f"  {action}: {study_id}")
    if report["error"]:
        raise fail(f"the pass stopped: {report['error']}")


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only studies in this status.")] = None,
    task: Annotated[str | None, typer.Option(help="Only studies of this task.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only studies with this tag.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 50,
) -> None:
    """List studies, newest first."""
    with api(ctx) as client:
        page = client.list_studies(status=status, task=task, tag=tag, limit=limit)
    table = Table(title="studies")
    for header in ("id", "name", "task", "status", "done", "created"):
        table.add_column(header, no_wrap=header == "id")
    for study in page.items:
        p = study.progress
        table.add_row(
            study.id, study.name or "", study.task or "", study.status, f"{p.done}/{p.total}",
            study.created_at.isoformat()[:19],
        )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    app()
