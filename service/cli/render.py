"""The human form of the API's answers: one rich table (or line) per response model.

Pure functions of the models (also used by :mod:`service.demo`); numbers are shortened by
:func:`number` and η = ``None`` (ALI-G∞) is ``∞``. ``--json`` prints the API's body instead.

Every text of a table (cell, header, title, caption) is :func:`literal`: rich reads a plain
``str`` as markup, and the data holds names, tags, labels and reasons that anyone may write.
"""

import json
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from service.models import (
        Comparison,
        Health,
        Heatmap,
        ImportanceByOptimizer,
        OptimizerList,
        PresetList,
        Reproduction,
        Robustness,
        Sensitivity,
        StudyOut,
        StudyPage,
        StudySummary,
        TaskList,
        TrialCurve,
        TrialOut,
        TrialPage,
        Tunability,
    )


def number(value: float | None, infinity: bool = False) -> str:
    """A short number for a table: 3 significant digits; ``∞`` when ``infinity``; ``—`` for
    ``None``."""
    if infinity:
        return "∞"
    if value is None:
        return "—"
    if isinstance(value, float) and not math.isfinite(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.3g}"


def eta_label(eta: float | None) -> str:
    """η as a column label: ``None`` is ALI-G∞."""
    return "∞" if eta is None else number(eta)


def plain(value: Any) -> str:
    """Any JSON value as short text (numbers through :func:`number`)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return number(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={plain(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(plain(v) for v in value) + "]"
    return "—" if value is None else str(value)


def literal(text: str, style: str = "") -> Text:
    """``text`` shown as it is. A ``str`` given to rich is parsed as markup: a study name, tag,
    optimizer label or trial reason such as ``[/x]`` would raise ``MarkupError`` (a traceback)
    and one such as ``[bold]x[/bold]`` would be restyled and shown without its brackets."""
    return Text(text, style=style)


def add_row(table: Table, *cells: str) -> None:
    """Add one row of data to ``table``, each cell :func:`literal`."""
    table.add_row(*(literal(cell) for cell in cells))


def set_caption(table: Table, text: str | None) -> None:
    """Set the table's caption, :func:`literal` (rich's caption style kept); ``None``: none."""
    table.caption = None if text is None else literal(text, "table.caption")


def _table(title: str, headers: Sequence[str], left: int = 1, caption: str | None = None) -> Table:
    """A table whose first ``left`` columns are left-aligned (names), the others right
    (numbers); title, headers and caption are :func:`literal` (data names some of them).
    A cell too wide for a narrow terminal folds onto the next line, never loses its end to an
    ellipsis (an id, a measured value)."""
    table = Table(title=literal(title, "table.title"))
    set_caption(table, caption)
    for index, header in enumerate(headers):
        table.add_column(
            literal(header), justify="left" if index < left else "right", overflow="fold"
        )
    return table


def keep_whole(table: Table, column: int, cells: Iterable[str]) -> None:
    """Column ``column`` holds identifiers: wide enough for the longest of ``cells``, unwrapped
    (the other columns give way first)."""
    widths = [len(cell) for cell in cells]
    if widths:
        table.columns[column].min_width = max(widths)
        table.columns[column].no_wrap = True


def fields_table(title: str, rows: Iterable[tuple[str, Any]]) -> Table:
    """A two-column field/value table (a study, a trial, the health)."""
    table = Table(title=literal(title, "table.title"), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in rows:
        add_row(table, name, plain(value))
    return table


# --- studies ----------------------------------------------------------------------------------


def summary(study: "StudySummary") -> str:
    """One line on a study: its status and trial counts (and its error, if any)."""
    p = study.progress
    line = (
        f"study {study.id} ({study.name}) {study.status}: "
        f"{p.done}/{p.total} trials finished, {p.diverged} diverged, {p.failed} failed"
    )
    if study.error:
        line += f" — {study.error}"
    return line


def studies_table(page: "StudyPage") -> Table:
    """A page of ``GET /studies``: one row per study."""
    table = _table("studies", ("id", "name", "task", "status", "done", "created"), left=4)
    keep_whole(table, 0, (study.id for study in page.items))
    for study in page.items:
        p = study.progress
        add_row(
            table, study.id, study.name or "", study.task or "", study.status,
            f"{p.done}/{p.total}", study.created_at.isoformat()[:19],
        )  # fmt: skip
    return table


def study_table(study: "StudyOut") -> Table:
    """``GET /studies/{id}``: the study's fields (the spec is printed after it)."""
    p = study.progress
    states = ("pending", "running", "completed", "diverged", "failed", "cancelled")
    counts = ", ".join(f"{name} {getattr(p, name)}" for name in states)
    rows = [
        ("id", study.id),
        ("name", study.name),
        ("task", study.task),
        ("tags", ", ".join(study.tags) or None),
        ("status", study.status),
        ("trials", f"{p.done}/{p.total} finished: {counts}"),
        ("error", study.error),
        ("created", study.created_at.isoformat()),
        ("started", study.started_at.isoformat() if study.started_at else None),
        ("finished", study.finished_at.isoformat() if study.finished_at else None),
        ("Ray job", study.ray_job_id),
        ("dashboard", study.dashboard_url),
        ("page", study.links.page),
    ]
    return fields_table(f"study {study.id}", rows)


def spec_text(spec: dict[str, Any]) -> str:
    """The study's spec as indented JSON (what ``submit`` takes back)."""
    return json.dumps(spec, indent=2, ensure_ascii=False)


def reconcile_lines(report: dict[str, Any]) -> list[str]:
    """What a reconciler pass did, as lines: the counts, then one line per study."""
    lines = [
        f"checked {report['checked']} unfinished studies: {len(report['launched'])} launched, "
        f"{len(report['resumed'])} relaunched, {len(report['failed'])} failed, "
        f"{len(report['noted'])} with a reason noted"
    ]
    for action in ("launched", "resumed", "failed", "noted"):
        lines.extend(f"  {action}: {study_id}" for study_id in report[action])
    return lines


# --- trials -----------------------------------------------------------------------------------

TRIAL_HEADERS = ("key", "optimizer", "η", "batch", "radius", "wd", "seed", "status", "objective",
                 "attempts")  # fmt: skip


def trials_table(page: "TrialPage") -> Table:
    """A page of ``GET /studies/{id}/trials``: one row per trial, its full key first."""
    table = _table("trials", TRIAL_HEADERS, left=2)
    keep_whole(table, 0, (t.key for t in page.items))
    table.columns[7].justify = "left"
    for t in page.items:
        add_row(
            table, t.key, t.optimizer, eta_label(t.eta), str(t.batch_size), number(t.radius),
            number(t.weight_decay), str(t.seed), t.status, number(t.final_objective),
            str(t.attempts),
        )  # fmt: skip
    return table


def trial_table(trial: "TrialOut") -> Table:
    """``GET /studies/{id}/trials/{key}``: the trial's axes, outcome and last metrics."""
    rows: list[tuple[str, Any]] = [
        ("key", trial.key),
        ("optimizer", trial.optimizer),
        ("η", eta_label(trial.eta)),
        ("batch size", trial.batch_size),
        ("radius", trial.radius),
        ("weight decay", trial.weight_decay),
        ("seed", trial.seed),
        *((f"axis {name}", value) for name, value in trial.extra_axes.items()),
        ("status", trial.status),
        ("final objective", trial.final_objective),
        ("objective kind", trial.objective_kind),
        ("reason", trial.reason),
        ("attempts", trial.attempts),
        ("started", trial.started_at.isoformat() if trial.started_at else None),
        ("finished", trial.finished_at.isoformat() if trial.finished_at else None),
        *((f"last {name}", value) for name, value in trial.metrics.items()),
    ]
    return fields_table(f"trial {trial.key}", rows)


def curve_table(curve: "TrialCurve") -> Table:
    """``…/trials/{key}/metrics``: one row per reported step, one column per metric."""
    names = sorted({p.name for p in curve.points})
    steps: dict[int, dict[str, float | None]] = {}
    for p in curve.points:
        steps.setdefault(p.step, {})[p.name] = p.value
    table = _table(f"curves of trial {curve.key[:12]}…", ("step", *names), left=0)
    for step in sorted(steps):
        add_row(table, str(step), *(number(steps[step].get(name)) for name in names))
    return table


# --- analyses ---------------------------------------------------------------------------------


def _slice_caption(data: Any) -> str:
    return ", ".join(f"{k} = {plain(v)}" for k, v in data.slice.items()) or "the whole study"


NOT_IN_GRID = "·"  # a heatmap cell no trial of the study has: its optimizer never ran that η


def heatmap_table(data: "Heatmap", width: int | None = None) -> Table:
    """Optimizer × η: each cell's median, or its status when it has no finite value.

    Where that table is wider than the terminal (``width``, default the console's) and there
    are more η values than optimizers (the Figure 3 grid: 38 η, 8 optimizers), η runs down the
    rows and the optimizers across: squeezed into the width, 38 columns would show nothing."""
    title = f"heatmap: median {data.metric} over seeds ({data.direction})"
    caption = (
        f"slice: {_slice_caption(data)}; a cell without a finite value shows its status; "
        f"{NOT_IN_GRID} = not in the study's grid"
    )
    etas = [eta_label(eta) for eta in data.columns]
    cells = [
        [
            number(value) if value is not None else status if total else NOT_IN_GRID
            for value, status, total in zip(v, s, n, strict=True)
        ]
        for v, s, n in zip(data.values, data.status, data.n_total, strict=True)
    ]
    table = _table(title, ("optimizer", *etas), caption=caption)
    for name, row in zip(data.rows, cells, strict=True):
        add_row(table, name, *row)
    console = Console(width=width)  # None: the terminal's width
    natural = Measurement.get(console, console.options.update(max_width=10**6), table).maximum
    if natural <= console.width or len(etas) <= len(data.rows):
        return table
    table = _table(title, ("η", *data.rows), caption=caption)
    for column, eta in enumerate(etas):
        add_row(table, eta, *(row[column] for row in cells))
    return table


def robustness_table(data: "Robustness") -> Table:
    """The good-η table of a ``/robustness`` answer: one row per optimizer."""
    rule = (
        f"threshold {number(data.threshold)}"
        if data.mode == "absolute"
        else f"tolerance {number(data.tolerance)}"
    )
    better = "≥" if data.direction == "maximize" else "≤"
    headers = ("optimizer", "η low", "η high", "decades", "best η", "best value", "seeds",
               "diverged")  # fmt: skip
    table = _table(
        f"good-η ranges ({data.metric}, {data.direction})",
        headers,
        caption=f"{rule}: good means {data.metric} {better} {number(data.cutoff)} with at least "
        f"{data.min_finite_fraction:.0%} of a cell's seeds finite; seeds = per cell, diverged = "
        "seeds that diverged over the optimizer's grid",
    )
    for name, r in data.ranges.items():
        run_has_inf = r.includes_infinity  # the run reaches ALI-G∞ (η = ∞)
        best_is_inf = r.best_eta is None and r.best_value is not None
        add_row(
            table,
            name,
            number(r.eta_low, infinity=run_has_inf and r.eta_low is None),
            number(r.eta_high, infinity=run_has_inf),
            number(r.decades, infinity=run_has_inf and r.eta_low is not None),
            number(r.best_eta, infinity=best_is_inf),
            number(r.best_value),
            str(r.seeds),
            str(r.diverged_seeds),
        )
    return table


def tunability_table(data: "Tunability") -> Table:
    """``/tunability``: per optimizer its CPE and the expected best after 1 and K draws."""
    k = max((len(o.p_k) for o in data.optimizers.values()), default=0)
    table = _table(
        f"tunability ({data.metric}, {data.direction})",
        ("optimizer", "CPE", "best of 1", f"best of {k}", "η values", "diverged"),
        caption=f"expected best {data.metric} after k random η draws; diverged trials count "
        f"as {plain(data.diverged)} ({number(data.diverged_value)})",
    )
    for name, o in data.optimizers.items():
        add_row(
            table, name, number(o.cpe), number(o.p_k[0] if o.p_k else None),
            number(o.p_k[-1] if o.p_k else None), str(len(o.etas)), str(o.n_diverged),
        )  # fmt: skip
    return table


def importance_table(data: "ImportanceByOptimizer") -> Table:
    """``/importance``: one row per optimizer and evaluator, one column per hyperparameter."""
    params = sorted({p for i in data.optimizers.values() for p in i.params})
    skipped = "; ".join(f"{name}: {why}" for name, why in data.skipped.items())
    table = _table(
        f"hyperparameter importance ({data.metric}, {data.direction})",
        ("optimizer", "evaluator", *params, "trials"),
        left=2,
        caption=f"skipped: {skipped}" if skipped else None,
    )
    for name, info in data.optimizers.items():
        for evaluator, values in info.importances.items():
            cells = [number(values[p]) if p in values else "" for p in params]
            add_row(table, name, evaluator, *cells, str(info.n_trials))
    return table


def sensitivity_table(data: "Sensitivity") -> Table:
    """``/sensitivity``: per optimizer and η the median with the seeds' range."""
    table = _table(
        f"sensitivity of {data.metric} to η ({data.direction})",
        ("optimizer", "η", "median", "low", "high", "status", "seeds ok", "diverged"),
        caption=f"slice: {_slice_caption(data)}",
    )
    for name, points in data.curves.items():
        for p in points:
            add_row(
                table, name, eta_label(p.eta), number(p.median), number(p.low), number(p.high),
                p.status, f"{p.n_ok}/{p.n_total}", str(p.n_diverged),
            )  # fmt: skip
    return table


def reproduction_table(data: "Reproduction") -> Table:
    """The claims of a ``/reproduction`` answer: one row per claim."""
    budget = data.budget
    table = _table(
        f"reproduction of {data.preset or 'no preset'}",
        ("claim", "source", "claimed", "measured", "seeds", "status"),
        left=4,
        caption=f"budget: study {budget.get('study')}, paper {budget.get('paper')}",
    )
    table.columns[5].justify = "left"
    keep_whole(table, 0, (claim.id for claim in data.claims))
    for claim in data.claims:
        add_row(
            table, claim.id, claim.source, plain(claim.claimed), plain(claim.measured),
            f"{claim.seeds_holding}/{claim.seeds_total}", claim.status,
        )  # fmt: skip
    return table


# --- catalog and health -----------------------------------------------------------------------


def presets_table(data: "PresetList") -> Table:
    """``/presets``: each preset's task, optimizers and budget."""
    table = _table("presets", ("name", "task", "optimizers", "budget"), left=4)
    for preset in data.items:
        spec = preset.spec
        # an optimizer entry is a name or {"name": …, "label": …, options}
        names = [o if isinstance(o, str) else o.get("label") or o.get("name")
                 for o in spec.get("optimizers", [])]  # fmt: skip
        add_row(
            table, preset.name, str(spec.get("task", "")), ", ".join(map(str, names)),
            plain(spec.get("budget")),
        )  # fmt: skip
    return table


def _packs_cell(task: Any) -> str:
    if not task.packs:
        return "no"
    return "compiled" if task.compiles else "yes"  # compiled: its packs compile (execution.compile)


def tasks_table(data: "TaskList") -> Table:
    """``/tasks``: each task's budget, metrics (with direction) and whether it packs (and its
    packs compile their time steps under ``execution.compile``)."""
    table = _table(
        "tasks", ("name", "metrics", "budget", "batch size", "packs", "description"), left=2
    )
    for task in data.items:
        metrics = ", ".join(f"{name} ({d[:3]})" for name, d in task.metrics.items())
        add_row(
            table, task.name, metrics, f"{task.default_budget} {task.budget_unit}",
            str(task.default_batch_size), _packs_cell(task), task.description,
        )  # fmt: skip
    table.columns[5].justify = "left"
    return table


def optimizers_table(data: "OptimizerList") -> Table:
    """``/optimizers``: what η means for each, how it steps, its options' defaults."""
    table = _table("optimizers", ("name", "η means", "closure", "packs", "options"), left=5)
    for o in data.items:
        options = ", ".join(f"{name}={plain(option.default)}" for name, option in o.options.items())
        add_row(table, o.name, o.eta_meaning, o.closure, "yes" if o.packs else "no", options)
    return table


def health_table(data: "Health") -> Table:
    """``/health``: the status, the database and Ray."""
    database = data.database
    db = f"ok ({database.dialect})" if database.ok else f"down: {database.error}"
    ray = "ok" if data.ray.ok else "down"
    rows = [("status", data.status), ("database", db), ("ray", ray),
            ("dashboard", data.ray.dashboard)]  # fmt: skip
    return fields_table("health", rows)


def compare_table(data: "Comparison") -> Table:
    """``/compare``: one row per optimizer and study (its good-η range, best, CPE); the caption
    says on how many studies each optimizer is the best (ρ(1) of its performance profile)."""
    names = {study.id: study.name for study in data.studies}
    table = _table(
        f"comparison of {len(data.studies)} studies ({data.metric}, {data.value} values)",
        ("optimizer", "study", "η low", "η high", "decades", "best η", "best value", "CPE"),
        left=2,
    )
    for label, entries in data.optimizers.items():
        for study_id, e in entries.items():
            study = f"{names.get(study_id, study_id)} ({study_id})"
            if e is None:
                add_row(table, label, study, *(["not run"] + [""] * 5))
                continue
            add_row(
                table, label, study,
                number(e.eta_low, infinity=e.includes_infinity and e.eta_low is None),
                number(e.eta_high, infinity=e.includes_infinity), number(e.decades),
                number(e.best_eta, infinity=e.best_eta is None and e.best_value is not None),
                number(e.best_value), number(e.cpe),
            )  # fmt: skip
    profile = data.profile
    best = ", ".join(
        f"{name} {round(rho[0] * len(profile.problems))}/{len(profile.problems)}"
        for name, rho in profile.rho.items()
        if rho
    )
    set_caption(table, f"best value on (ρ(τ = 1)): {best}" if best else None)
    return table


def curves_table(body: dict[str, Any]) -> Table:
    """``/studies/{id}/curves`` (its JSON): one row per trial with its curve's last point."""
    table = _table(
        f"curves of {body['metric']}",
        ("optimizer", "η", "seed", "status", "points", "last step", "last value", "key"),
        caption=f"slice: {plain(body.get('slice')) or 'the whole study'}; recorded curves: "
        f"{', '.join(body.get('metrics') or []) or 'none'}",
    )
    table.columns[3].justify = "left"
    table.columns[7].justify = "left"
    keep_whole(table, 7, (t["key"] for trials in body["panels"].values() for t in trials))
    for name, trials in body["panels"].items():
        for t in trials:
            last = t["points"][-1] if t["points"] else (None, None)
            add_row(
                table, name, eta_label(t["eta"]), str(t["seed"]), t["status"],
                str(len(t["points"])), "—" if last[0] is None else str(last[0]), number(last[1]),
                t["key"],
            )  # fmt: skip
    return table
