"""studies.rendering: real images out (PNG decoded, SVG parsed), formats, labels, threads, user
text drawn literally, large grids in bounded size."""

import io
import math
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from studies.analysis import (
    Heatmap,
    ImportanceByOptimizer,
    heatmap,
    importance_by_optimizer,
    sensitivity,
    tunability,
)
from studies.rendering import (
    DPI,
    FORMATS,
    RunCurve,
    eta_label,
    heatmap_size,
    render_heatmap,
    render_importance,
    render_learning_curves,
    render_sensitivity,
    render_trial_curves,
    render_tunability,
)
from studies.rendering.curves import (
    CURVES_SIZE,
    LINEAR_HEADROOM,
    LOG_HEADROOM,
    MAX_CURVE_POINTS,
    MAX_LEGEND_ENTRIES,
    PANEL_SIZE,
    SENSITIVITY_SIZE,
    _thinned,
    curve_scales,
    legend,
)
from studies.rendering.heatmap import MAX_FIGURE, _dense_note, is_dense, labelled_indices
from studies.rendering.importance import PANEL_SIZE as IMPORTANCE_PANEL
from studies.rendering.labels import literal
from studies.rendering.limits import PLOT_LIMIT, plottable
from studies.rendering.tunability import TUNABILITY_SIZE
from studies.trial import TrialRecord

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def records():
    out = []
    for optimizer, best, diverge_from in (("alig", 0, 99), ("sgd", -1, 1), ("adam", -3, 0)):
        for exponent in range(-4, 3):
            for seed in range(3):
                diverged = exponent >= diverge_from or (
                    optimizer == "sgd" and exponent == 0 == seed
                )
                value = None if diverged else 10.0 ** ((exponent - best) ** 2 / 4 - 2) + seed
                out.append(
                    TrialRecord(
                        key=f"{optimizer}{exponent}{seed}",
                        optimizer=optimizer,
                        eta=10.0**exponent,
                        batch_size=32,
                        seed=seed,
                        status="diverged" if diverged else "completed",
                        final_objective=value,
                    )
                )
    out += [
        TrialRecord(f"inf{s}", "alig", None, 32, seed=s, status="completed", final_objective=0.5)
        for s in range(3)
    ]
    out += [TrialRecord("failed", "adam", 1e-4, 32, seed=9, status="failed")]
    return out


def decode_png(data):
    assert data.startswith(PNG_SIGNATURE)
    return Image.open(io.BytesIO(data)).convert("RGB")


def n_colours(image):
    return len(image.getcolors(maxcolors=1 << 24))


def test_heatmap_png_has_the_figure_size_and_real_content():
    hm = heatmap(records())
    assert "diverged" in hm.status[2] and "partial" in hm.status[1]
    image = decode_png(render_heatmap(hm))
    width, height = heatmap_size(len(hm.rows), len(hm.columns))
    assert image.size == (round(width * DPI), round(height * DPI))
    assert n_colours(image) > 50  # colour scale, hatching, text: not a blank canvas


def test_heatmap_svg_parses_and_holds_the_hatch_pattern():
    svg = render_heatmap(heatmap(records()), format="svg")
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert b"<pattern" in svg  # hatched diverged cells
    clean = [r for r in records() if r.status == "completed"]
    assert b"<pattern" not in render_heatmap(heatmap(clean), format="svg")


def test_heatmap_edge_cases_render():
    def one(value, status):
        return Heatmap(["sgd"], [0.1, None], [[value, None]], [[status, "missing"]],
                       [[1, 0]], [[1, 0]], "final_objective", "minimize", {})  # fmt: skip

    for table in (one(-1.0, "ok"), one(2.0, "partial"), one(None, "diverged")):
        assert decode_png(render_heatmap(table)).size[0] > 0
    empty = Heatmap([], [], [], [], [], [], "final_objective", "maximize", {})
    assert render_heatmap(empty, format="pdf").startswith(b"%PDF")


EXTREMES = [
    (-1e308, 1e308),
    (1e308, 1.79e308),
    (1e-300, 1e300),
    (5e-324, 1e308),
    (-1.79e308, -1e308),
]


@pytest.mark.parametrize(("low", "high"), EXTREMES)
def test_values_near_the_float_limit_render(low, high):
    # matplotlib's norms, autoscaling and log ticks overflow on such limits unless clamped
    table = Heatmap(["sgd"], [0.1, 1.0], [[low, high]], [["ok", "partial"]],
                    [[1, 1]], [[1, 2]], "final_objective", "minimize", {})  # fmt: skip
    assert n_colours(decode_png(render_heatmap(table))) > 50
    ET.fromstring(render_learning_curves({"a": [(0, low), (1, high)]}, "loss", format="svg"))
    extreme = [
        TrialRecord(f"k{i}", "sgd", eta, 32, seed=0, status="completed", final_objective=value)
        for i, (eta, value) in enumerate(((0.1, low), (1.0, high)))
    ]
    extreme.append(TrialRecord("inf", "alig", None, 32, seed=0, status="completed",
                               final_objective=high))  # fmt: skip
    assert n_colours(decode_png(render_sensitivity(extreme))) > 10


def test_plottable_clamps_finite_values_only():
    values = plottable([1e308, -1e308, 1.0, math.inf, -math.inf, math.nan])
    assert values[:3].tolist() == [PLOT_LIMIT, -PLOT_LIMIT, 1.0]
    assert values[3] == math.inf and values[4] == -math.inf and math.isnan(values[5])


def test_unknown_format_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"\['pdf', 'png', 'svg'\]"):
        render_heatmap(heatmap(records()), format="jpeg")
    assert FORMATS["svg"].media_type == "image/svg+xml"


def test_eta_labels_are_powers_of_ten():
    assert eta_label(1e-4) == "$10^{-4}$"
    assert eta_label(1e6) == "$10^{6}$"
    assert eta_label(1.0) == "$10^{0}$"
    assert eta_label(1e-5) == "$10^{-5}$"
    assert eta_label(0.03) == r"$3\times10^{-2}$"
    assert eta_label(2.5) == "2.5"
    assert eta_label(None) == r"$\infty$"


def test_learning_curves_render():
    curves = {
        "alig": [(step, 1.0 / (step + 1)) for step in range(50)],
        "sgd": [(step, float("nan") if step == 20 else 2.0 / (step + 1)) for step in range(50)],
    }
    image = decode_png(render_learning_curves(curves, "train_loss"))
    assert image.size == (round(CURVES_SIZE[0] * DPI), round(CURVES_SIZE[1] * DPI))
    assert n_colours(image) > 10
    # a non-positive value cannot go on a log axis: linear instead, no error
    ET.fromstring(render_learning_curves({"a": [(0, 0.0), (1, -1.0)]}, "x", format="svg"))
    ET.fromstring(render_learning_curves({}, "train_loss", format="svg"))


def test_sensitivity_renders_from_records_or_info():
    image = decode_png(render_sensitivity(records()))
    assert image.size == (round(SENSITIVITY_SIZE[0] * DPI), round(SENSITIVITY_SIZE[1] * DPI))
    assert n_colours(image) > 10
    svg = render_sensitivity(sensitivity(records()), format="svg", log_y=False)
    ET.fromstring(svg)


def test_rendering_from_threads_gives_the_serial_bytes():
    hm = heatmap(records())
    serial = render_heatmap(hm)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: render_heatmap(hm), range(2)))
    assert all(result == serial for result in results)


# --- user text is literal; large grids are drawn in bounded size and time ----------------------


def test_literal_escapes_every_dollar_so_the_text_is_drawn_as_given():
    from matplotlib import cbook

    for text in (r"$\foo$", "a$b$c", r"a\$b", "$", "no dollar"):
        escaped = literal(text)
        assert not cbook.is_math_text(escaped)
        assert escaped.replace(r"\$", "$") == text  # what matplotlib draws


def test_math_text_in_user_strings_renders():
    bad = r"$\foo$"
    table = Heatmap([bad, "a$b$c"], [0.1, 1.0], [[1.0, 2.0], [3.0, None]],
                    [["ok", "partial"], ["ok", "diverged"]], [[1, 1], [1, 0]], [[1, 2], [1, 1]],
                    bad, "minimize", {"optimizer_option": bad})  # fmt: skip
    for fmt in ("png", "svg"):
        render_heatmap(table, format=fmt, title=bad)
        render_heatmap(table, format=fmt)  # the default title holds the metric and the slice
    relabelled = [
        TrialRecord(r.key, bad if r.optimizer == "sgd" else r.optimizer, r.eta, r.batch_size,
                    seed=r.seed, status=r.status, final_objective=r.final_objective)
        for r in records()
    ]  # fmt: skip
    assert decode_png(render_sensitivity(relabelled, title=bad)).size[0] > 0
    ET.fromstring(render_learning_curves({bad: [(0, 1.0), (1, 0.5)]}, bad, format="svg"))


def wide_heatmap(n_rows, n_columns):
    statuses = ["ok", "partial", "diverged", "failed", "missing"]
    status = [[statuses[(i + j) % 5] for j in range(n_columns)] for i in range(n_rows)]
    values = [
        [None if s in ("diverged", "failed", "missing") else 1.0 + i + j for j, s in enumerate(row)]
        for i, row in enumerate(status)
    ]
    ones = [[1] * n_columns for _ in range(n_rows)]
    return Heatmap([f"opt{i}" for i in range(n_rows)],
                   [10.0 ** (-5 + 10 * j / (n_columns - 1)) for j in range(n_columns)], values,
                   status, ones, ones, "final_objective", "minimize", {})  # fmt: skip


def test_a_wide_heatmap_is_a_dense_view_of_bounded_size(monkeypatch):
    import studies.rendering.heatmap as module

    def no_cell_marks(*args):
        raise AssertionError("the dense view draws no per-cell patch or text")

    monkeypatch.setattr(module, "_mark_cell", no_cell_marks)
    assert is_dense(10, 870) and is_dense(30, 30) and not is_dense(8, 12)
    for rows, columns in ((10, 870), (300, 20)):
        image = decode_png(render_heatmap(wide_heatmap(rows, columns)))
        width, height = heatmap_size(rows, columns)
        assert image.size == (round(width * DPI), round(height * DPI))
        assert width <= MAX_FIGURE[0] and height <= MAX_FIGURE[1]
        assert n_colours(image) > 50
    assert heatmap_size(10, 870)[0] == MAX_FIGURE[0] and heatmap_size(300, 20)[1] == MAX_FIGURE[1]
    assert labelled_indices(870) == list(range(0, 870, 22)) and len(labelled_indices(870)) <= 40
    assert labelled_indices(12) == list(range(12))
    note = _dense_note(10, 870, 10, 40)
    assert "40 of 870 η" in note and "rows" not in note.split(";")[1]


def test_a_legend_lists_at_most_its_bound():
    from matplotlib.figure import Figure

    figure = Figure()
    ax = figure.add_subplot()
    for i in range(MAX_LEGEND_ENTRIES + 5):
        ax.plot([0, 1], [i, i], label=f"line {i}")
    legend(ax)
    box = ax.get_legend()
    assert len(box.get_texts()) == MAX_LEGEND_ENTRIES
    assert box.get_title().get_text() == "(+5 more not listed)"


# --- every trial's curves, tunability, importance ---------------------------------------------


def trial_curves(n_steps=20, diverged_from=1.0):
    """Per optimizer, five η × two seeds of a decaying loss; η ≥ ``diverged_from`` blows up to
    1e30 and then to inf at step 10 (sgd only)."""
    panels = {}
    for optimizer in ("alig", "sgd"):
        curves = []
        for exponent in range(-3, 2):
            eta = 10.0**exponent
            for seed in (0, 1):
                diverged = optimizer == "sgd" and eta >= diverged_from
                points = [
                    (step, (10.0 ** (3 * step) if step < 10 else math.inf) if diverged
                     else (1 + seed) / (step * eta))
                    for step in range(1, n_steps + 1)
                ]  # fmt: skip
                curves.append(RunCurve(eta, seed, "diverged" if diverged else "completed", points))
        panels[optimizer] = curves
    panels["alig"].append(RunCurve(None, 0, "completed", [(1, 2.0), (2, 1.0)]))  # ALI-G∞
    return panels


def test_trial_curves_render_in_every_format():
    panels = trial_curves()
    image = decode_png(render_trial_curves(panels, "train_loss"))
    assert n_colours(image) > 50  # the η colour bar alone has many
    width, height = image.size
    assert width == round((PANEL_SIZE[0] * 2 + 1.2) * DPI)  # two panels and the colour bar
    assert height == round((PANEL_SIZE[1] + 0.6) * DPI)
    svg = render_trial_curves(panels, "train_loss", format="svg").decode()
    ET.fromstring(svg)
    assert "stroke-dasharray" in svg  # the diverged trials are dashed
    assert render_trial_curves(panels, "train_loss", format="pdf").startswith(b"%PDF-")
    # one cell's seeds, no curve at all, empty panels, math text in user strings: all draw
    cell = {"sgd $\\foo$": panels["sgd"][:2]}
    decode_png(render_trial_curves(cell, "$x$", colour_by="seed", title="$\\bar$"))
    ET.fromstring(render_trial_curves({}, "train_loss", format="svg"))
    ET.fromstring(render_trial_curves({"a": [], "b": []}, "train_loss", format="svg"))
    nothing_finite = {"a": [RunCurve(0.1, 0, "diverged", [(1, math.nan), (2, math.inf)])]}
    decode_png(render_trial_curves(nothing_finite, "train_loss"))


def test_the_trials_that_did_not_diverge_set_the_y_axis():
    panels = trial_curves()
    scales = curve_scales(panels)
    finite = [
        value for curves in panels.values() for c in curves if not c.diverged
        for _, value in c.points
    ]  # fmt: skip
    # the blow-up to 1e27 of the diverged trials does not stretch the axis
    assert scales.top == pytest.approx(max(finite) * LOG_HEADROOM)
    assert scales.bottom == pytest.approx(min(finite) / math.sqrt(LOG_HEADROOM))
    assert scales.log_y and not scales.log_x and scales.steps == (1, 20)
    # every trial diverged: their own finite values set it
    only_diverged = {"sgd": [c for c in panels["sgd"] if c.diverged]}
    assert curve_scales(only_diverged).top == pytest.approx(1e27 * LOG_HEADROOM)
    # long runs: log x; a non-positive value: linear y
    assert curve_scales(trial_curves(n_steps=300)).log_x
    linear = curve_scales({"a": [RunCurve(0.1, 0, "completed", [(1, 0.0), (2, 2.0)])]})
    assert not linear.log_y and linear.top == pytest.approx(2.0 + LINEAR_HEADROOM * 2.0)
    assert curve_scales({"a": []}).top is None


def test_a_long_curve_is_thinned_to_its_bound():
    steps = np.arange(1, 10 * MAX_CURVE_POINTS + 1, dtype=float)
    kept_steps, kept_values = _thinned(steps, 1 / steps)
    assert len(kept_steps) == MAX_CURVE_POINTS
    assert kept_steps[0] == 1 and kept_steps[-1] == steps[-1]
    assert np.allclose(kept_values, 1 / kept_steps)


def test_tunability_and_importance_render():
    info = tunability(records(), "final_objective", "minimize")
    image = decode_png(render_tunability(info))
    assert image.size == (round(TUNABILITY_SIZE[0] * DPI), round(TUNABILITY_SIZE[1] * DPI))
    assert n_colours(image) > 10
    assert render_tunability(info, format="pdf").startswith(b"%PDF-")
    importance = importance_by_optimizer(records(), "final_objective", "minimize")
    assert decode_png(render_importance(importance)).size[0] == round(3 * IMPORTANCE_PANEL[0] * DPI)
    skipped = ImportanceByOptimizer({}, {"sgd $x$": "only one η"}, "final_objective", "minimize")
    ET.fromstring(render_importance(skipped, format="svg"))
    ET.fromstring(render_importance(ImportanceByOptimizer({}, {}, "m", "minimize"), "svg"))
