"""The study commands: ``list``, ``show``, ``submit``, ``extend``, ``status``, ``cancel``,
``resume``, ``delete``, ``reconcile`` (``/studies`` of the API)."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from service.cli import render
from service.cli.core import (
    ExitCode,
    JsonOption,
    StudyId,
    answer,
    answer_json,
    api,
    app,
    console,
    err_console,
    fail,
    note,
    say,
    usage_error,
)
from service.cli.follow import follow
from service.cli.overrides import merge, overrides_option, read_spec
from studies.statuses import StudyStatus

if TYPE_CHECKING:  # the client and its models are imported when a command runs (core)
    from service.client import ApiClient
    from service.models import StudyExtension, StudyOut, StudyPage

PANEL = "Studies"
SpecFile = Annotated[
    Path | None,
    typer.Argument(
        exists=True, dir_okay=False, allow_dash=True, help="A JSON or YAML file (- = stdin)."
    ),
]
OverrideOption = Annotated[
    list[str] | None,
    typer.Option(
        "--override", "-O", help="KEY=JSON, e.g. budget='{\"epochs\": 1}' or budget.epochs=1."
    ),
]
CursorOption = Annotated[
    str | None, typer.Option(help="Start at this page (a previous answer's next_cursor).")
]
SUCCESS_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}


def more(next_cursor: str | None, command: str) -> None:
    """Say on stderr how to get the next page, if there is one."""
    if next_cursor:
        note(f"more: {command} --cursor {next_cursor}")


def say_summary(study: "StudyOut") -> None:
    """The ``show`` of a write that answers the study (``cancel``, ``resume``): its summary."""
    say(render.summary(study))


@app.command("list", rich_help_panel=PANEL)
def list_(
    ctx: typer.Context,
    status: Annotated[StudyStatus | None, typer.Option(help="Only studies in this status.")] = (
        None
    ),
    task: Annotated[str | None, typer.Option(help="Only studies of this task.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only studies with this tag.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 50,
    cursor: CursorOption = None,
    json_output: JsonOption = False,
) -> None:
    """List studies, newest first (one page; the next page's cursor goes to stderr)."""

    def show(page: "StudyPage") -> None:
        console.print(render.studies_table(page))
        more(page.next_cursor, "sensitivity list")

    answer(
        ctx, json_output,
        lambda client: client.list_studies(
            status=status, task=task, tag=tag, limit=limit, cursor=cursor
        ),
        show,
    )  # fmt: skip


@app.command(rich_help_panel=PANEL)
def show(ctx: typer.Context, study_id: StudyId, json_output: JsonOption = False) -> None:
    """Show a study: status, progress, timestamps, Ray job, and its spec."""

    def show_study(study: "StudyOut") -> None:
        console.print(render.study_table(study))
        say("spec:")
        say(render.spec_text(study.spec))

    answer(ctx, json_output, lambda client: client.get_study(study_id), show_study)


@app.command(rich_help_panel=PANEL)
def submit(
    ctx: typer.Context,
    file: SpecFile = None,
    preset: Annotated[str | None, typer.Option("--preset", "-p", help="A preset name.")] = None,
    override: OverrideOption = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Same key + same spec → the same study, not a new one.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the created study's JSON instead of its id.")
    ] = False,
) -> None:
    """Submit a study from FILE or a --preset; print its id (ID=$(sensitivity submit …))."""
    if (file is None) == (preset is None):
        usage_error("give either FILE or --preset NAME")
    overrides = overrides_option(override)
    spec = None if file is None else merge(read_spec(file), overrides)
    with api(ctx) as client:
        if spec is not None:
            created = client.submit(spec, idempotency_key=idempotency_key)
        else:
            created = client.submit(
                preset=preset, overrides=overrides, idempotency_key=idempotency_key
            )
        if json_output:
            answer_json(client)
    note(
        f"Submitted study {created.name!r} ({created.n_trials} trials, {created.status}); "
        f"follow it with: sensitivity status {created.id}"
    )
    if not json_output:
        say(created.id)


@app.command(rich_help_panel=PANEL)
def extend(
    ctx: typer.Context,
    study_id: StudyId,
    file: SpecFile = None,
    override: OverrideOption = None,
    json_output: JsonOption = False,
) -> None:
    """Add trials to a finished study and run it again: FILE and/or -O give what to add
    (e.g. -O 'grid.eta=[0.3]' -O 'grid.seed=[1]'); only the new trials run."""
    overrides = overrides_option(override)
    body = merge({} if file is None else read_spec(file), overrides)
    if not body:
        usage_error("give what to add: a FILE and/or -O KEY=JSON")

    def show(extension: "StudyExtension") -> None:
        say(
            f"{render.summary(extension.study)}; {extension.added} trials added, "
            f"{extension.reused} kept; follow it with: sensitivity status {extension.study.id}"
        )

    answer(ctx, json_output, lambda client: client.extend(study_id, body), show)


@app.command(rich_help_panel=PANEL)
def status(
    ctx: typer.Context,
    study_id: StudyId,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch/--no-watch", help="Follow a live progress bar (on stderr) until it ends."
        ),
    ] = True,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between polls.")] = 1.0,
    timeout: Annotated[
        float | None, typer.Option(min=0, help="Give up (exit 5) after this many seconds.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the last state's JSON (the study) on stdout.")
    ] = False,
) -> None:
    """Follow a study live until it is finished, then print a summary line.

    Exit 0 when it succeeded (or, with --no-watch, is still unfinished), 4 when it finished
    failed, cancelled or with failed trials, 5 when --timeout passed first.
    """

    def read(client: "ApiClient") -> "StudyOut":
        if not watch:
            return client.get_study(study_id)
        try:
            return follow(client, study_id, err_console, interval, timeout)
        except TimeoutError as error:
            raise fail(str(error), ExitCode.TIMEOUT) from None

    study = answer(
        ctx,
        json_output,
        read,
        lambda study: say(render.summary(study), SUCCESS_STYLE.get(study.status)),
    )
    finished = study.status in SUCCESS_STYLE
    if finished and (study.status != "succeeded" or study.progress.failed):
        raise typer.Exit(int(ExitCode.STUDY_UNSUCCESSFUL))


@app.command(rich_help_panel=PANEL)
def cancel(ctx: typer.Context, study_id: StudyId, json_output: JsonOption = False) -> None:
    """Cancel a pending or running study (finished trials keep their results)."""
    answer(ctx, json_output, lambda client: client.cancel(study_id), say_summary)


@app.command(rich_help_panel=PANEL)
def resume(ctx: typer.Context, study_id: StudyId, json_output: JsonOption = False) -> None:
    """Re-launch an interrupted study: only its unfinished trials run."""
    answer(ctx, json_output, lambda client: client.resume(study_id), say_summary)


@app.command(rich_help_panel=PANEL)
def delete(ctx: typer.Context, study_id: StudyId) -> None:
    """Delete a finished study and all its results."""
    with api(ctx) as client:
        client.delete(study_id)
    say(f"study {study_id} deleted")


@app.command(rich_help_panel=PANEL)
def reconcile(
    ctx: typer.Context,
    grace: Annotated[
        float | None,
        typer.Option(min=0, help="Skip studies changed less than this many seconds ago."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Run one reconciler pass now: launch stranded pending studies and relaunch studies whose
    driver died (the service also does it every SENSITIVITY_RECONCILE_INTERVAL_SECONDS).

    Exit 1 when the pass stopped because the cluster did not answer.
    """

    def show(report: dict[str, Any]) -> None:
        for line in render.reconcile_lines(report):
            say(line)

    report = answer(ctx, json_output, lambda client: client.reconcile(grace_seconds=grace), show)
    if report["error"]:
        raise fail(f"the pass stopped: {report['error']}")
