"""What a study may use and whether the service is up: ``presets``, ``tasks``, ``optimizers``,
``health``."""

import typer

from service.cli import render
from service.cli.core import (
    ExitCode,
    JsonOption,
    answer,
    answer_json,
    api,
    app,
    console,
    fail,
    printed,
)

PANEL = "Catalog and service"


@app.command(rich_help_panel=PANEL)
def presets(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """The shipped study presets (submit one with: sensitivity submit --preset NAME)."""
    answer(ctx, json_output, lambda client: client.presets(), printed(render.presets_table))


@app.command(rich_help_panel=PANEL)
def tasks(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """The tasks: budget unit, metrics and their direction (--json: the options' schema)."""
    answer(ctx, json_output, lambda client: client.tasks(), printed(render.tasks_table))


@app.command(rich_help_panel=PANEL)
def optimizers(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """The optimizers: what η means for each, how it steps, its options and defaults."""
    answer(ctx, json_output, lambda client: client.optimizers(), printed(render.optimizers_table))


@app.command(rich_help_panel=PANEL)
def health(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Whether the service's database and Ray answer; exit 1 when either is down (503)."""
    from service.client import ApiError
    from service.models import Health

    with api(ctx) as client:
        try:
            data = client.health()
        except ApiError as error:
            answered = client.last_response
            if error.status != 503 or answered is None:
                raise
            # degraded: the 503's body is the same report; show it, then exit 1
            data = Health.model_validate_json(answered.content)
        if json_output:
            answer_json(client)
        else:
            console.print(render.health_table(data))
    if data.status != "ok":
        raise fail(f"the service is {data.status}", ExitCode.API_ERROR)
