"""Image formats and the one way a figure becomes bytes.

Figures are built with ``matplotlib.figure.Figure`` and an Agg canvas, never pyplot, so no
global "current figure" is shared between requests. Matplotlib still keeps some process-wide
state (font cache, mathtext parser, text layout cache) that is not documented as thread-safe,
hence :data:`RENDER_LOCK`: the renderers hold it while they draw, one figure at a time.
"""

import io
import threading
from dataclasses import dataclass

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100  # fixed so that image sizes are predictable: pixels = inches × DPI
RENDER_LOCK = threading.RLock()


@dataclass(frozen=True)
class ImageFormat:
    """How a format name of the API maps onto matplotlib and HTTP."""

    matplotlib_format: str  # the ``format=`` of ``Figure.savefig``
    media_type: str  # the Content-Type of the response


FORMATS: dict[str, ImageFormat] = {
    "png": ImageFormat("png", "image/png"),
    "svg": ImageFormat("svg", "image/svg+xml"),
    "pdf": ImageFormat("pdf", "application/pdf"),
}


def check_format(format: str) -> ImageFormat:
    """The :class:`ImageFormat` of ``format``; ``ValueError`` naming the allowed ones otherwise."""
    try:
        return FORMATS[format]
    except (KeyError, TypeError):
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {format!r}") from None


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width × height`` inches at :data:`DPI` on an Agg canvas."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself as figure.canvas
    return figure


def to_bytes(figure: Figure, format: str) -> bytes:
    """Serialise ``figure``; no ``bbox_inches="tight"``, so the size stays inches × DPI."""
    image_format = check_format(format)
    buffer = io.BytesIO()
    # Date left out: the same figure gives the same SVG/PDF bytes
    metadata = {"Date": None} if image_format.matplotlib_format in ("svg", "pdf") else None
    figure.savefig(buffer, format=image_format.matplotlib_format, dpi=DPI, metadata=metadata)
    return buffer.getvalue()
