"""The trial commands: ``trials`` (a filtered page), ``trial`` (one), ``curve`` (its reported
metrics, as a table, JSON or a plot) — ``/studies/{id}/trials`` of the API — and ``curves``
(every trial's curve of one metric, ``/studies/{id}/curves``)."""

from typing import Annotated

import typer

from service.cli import render
from service.cli.core import (
    AxisOption,
    BatchSizeOption,
    JsonOption,
    RadiusOption,
    StudyId,
    WeightDecayOption,
    answer_json,
    api,
    app,
    axes,
    console,
)
from service.cli.images import ImageOutput, image_format, write_image
from service.cli.studies import CursorOption, more
from studies.statuses import TrialStatus

PANEL = "Trials"
TrialKey = Annotated[
    str, typer.Argument(metavar="KEY", help="The trial's key (`trials` lists them).")
]


@app.command(rich_help_panel=PANEL)
def trials(
    ctx: typer.Context,
    study_id: StudyId,
    optimizer: Annotated[
        str | None, typer.Option(help="Only this optimizer's trials (its heatmap row).")
    ] = None,
    status: Annotated[TrialStatus | None, typer.Option(help="Only trials in this status.")] = None,
    eta_min: Annotated[float | None, typer.Option(help="Only trials with η ≥ this.")] = None,
    eta_max: Annotated[float | None, typer.Option(help="Only trials with η ≤ this.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 100,
    cursor: CursorOption = None,
    json_output: JsonOption = False,
) -> None:
    """List a study's trials in creation order (one page; the next page's cursor goes to
    stderr)."""
    with api(ctx) as client:
        page = client.trials(
            study_id, optimizer=optimizer, status=status, eta_min=eta_min, eta_max=eta_max,
            limit=limit, cursor=cursor,
        )  # fmt: skip
        if json_output:
            answer_json(client)
            return
    console.print(render.trials_table(page))
    more(page.next_cursor, f"sensitivity trials {study_id}")


@app.command(rich_help_panel=PANEL)
def trial(
    ctx: typer.Context, study_id: StudyId, key: TrialKey, json_output: JsonOption = False
) -> None:
    """Show one trial: axes, status, result, attempts, last metrics (--json: its config too)."""
    with api(ctx) as client:
        record = client.trial(study_id, key)
        if json_output:
            answer_json(client)
            return
    console.print(render.trial_table(record))


@app.command(rich_help_panel=PANEL)
def curve(
    ctx: typer.Context,
    study_id: StudyId,
    key: TrialKey,
    name: Annotated[
        str | None, typer.Option(help="Only this metric (train_loss, val_accuracy, …).")
    ] = None,
    output: ImageOutput = None,
    json_output: JsonOption = False,
) -> None:
    """A trial's reported metrics step by step: a table, --json, or a plot with -o FILE."""
    fmt = image_format(output, json_output)
    with api(ctx) as client:
        if fmt is not None:
            write_image(client.curve(study_id, key, name=name, format=fmt), output)
            return
        points = client.curve(study_id, key, name=name)
        if json_output:
            answer_json(client)
            return
    console.print(render.curve_table(points))


@app.command(rich_help_panel=PANEL)
def curves(
    ctx: typer.Context,
    study_id: StudyId,
    metric: Annotated[str | None, typer.Option(help="The curve (default train_loss).")] = None,
    optimizer: Annotated[str | None, typer.Option(help="Only this optimizer.")] = None,
    eta: Annotated[
        str | None, typer.Option(help="With --optimizer: one cell's seeds (a number or 'none').")
    ] = None,
    output: ImageOutput = None,
    batch_size: BatchSizeOption = None,
    radius: RadiusOption = None,
    weight_decay: WeightDecayOption = None,
    axis: AxisOption = None,
    json_output: JsonOption = False,
) -> None:
    """Every trial's curve of one metric in a slice (or one cell's seeds): a table of each
    trial's last point, --json, or the figure with -o FILE.png|svg|pdf."""
    fmt = image_format(output, json_output)
    where = {"batch_size": batch_size, "radius": radius, "weight_decay": weight_decay,
             "axes": axes(axis)}  # fmt: skip
    chosen = {"metric": metric, "optimizer": optimizer, "eta": eta, **where}
    with api(ctx) as client:
        if fmt is not None:
            write_image(client.curves(study_id, format=fmt, **chosen), output)
            return
        body = client.curves(study_id, **chosen)
        if json_output:
            answer_json(client)
            return
    console.print(render.curves_table(body))
