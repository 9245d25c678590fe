"""The analysis commands: ``heatmap``, ``robustness``, ``tunability``, ``importance``,
``sensitivity``, ``compare``, ``reproduction``, ``export`` (the answers of the API).

Every analysis takes the metric, its direction, ``--value final|best`` and (but importance,
which reads every slice) the slice of the other axes; each prints a table, or with ``--json``
the API's body, and the drawn ones write a plot with ``-o FILE.png|svg|pdf``.
"""

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from service.cli import render
from service.cli.core import (
    AxisOption,
    BatchSizeOption,
    DirectionOption,
    JsonOption,
    MetricOption,
    MinFiniteOption,
    RadiusOption,
    StudyId,
    ValueOption,
    WeightDecayOption,
    answer_json,
    api,
    app,
    console,
    say,
    selection,
    usage_error,
)
from service.cli.images import ImageOutput, image_format, write_image

PANEL = "Analysis"


@app.command(rich_help_panel=PANEL)
def heatmap(
    ctx: typer.Context,
    study_id: StudyId,
    output: ImageOutput = None,
    metric: MetricOption = None,
    direction: DirectionOption = None,
    value: ValueOption = None,
    batch_size: BatchSizeOption = None,
    radius: RadiusOption = None,
    weight_decay: WeightDecayOption = None,
    axis: AxisOption = None,
    json_output: JsonOption = False,
) -> None:
    """The optimizer × η heatmap (median over seeds per cell): a table, --json, or the image
    with -o FILE.png|svg|pdf (its path is printed)."""
    fmt = image_format(output, json_output)
    chosen = selection(metric, direction, value, batch_size, radius, weight_decay, axis)
    with api(ctx) as client:
        if fmt is not None:
            write_image(client.heatmap(study_id, format=fmt, **chosen), output)
            return
        data = client.heatmap(study_id, **chosen)
        if json_output:
            answer_json(client)
            return
    console.print(render.heatmap_table(data))


@app.command(rich_help_panel=PANEL)
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
    min_finite_fraction: MinFiniteOption = None,
    metric: MetricOption = None,
    direction: DirectionOption = None,
    value: ValueOption = None,
    batch_size: BatchSizeOption = None,
    radius: RadiusOption = None,
    weight_decay: WeightDecayOption = None,
    axis: AxisOption = None,
    json_output: JsonOption = False,
) -> None:
    """The good-η range of each optimizer (the widest contiguous range of good cells)."""
    chosen = selection(metric, direction, value, batch_size, radius, weight_decay, axis)
    with api(ctx) as client:
        data = client.robustness(
            study_id, tolerance=tolerance, threshold=threshold,
            min_finite_fraction=min_finite_fraction, **chosen,
        )  # fmt: skip
        if json_output:
            answer_json(client)
            return
    console.print(render.robustness_table(data))


@app.command(rich_help_panel=PANEL)
def tunability(
    ctx: typer.Context,
    study_id: StudyId,
    k_max: Annotated[
        int | None, typer.Option(min=1, max=1000, help="Draws up to this k (default: the grid).")
    ] = None,
    diverged: Annotated[
        Literal["worst", "inf"],
        typer.Option(help="A diverged trial counts as the worst finite value, or as ∞."),
    ] = "worst",
    min_finite_fraction: MinFiniteOption = None,
    output: ImageOutput = None,
    metric: MetricOption = None,
    direction: DirectionOption = None,
    value: ValueOption = None,
    batch_size: BatchSizeOption = None,
    radius: RadiusOption = None,
    weight_decay: WeightDecayOption = None,
    axis: AxisOption = None,
    json_output: JsonOption = False,
) -> None:
    """The expected best after k random η draws and the CPE score of each optimizer: a table,
    --json, or the plot with -o FILE.png|svg|pdf."""
    fmt = image_format(output, json_output)
    chosen = selection(metric, direction, value, batch_size, radius, weight_decay, axis)
    options = {"k_max": k_max, "diverged": diverged, "min_finite_fraction": min_finite_fraction}
    with api(ctx) as client:
        if fmt is not None:
            write_image(client.plot(study_id, "tunability", fmt, **options, **chosen), output)
            return
        data = client.tunability(study_id, **options, **chosen)
        if json_output:
            answer_json(client)
            return
    console.print(render.tunability_table(data))


@app.command(rich_help_panel=PANEL)
def importance(
    ctx: typer.Context,
    study_id: StudyId,
    optimizer: Annotated[str | None, typer.Option(help="Only this optimizer.")] = None,
    output: ImageOutput = None,
    metric: MetricOption = None,
    direction: DirectionOption = None,
    value: ValueOption = None,
    json_output: JsonOption = False,
) -> None:
    """The importance of η, batch size, radius and weight decay per optimizer (fANOVA and
    PED-ANOVA over every slice; diverged trials enter as a penalty): a table, --json, or the
    plot with -o FILE.png|svg|pdf."""
    fmt = image_format(output, json_output)
    chosen = {"optimizer": optimizer, "metric": metric, "direction": direction, "value": value}
    with api(ctx) as client:
        if fmt is not None:
            write_image(client.plot(study_id, "importance", fmt, **chosen), output)
            return
        data = client.importance(study_id, **chosen)
        if json_output:
            answer_json(client)
            return
    console.print(render.importance_table(data))


@app.command(rich_help_panel=PANEL)
def sensitivity(
    ctx: typer.Context,
    study_id: StudyId,
    output: ImageOutput = None,
    metric: MetricOption = None,
    direction: DirectionOption = None,
    value: ValueOption = None,
    batch_size: BatchSizeOption = None,
    radius: RadiusOption = None,
    weight_decay: WeightDecayOption = None,
    axis: AxisOption = None,
    json_output: JsonOption = False,
) -> None:
    """The metric against η per optimizer, with the seeds' range: a table, --json, or the plot
    with -o FILE.png|svg|pdf."""
    fmt = image_format(output, json_output)
    chosen = selection(metric, direction, value, batch_size, radius, weight_decay, axis)
    with api(ctx) as client:
        if fmt is not None:
            write_image(client.sensitivity(study_id, format=fmt, **chosen), output)
            return
        data = client.sensitivity(study_id, **chosen)
        if json_output:
            answer_json(client)
            return
    console.print(render.sensitivity_table(data))


@app.command(rich_help_panel=PANEL)
def reproduction(ctx: typer.Context, study_id: StudyId, json_output: JsonOption = False) -> None:
    """Check the study's paper claims: claimed, measured, seeds that hold, pass/fail."""
    with api(ctx) as client:
        data = client.reproduction(study_id)
        if json_output:
            answer_json(client)
            return
    console.print(render.reproduction_table(data))


@app.command(rich_help_panel=PANEL)
def export(
    ctx: typer.Context,
    study_id: StudyId,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The CSV file to write (default: stdout)."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the rows as the API's JSON instead of CSV.")
    ] = False,
) -> None:
    """Export one row per trial (axes, status, final objective, last metrics) as CSV."""
    if output is not None and json_output:
        usage_error("--output writes CSV and --json prints JSON: give one of them")
    with api(ctx) as client:
        if json_output:
            client.export(study_id, format="json")
            answer_json(client)
            return
        text = client.export(study_id)
    assert isinstance(text, str)  # format csv: the text
    if output is None:
        sys.stdout.write(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    rows = max(len(text.splitlines()) - 1, 0)
    say(f"{output} ({rows} trials)")


@app.command(rich_help_panel=PANEL)
def compare(
    ctx: typer.Context,
    study_ids: Annotated[
        list[str], typer.Argument(metavar="ID...", help="The studies to compare (one or more).")
    ],
    output: ImageOutput = None,
    tau_max: Annotated[
        float | None, typer.Option(help="The largest performance ratio τ of the profiles.")
    ] = None,
    min_finite_fraction: MinFiniteOption = None,
    metric: MetricOption = None,
    direction: DirectionOption = None,
    value: ValueOption = None,
    batch_size: BatchSizeOption = None,
    radius: RadiusOption = None,
    weight_decay: WeightDecayOption = None,
    axis: AxisOption = None,
    json_output: JsonOption = False,
) -> None:
    """Compare studies: per optimizer each study's good-η range, best value and CPE, and the
    performance profiles over the studies (a table, --json, or the profile plot with -o)."""
    fmt = image_format(output, json_output)
    chosen = selection(metric, direction, value, batch_size, radius, weight_decay, axis)
    options = {"tau_max": tau_max, "min_finite_fraction": min_finite_fraction}
    with api(ctx) as client:
        if fmt is not None:
            write_image(client.compare(study_ids, format=fmt, **chosen, **options), output)
            return
        data = client.compare(study_ids, **chosen, **options)
        if json_output:
            answer_json(client)
            return
    console.print(render.compare_table(data))
