"""Comparing studies: per optimizer (by its label) across several studies, each study's good-η
range, best value and η and tunability, and the performance profiles over the studies.

Each study is one *problem* (a task setup), given as a :class:`Problem`: its records (already
mapped to the chosen value, :func:`studies.analysis.values.choose_values`), the direction of the
metric and the slice to read (``None``: the study's only slice). Per study and optimizer
(:class:`StudyEntry`):

- the good-η range of :func:`studies.analysis.robustness.robustness_from_heatmap` (``eta_low``,
  ``eta_high``, ``decades``, ``includes_infinity``, ``n_good``, ``seeds``, ``diverged_seeds``),
  with its default tolerance and the given ``min_finite_fraction``: the study's own robustness
  answer for the same parameters;
- ``best_value``/``best_eta``: the optimizer's best cell (median over seeds) among the cells
  with enough finite seeds, its lowest η among ties. The robustness answer gives the same best
  whenever the optimizer has a good point; it leaves both ``None`` when it has none (all its
  cells are outside the slice's cutoff), while the comparison still gives them, because the
  performance profile is made of them;
- ``cpe`` and ``p_k``: the tunability of :func:`studies.analysis.tunability.tunability` with the
  service's default policy for diverged points (``"worst"``, the worst finite value of the slice)
  and the same ``min_finite_fraction``.

An optimizer that a study did not run has ``None`` there. The performance profile
(:mod:`studies.analysis.profiles`) takes ``t_{p,s} = best_value`` (``None``, r = ∞, for an
optimizer whose cells all diverged or that the study did not run). A ratio of costs needs costs
to minimise: a maximised metric (an accuracy) is refused, and so is a best value ≤ 0
(``ValueError`` naming the study).
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from studies.analysis._common import Direction, check_direction, json_safe, sign
from studies.analysis.cells import DEFAULT_MIN_FINITE_FRACTION, check_fraction, reliable
from studies.analysis.heatmap import Heatmap, heatmap
from studies.analysis.profiles import (
    DEFAULT_TAU_MAX,
    Profile,
    check_tau_max,
    performance_profile,
)
from studies.analysis.robustness import robustness_from_heatmap
from studies.analysis.tunability import tunability
from studies.trial import TrialRecord

TUNABILITY_DIVERGED = "worst"  # the service's default policy (GET …/tunability)


@dataclass(frozen=True)
class Problem:
    """One study as the comparison reads it."""

    id: str
    name: str
    task: str
    records: Sequence[TrialRecord]
    direction: Direction = "minimize"
    slice: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class StudyEntry:
    """One optimizer in one study (see the module docstring)."""

    eta_low: float | None
    eta_high: float | None
    decades: float | None
    includes_infinity: bool
    n_good: int
    best_eta: float | None
    best_value: float | None
    cpe: float | None
    p_k: list[float | None] = field(default_factory=list)
    seeds: int = 0
    diverged_seeds: int = 0


@dataclass(frozen=True)
class StudyHeader:
    """Which study a column of the comparison is."""

    id: str
    name: str
    task: str
    direction: Direction
    slice: dict[str, Any]
    cutoff: float | None  # the good-η cutoff of its robustness rule
    reference_value: float | None  # the best value of any optimizer in its slice


@dataclass(frozen=True)
class Comparison:
    """Per optimizer, per study, and the performance profile over the studies."""

    studies: list[StudyHeader]
    optimizers: dict[str, dict[str, StudyEntry | None]]  # label -> study id -> entry
    profile: Profile
    metric: str
    min_finite_fraction: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data (non-finite floats become ``None``)."""
        return json_safe(
            {
                "studies": [asdict(header) for header in self.studies],
                "optimizers": {
                    name: {
                        study: None if entry is None else asdict(entry)
                        for study, entry in entries.items()
                    }
                    for name, entries in self.optimizers.items()
                },
                "profile": self.profile.to_dict(),
                "metric": self.metric,
                "min_finite_fraction": self.min_finite_fraction,
            }
        )


def _best(table: Heatmap, row: int, fraction: float) -> tuple[float | None, float | None]:
    """The best reliable cell of ``row``: (η, value); the lowest η among ties."""
    s = sign(table.direction)
    cells = [
        (table.columns[j], v)
        for j, v in enumerate(table.values[row])
        if v is not None and reliable(table.n_ok[row][j], table.n_total[row][j], fraction)
    ]
    if not cells:
        return None, None
    return min(cells, key=lambda cell: s * cell[1])  # min() keeps the first: the lowest η


def _study(
    problem: Problem, metric: str, fraction: float
) -> tuple[StudyHeader, dict[str, StudyEntry]]:
    try:
        table = heatmap(problem.records, metric, problem.direction, problem.slice)
        ranges = robustness_from_heatmap(table, min_finite_fraction=fraction)
        tuned = tunability(
            problem.records, metric, problem.direction, problem.slice,
            diverged=TUNABILITY_DIVERGED, min_finite_fraction=fraction,
        )  # fmt: skip
    except ValueError as error:
        raise ValueError(f"study {problem.id}: {error}") from error
    entries = {}
    for i, name in enumerate(table.rows):
        r = ranges.ranges[name]
        best_eta, best_value = _best(table, i, fraction)
        t = tuned.optimizers[name]
        entries[name] = StudyEntry(
            eta_low=r.eta_low,
            eta_high=r.eta_high,
            decades=r.decades,
            includes_infinity=r.includes_infinity,
            n_good=r.n_good,
            best_eta=best_eta,
            best_value=best_value,
            cpe=t.cpe,
            p_k=list(t.p_k),
            seeds=r.seeds,
            diverged_seeds=r.diverged_seeds,
        )
    header = StudyHeader(
        id=problem.id,
        name=problem.name,
        task=problem.task,
        direction=problem.direction,
        slice=dict(table.slice),
        cutoff=ranges.cutoff,
        reference_value=ranges.reference_value,
    )
    return header, entries


def compare(
    problems: Sequence[Problem],
    metric: str = "final_objective",
    min_finite_fraction: float = DEFAULT_MIN_FINITE_FRACTION,
    tau_max: float = DEFAULT_TAU_MAX,
) -> Comparison:
    """The :class:`Comparison` of ``problems`` (module docstring). ``ValueError`` for no
    problem, two problems with the same id, a maximised metric, a study whose slice must be
    chosen, a best value ≤ 0 (each naming the study) or a bad ``tau_max``."""
    fraction = check_fraction(min_finite_fraction)
    check_tau_max(tau_max)
    if not problems:
        raise ValueError("studies: compare needs at least one study")
    ids = [problem.id for problem in problems]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"studies: {repeated[0]} is named more than once")
    for problem in problems:
        if check_direction(problem.direction) == "maximize":
            raise ValueError(
                f"metric: {metric!r} is maximised in study {problem.id}; performance profiles "
                "compare costs to minimise (Dolan & Moré 2002), so compare a loss"
            )
    studied = [_study(problem, metric, fraction) for problem in problems]
    tables = {header.id: entries for header, entries in studied}
    names = list(dict.fromkeys(name for _, entries in studied for name in entries))
    # every optimizer lists every study, in study order (None: that study did not run it)
    optimizers = {name: {i: tables[i].get(name) for i in ids} for name in names}
    costs = {i: {name: entry.best_value for name, entry in tables[i].items()} for i in ids}
    profile = performance_profile(costs, names, tau_max, problem_label="study")
    return Comparison(
        studies=[header for header, _ in studied],
        optimizers=optimizers,
        profile=profile,
        metric=metric,
        min_finite_fraction=fraction,
    )
