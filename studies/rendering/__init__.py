"""Rendering of the analysis info objects to PNG/SVG/PDF bytes (matplotlib, no pyplot).

Separate from ``studies.analysis`` so that the JSON endpoints never need matplotlib.
"""

from studies.rendering.curves import (
    RunCurve,
    render_learning_curves,
    render_sensitivity,
    render_trial_curves,
)
from studies.rendering.formats import DPI, FORMATS, ImageFormat, check_format
from studies.rendering.heatmap import heatmap_size, render_heatmap
from studies.rendering.importance import render_importance
from studies.rendering.labels import eta_label
from studies.rendering.tunability import render_tunability

__all__ = [
    "DPI",
    "FORMATS",
    "ImageFormat",
    "RunCurve",
    "check_format",
    "eta_label",
    "heatmap_size",
    "render_heatmap",
    "render_importance",
    "render_learning_curves",
    "render_sensitivity",
    "render_trial_curves",
    "render_tunability",
]
