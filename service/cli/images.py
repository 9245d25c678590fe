"""``-o FILE`` of the commands that draw (heatmap, sensitivity, a trial's curves): the format
from the file's suffix, the bytes written, the path printed."""

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from service.cli.core import answer, api, say, usage_error

if TYPE_CHECKING:  # the client is imported when a command runs (see service.cli.core)
    from service.client import ApiClient, ImageFormat

T = TypeVar("T")

IMAGE_SUFFIXES: dict[str, "ImageFormat"] = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
ImageOutput = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Write the plot to this .png, .svg or .pdf file instead."),
]


def image_format(output: Path | None, json_output: bool) -> "ImageFormat | None":
    """The image format ``-o`` asks for (``None``: no image); a suffix other than .png/.svg/.pdf,
    or ``-o`` with ``--json``, ends the command (exit 2)."""
    if output is None:
        return None
    if json_output:
        usage_error("--output writes an image and --json prints JSON: give one of them")
    fmt = IMAGE_SUFFIXES.get(output.suffix.lower())
    if fmt is None:
        usage_error(f"--output: use a .png, .svg or .pdf file name, got {output.name!r}")
    return fmt


def write_image(data: object, output: Path) -> None:
    """Write the image the client returned (bytes) to ``output``; print its path."""
    assert isinstance(data, bytes)  # an image format: the image itself
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(data)
    say(str(output))


def answer_or_image(
    ctx: typer.Context,
    json_output: bool,
    read: Callable[["ApiClient"], T],
    show: Callable[[T], object],
    *,
    output: Path | None,
    fmt: "ImageFormat | None",
    draw: Callable[["ApiClient", "ImageFormat"], object],
) -> None:
    """The answer of a command that draws: with ``-o`` (``fmt`` is then the
    :func:`image_format` of ``output``) the image ``draw(client, fmt)`` written to ``output``;
    without, :func:`~service.cli.core.answer` of ``read`` (the JSON or ``show(model)``)."""
    if fmt is None:
        answer(ctx, json_output, read, show)
        return
    assert output is not None  # a format comes from a file name
    with api(ctx) as client:
        write_image(draw(client, fmt), output)
