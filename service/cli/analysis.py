"""The analysis commands: ``heatmap``, ``robustness``, ``tunability``, ``importance``,
``sensitivity``, ``compare``, ``reproduction``, ``export`` (the answers of the API).

Every analysis takes the metric, its direction, ``--value final|best`` and (but importance,
which reads every slice) the slice of the other axes; each prints a table, or with ``--json``
the API's body, and the drawn ones write a plot with ``-o FILE.png|svg|pdf``.
"""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from service.cli import render
from service.cli.core import (
    MEASURE_OPTIONS,
    SELECTION_OPTIONS,
    JsonOption,
    MinFiniteOption,
    StudyId,
    answer,
    answer_json,
    api,
    app,
    printed,
    say,
    selection,
    usage_error,
)
from service.cli.groups import GroupValues, grouped
from service.cli.images import ImageOutput, answer_or_image, image_format

PANEL = "Analysis"


def selection_figure(
    name: str, table: Callable[[Any], Table], help_text: str
) -> Callable[..., None]:
    """Register the command ``name`` of an analysis that takes a study and the selection alone
    and is drawn with ``-o``, ``ApiClient.<name>`` (which takes ``format``): its ``table``, its
    JSON (--json) or its image (-o); the command, which typer calls."""

    @app.command(name, rich_help_panel=PANEL, help=help_text)
    @grouped(selected=SELECTION_OPTIONS)
    def command(
        ctx: typer.Context,
        study_id: StudyId,
        output: ImageOutput = None,
        *,
        selected: GroupValues,
        json_output: JsonOption = False,
    ) -> None:
        fmt = image_format(output, json_output)
        chosen = selection(**selected)

        def fetch(client: Any, format: str = "json") -> Any:
            return getattr(client, name)(study_id, format=format, **chosen)

        answer_or_image(ctx, json_output, fetch, printed(table), output=output, fmt=fmt, draw=fetch)

    return command


heatmap = selection_figure(
    "heatmap",
    render.heatmap_table,
    """The optimizer × η heatmap (median over seeds per cell): a table, --json, or the image
    with -o FILE.png|svg|pdf (its path is printed).""",
)


@app.command(rich_help_panel=PANEL)
@grouped(selected=SELECTION_OPTIONS)
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
    *,
    selected: GroupValues,
    json_output: JsonOption = False,
) -> None:
    """The good-η range of each optimizer (the widest contiguous range of good cells)."""
    chosen = selection(**selected)
    options = {"tolerance": tolerance, "threshold": threshold,
               "min_finite_fraction": min_finite_fraction}  # fmt: skip
    answer(
        ctx, json_output, lambda client: client.robustness(study_id, **options, **chosen),
        printed(render.robustness_table),
    )  # fmt: skip


@app.command(rich_help_panel=PANEL)
@grouped(selected=SELECTION_OPTIONS)
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
    *,
    selected: GroupValues,
    json_output: JsonOption = False,
) -> None:
    """The expected best after k random η draws and the CPE score of each optimizer: a table,
    --json, or the plot with -o FILE.png|svg|pdf."""
    fmt = image_format(output, json_output)
    chosen = selection(**selected)
    options = {"k_max": k_max, "diverged": diverged, "min_finite_fraction": min_finite_fraction}
    answer_or_image(
        ctx, json_output, lambda client: client.tunability(study_id, **options, **chosen),
        printed(render.tunability_table), output=output, fmt=fmt,
        draw=lambda client, fmt: client.plot(study_id, "tunability", fmt, **options, **chosen),
    )  # fmt: skip


@app.command(rich_help_panel=PANEL)
@grouped(measured=MEASURE_OPTIONS)
def importance(
    ctx: typer.Context,
    study_id: StudyId,
    optimizer: Annotated[str | None, typer.Option(help="Only this optimizer.")] = None,
    output: ImageOutput = None,
    *,
    measured: GroupValues,
    json_output: JsonOption = False,
) -> None:
    """The importance of η, batch size, radius and weight decay per optimizer (fANOVA and
    PED-ANOVA over every slice; diverged trials enter as a penalty): a table, --json, or the
    plot with -o FILE.png|svg|pdf."""
    fmt = image_format(output, json_output)
    chosen = {"optimizer": optimizer, **measured}
    answer_or_image(
        ctx, json_output, lambda client: client.importance(study_id, **chosen),
        printed(render.importance_table), output=output, fmt=fmt,
        draw=lambda client, fmt: client.plot(study_id, "importance", fmt, **chosen),
    )  # fmt: skip


sensitivity = selection_figure(
    "sensitivity",
    render.sensitivity_table,
    """The metric against η per optimizer, with the seeds' range: a table, --json, or the plot
    with -o FILE.png|svg|pdf.""",
)


@app.command(rich_help_panel=PANEL)
def reproduction(ctx: typer.Context, study_id: StudyId, json_output: JsonOption = False) -> None:
    """Check the study's paper claims: claimed, measured, seeds that hold, pass/fail."""
    answer(
        ctx, json_output, lambda client: client.reproduction(study_id),
        printed(render.reproduction_table),
    )  # fmt: skip


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
@grouped(selected=SELECTION_OPTIONS)
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
    *,
    selected: GroupValues,
    json_output: JsonOption = False,
) -> None:
    """Compare studies: per optimizer each study's good-η range, best value and CPE, and the
    performance profiles over the studies (a table, --json, or the profile plot with -o)."""
    fmt = image_format(output, json_output)
    chosen = selection(**selected)
    options = {"tau_max": tau_max, "min_finite_fraction": min_finite_fraction}
    answer_or_image(
        ctx, json_output, lambda client: client.compare(study_ids, **chosen, **options),
        printed(render.compare_table), output=output, fmt=fmt,
        draw=lambda client, fmt: client.compare(study_ids, format=fmt, **chosen, **options),
    )  # fmt: skip
