"""``-o FILE`` of the commands that draw (heatmap, sensitivity, a trial's curves): the format
from the file's suffix, the bytes written, the path printed."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from service.cli.core import say, usage_error

if TYPE_CHECKING:  # the client is imported when a command runs (see service.cli.core)
    from service.client import ImageFormat

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
