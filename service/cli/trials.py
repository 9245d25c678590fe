"""The trial commands: ``trials`` (a filtered page), ``trial`` (one), ``curve`` (its reported
metrics, as a table, JSON or a plot) — ``/studies/{id}/trials`` of the API — and ``curves``
(every trial's curve of one metric, ``/studies/{id}/curves``)."""

from typing import TYPE_CHECKING, Annotated

import typer

from service.cli import render
from service.cli.core import (
    SLICE_OPTIONS,
    JsonOption,
    StudyId,
    answer,
    app,
    console,
    printed,
    slice_of,
)
from service.cli.groups import GroupValues, grouped
from service.cli.images import ImageOutput, answer_or_image, image_format
from service.cli.studies import CursorOption, more
from studies.statuses import TrialStatus

if TYPE_CHECKING:  # the client's models are imported when a command runs (service.cli.core)
    from service.models import TrialPage

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

    def show(page: "TrialPage") -> None:
        console.print(render.trials_table(page))
        more(page.next_cursor, f"sensitivity trials {study_id}")

    answer(
        ctx, json_output,
        lambda client: client.trials(
            study_id, optimizer=optimizer, status=status, eta_min=eta_min, eta_max=eta_max,
            limit=limit, cursor=cursor,
        ),
        show,
    )  # fmt: skip


@app.command(rich_help_panel=PANEL)
def trial(
    ctx: typer.Context, study_id: StudyId, key: TrialKey, json_output: JsonOption = False
) -> None:
    """Show one trial: axes, status, result, attempts, last metrics (--json: its config too)."""
    answer(
        ctx, json_output, lambda client: client.trial(study_id, key), printed(render.trial_table)
    )


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
    answer_or_image(
        ctx, json_output, lambda client: client.curve(study_id, key, name=name),
        printed(render.curve_table), output=output, fmt=fmt,
        draw=lambda client, fmt: client.curve(study_id, key, name=name, format=fmt),
    )  # fmt: skip


@app.command(rich_help_panel=PANEL)
@grouped(sliced=SLICE_OPTIONS)
def curves(
    ctx: typer.Context,
    study_id: StudyId,
    metric: Annotated[str | None, typer.Option(help="The curve (default train_loss).")] = None,
    optimizer: Annotated[str | None, typer.Option(help="Only this optimizer.")] = None,
    eta: Annotated[
        str | None, typer.Option(help="With --optimizer: one cell's seeds (a number or 'none').")
    ] = None,
    output: ImageOutput = None,
    *,
    sliced: GroupValues,
    json_output: JsonOption = False,
) -> None:
    """Every trial's curve of one metric in a slice (or one cell's seeds): a table of each
    trial's last point, --json, or the figure with -o FILE.png|svg|pdf."""
    fmt = image_format(output, json_output)
    chosen = {"metric": metric, "optimizer": optimizer, "eta": eta, **slice_of(**sliced)}
    answer_or_image(
        ctx, json_output, lambda client: client.curves(study_id, **chosen),
        printed(render.curves_table), output=output, fmt=fmt,
        draw=lambda client, fmt: client.curves(study_id, format=fmt, **chosen),
    )  # fmt: skip
