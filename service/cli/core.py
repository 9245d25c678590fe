"""The CLI's frame: the Typer app and its global options, the exit codes, the client context,
and the two ways a command writes its answer (``--json`` or a rich table).

Every command but ``serve`` talks to the service over HTTP through :func:`api`, which turns
every :class:`~service.client.ApiError` into one red line on stderr and the exit code of
:data:`EXIT_CODES`: this module is the one place where exit codes are decided.

The client (httpx, and the response models, which pull in SQLAlchemy and the analysis) is
imported only when a command runs: ``--help``, ``--version`` and shell completion (which runs
the program on every TAB) stay fast.
"""

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, TypeVar

import typer
from rich.console import Console, RenderableType

from service.cli.groups import OptionGroup

if TYPE_CHECKING:
    from service.client import ApiClient, ApiError

DEFAULT_URL = "http://127.0.0.1:8000"
DISTRIBUTION = "eta-sensitivity"  # the name in pyproject.toml
T = TypeVar("T")


class ExitCode(IntEnum):
    """What a command's exit status means (the same for every command)."""

    OK = 0
    API_ERROR = 1  # the service answered with an error (4xx, or 5xx such as 503 "no cluster")
    USAGE = 2  # a bad command line, option value, -O override or spec file: nothing was sent
    UNREACHABLE = 3  # no answer: nothing listens at --url, a timeout, a bad URL, not this API
    STUDY_UNSUCCESSFUL = 4  # the study finished but failed, was cancelled or has failed trials
    TIMEOUT = 5  # --timeout passed before the study finished


# the table of --help and docs/cli.md, from the same source as the codes
EXIT_CODES: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.API_ERROR: "the service refused the request (HTTP 4xx/5xx); the message is its detail",
    ExitCode.USAGE: "usage error: a bad option, argument, `-O` override or spec file",
    ExitCode.UNREACHABLE: "the service is unreachable (not running, wrong `--url`, timeout)",
    ExitCode.STUDY_UNSUCCESSFUL: "the study finished but failed, was cancelled or has failed "
    "trials (`status`)",
    ExitCode.TIMEOUT: "`status --timeout` passed before the study finished",
}


def exit_code_of(error: "ApiError") -> ExitCode:
    """The exit code of a failed request: an HTTP error status, or no HTTP answer at all."""
    return ExitCode.UNREACHABLE if error.status is None else ExitCode.API_ERROR


HELP = (
    "η-sensitivity studies of deep-learning optimizers: serve, submit, follow, analyse.\n\n"
    "Every command but `serve` talks to the service at `--url` (or `SENSITIVITY_URL`); reads "
    "take `--json` to print the API's JSON body, and nothing else, on stdout.\n\n"
    "**Exit codes**\n\n"
    + "\n".join(f"* **{int(code)}** {text}" for code, text in EXIT_CODES.items())
    + "\n\nShell completion: `sensitivity --install-completion` (bash, zsh, fish, PowerShell)."
)

app = typer.Typer(
    name="sensitivity",
    help=HELP,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)  # stdout (rich resolves sys.stdout when it prints)
err_console = Console(stderr=True, highlight=False)


@dataclass(frozen=True)
class Target:
    """Where the commands send their requests (the global options)."""

    url: str
    token: str | None


def package_version() -> str:
    """The installed package's version (``unknown`` when run from a tree never installed)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


def _print_version(given: bool) -> None:
    if given:
        print(f"sensitivity {package_version()}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="SENSITIVITY_URL", help="The service's base URL.")
    ] = DEFAULT_URL,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="SENSITIVITY_API_TOKEN",
            help="API token, sent as 'Authorization: Bearer' (mutations need it when the "
            "service has one).",
        ),
    ] = None,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the package version and exit.",
        ),
    ] = False,
) -> None:
    ctx.obj = Target(url=url, token=token or None)


# --- output -----------------------------------------------------------------------------------


def say(text: str, style: str | None = None, *, to: Console = console) -> None:
    """Print ``text`` as it is: no rich markup or emoji codes (ids, paths, names, reasons and
    server messages may hold ``[bold]`` or ``:x:``) and no wrapping (so they stay whole to
    copy)."""
    to.print(text, style=style, markup=False, emoji=False, soft_wrap=True)


def note(text: str) -> None:
    """A hint for the person at the terminal: on stderr, so stdout stays the answer."""
    say(text, "dim", to=err_console)


def fail(message: str, code: ExitCode = ExitCode.API_ERROR) -> typer.Exit:
    """Print ``Error: message`` as one red line on stderr (a YAML or server message's line
    breaks become spaces); the ``typer.Exit`` for the caller to raise."""
    say(f"Error: {' '.join(message.split())}", "red", to=err_console)
    return typer.Exit(int(code))


def usage_error(message: str) -> NoReturn:
    """End the command with a one-line usage error (exit 2): bad input, nothing was sent."""
    raise fail(message, ExitCode.USAGE)


def print_json(body: Any) -> None:
    """One JSON document on stdout (indented; the values exactly as given)."""
    sys.stdout.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def answer_json(client: "ApiClient") -> None:
    """Print the body of the client's last answer, exactly the API's JSON (``--json``)."""
    assert client.last_response is not None  # a command prints only after a request
    print_json(client.last_response.json())


@contextmanager
def api(ctx: typer.Context) -> Iterator["ApiClient"]:
    """A client of the service named by the global options; an ``ApiError`` raised in the
    block prints its message (the server's detail) and ends the command with
    :func:`exit_code_of` it."""
    from service.client import ApiClient, ApiError  # see the module docstring

    target: Target = ctx.obj
    client = ApiClient(target.url, target.token)
    try:
        yield client
    except ApiError as error:
        raise fail(str(error), exit_code_of(error)) from None
    finally:
        client.close()


def answer(
    ctx: typer.Context,
    json_output: bool,
    read: Callable[["ApiClient"], T],
    show: Callable[[T], object],
) -> T:
    """Send one read (``read(client)``, in :func:`api`) and answer it: with ``--json`` the
    API's JSON body, exactly; else ``show(model)``, once the client is closed. The model is
    returned either way, for what the command decides from it (an exit code)."""
    with api(ctx) as client:
        data = read(client)
        if json_output:
            answer_json(client)
    if not json_output:
        show(data)
    return data


def printed(table: Callable[[T], RenderableType]) -> Callable[[T], None]:
    """The ``show`` of :func:`answer` that prints ``table(model)`` (a rich table) on stdout."""
    return lambda data: console.print(table(data))


# --- options shared by several commands ---------------------------------------------------------

StudyId = Annotated[str, typer.Argument(metavar="ID", help="The study's id.")]
JsonOption = Annotated[
    bool,
    typer.Option("--json", help="Print the API's JSON body (and nothing else) on stdout."),
]
MetricOption = Annotated[
    str | None, typer.Option(help="final_objective (default), val_accuracy, …")
]
DirectionOption = Annotated[
    Literal["minimize", "maximize"] | None,
    typer.Option(help="Default: the metric's own direction."),
]
ValueOption = Annotated[
    Literal["final", "best"] | None,
    typer.Option(help="Each trial's final value (default) or the best it reached in training."),
]
BatchSizeOption = Annotated[int | None, typer.Option(help="The batch-size slice.")]
RadiusOption = Annotated[str | None, typer.Option(help="The radius slice: a number or 'none'.")]
WeightDecayOption = Annotated[
    str | None, typer.Option(help="The weight-decay slice: a number or 'none'.")
]
AxisOption = Annotated[
    list[str] | None, typer.Option(help="Another axis's slice: NAME=VALUE (repeatable).")
]


def _share_of_seeds(value: float | None) -> float | None:
    """``--min-finite-fraction`` as the API takes it: a share of the seeds in (0, 1] (0 would
    call a cell with no finite seed good). Anything else, NaN included, is a usage error naming
    the option (exit 2), not a request the server refuses (exit 1); typer's ``min=`` is a
    closed bound, so the open one is checked here."""
    if value is not None and not 0 < value <= 1:
        raise typer.BadParameter(f"must be a share of the seeds in (0, 1], got {value:g}")
    return value


MinFiniteOption = Annotated[
    float | None,
    typer.Option(
        callback=_share_of_seeds,
        help="The share of a cell's seeds that must be finite, in (0, 1] (default 1).",
    ),
]


def axes(items: list[str] | None) -> dict[str, str]:
    """``--axis NAME=VALUE`` (or ``NAME:VALUE``) items as ``{name: value}``."""
    parsed: dict[str, str] = {}
    for item in items or []:
        separator = "=" if "=" in item else ":"
        name, sep, value = item.partition(separator)
        if not sep or not name:
            usage_error(f"--axis: expected NAME=VALUE, got {item!r}")
        parsed[name] = value
    return parsed


# the groups of options the analyses share (``@grouped``, :mod:`service.cli.groups`), in the
# order --help lists them: what is measured, and the slice of the other axes
MEASURE_OPTIONS: OptionGroup = {
    "metric": MetricOption, "direction": DirectionOption, "value": ValueOption,
}  # fmt: skip
SLICE_OPTIONS: OptionGroup = {
    "batch_size": BatchSizeOption, "radius": RadiusOption, "weight_decay": WeightDecayOption,
    "axis": AxisOption,
}  # fmt: skip
SELECTION_OPTIONS: OptionGroup = {**MEASURE_OPTIONS, **SLICE_OPTIONS}


def slice_of(
    batch_size: int | None = None,
    radius: str | None = None,
    weight_decay: str | None = None,
    axis: list[str] | None = None,
) -> dict[str, Any]:
    """The client's ``**slice`` from the :data:`SLICE_OPTIONS` (``--axis`` parsed)."""
    return {"batch_size": batch_size, "radius": radius, "weight_decay": weight_decay,
            "axes": axes(axis)}  # fmt: skip


def selection(
    metric: str | None,
    direction: str | None,
    value: str | None,
    batch_size: int | None = None,
    radius: str | None = None,
    weight_decay: str | None = None,
    axis: list[str] | None = None,
) -> dict[str, Any]:
    """The client's ``**selection`` of an analysis from the :data:`SELECTION_OPTIONS`."""
    return {
        "metric": metric, "direction": direction, "value": value,
        **slice_of(batch_size, radius, weight_decay, axis),
    }  # fmt: skip
