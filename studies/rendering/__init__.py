"""Rendering of the analysis info objects to PNG/SVG/PDF bytes (matplotlib, no pyplot).

Separate from ``studies.analysis`` so that the JSON endpoints never need matplotlib.
"""

from studies.rendering.curves import render_learning_curves, render_sensitivity
from studies.rendering.formats import DPI, FORMATS, ImageFormat, check_format
from studies.rendering.heatmap import heatmap_size, render_heatmap
from studies.rendering.labels import eta_label

__all__ = [
    "DPI",
    "FORMATS",
    "ImageFormat",
    "check_format",
    "eta_label",
    "heatmap_size",
    "render_heatmap",
    "render_learning_curves",
    "render_sensitivity",
]
