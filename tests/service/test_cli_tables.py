"""The CLI's tables on a narrow terminal: identifiers stay whole and on one line, and no cell
loses its end to an ellipsis (a claim id, a measured value, a trial key)."""

import io

from rich.console import Console

from service.cli.render import reproduction_table, trials_table
from service.models import Reproduction, TrialPage

CLAIMS = [
    {"id": "alig-accurate-over-eta", "source": "ALI-G paper §5.1, Results and Figure 3",
     "statement": "…", "optimizer": "alig", "metric": "final_objective", "slice": {},
     "claimed": [0.1, 1e6],
     "measured": {"good_points": [1e4, 1e5, 1e6], "not_good": [100.0, 1000.0],
                  "cutoff": 3.622396180347209e-7},
     "status": "fail", "seeds_holding": 0, "seeds_total": 1},
    {"id": "sgd-momentum-sensitive", "source": "ALI-G paper §5.1, Results and Figure 3",
     "statement": "…", "optimizer": "sgd-momentum", "metric": "final_objective", "slice": {},
     "claimed": 2, "measured": 0, "status": "pass", "seeds_holding": 1, "seeds_total": 1},
]  # fmt: skip


def _rendered(table, width: int = 80) -> str:
    console = Console(width=width, record=True, highlight=False, file=io.StringIO())
    console.print(table)
    return console.export_text()


def test_the_reproduction_table_keeps_claim_ids_and_measured_values_whole_at_80_columns():
    data = Reproduction.model_validate(
        {"preset": "dnc-heatmap", "budget": {"study": 10000, "paper": 10000}, "claims": CLAIMS}
    )
    text = _rendered(reproduction_table(data))
    assert "…" not in text
    lines = text.splitlines()
    for claim in CLAIMS:
        assert any(claim["id"] in line for line in lines), claim["id"]
    # a folded measured value is all there once the cells' pieces are put back together
    cells = "".join(line.split("│")[4].strip() for line in lines if line.count("│") == 7)
    assert "not_good=[100,1e+03],cutoff=3.62e-07" in cells.replace(" ", "")


def test_the_trials_table_keeps_keys_whole_at_60_columns():
    item = {"key": "0123456789abcdef", "optimizer": "sgd-momentum", "eta": 0.0003,
            "batch_size": 16, "radius": None, "weight_decay": None, "seed": 0, "extra_axes": {},
            "status": "completed", "final_objective": 4.2e-8, "objective_kind": "finite",
            "metrics": {}, "reason": None, "attempts": 1, "config": None, "started_at": None,
            "finished_at": None}  # fmt: skip
    page = TrialPage.model_validate({"items": [item], "next_cursor": None})
    text = _rendered(trials_table(page), width=60)
    assert "…" not in text
    assert any("0123456789abcdef" in line for line in text.splitlines())


def _heatmap(etas: list, optimizers: list[str]):
    from service.models import Heatmap

    grid = [[1.5e-7 * (i + 1) for i in range(len(etas))] for _ in optimizers]
    status = [["ok"] * len(etas) for _ in optimizers]
    counts = [[1] * len(etas) for _ in optimizers]
    total = [[1] * len(etas) for _ in optimizers]
    status[0][0], grid[0][0] = "diverged", None
    status[1][0], grid[1][0], total[1][0] = "missing", None, 0  # never scheduled
    status[2][0], grid[2][0] = "missing", None  # scheduled, no result yet
    return Heatmap.model_validate({
        "rows": optimizers, "columns": etas, "values": grid, "status": status, "n_ok": counts,
        "n_total": total, "n_diverged": counts, "metric": "final_objective",
        "direction": "minimize", "slice": {"batch_size": 16},
    })  # fmt: skip


def test_a_heatmap_too_wide_for_the_terminal_runs_eta_down_the_rows():
    from service.cli.render import heatmap_table

    # the Figure 3 grid: 38 η values (ALI-G∞ last), 8 optimizers
    etas = [10.0 ** (k / 4 - 4) for k in range(37)] + [None]
    optimizers = ["sgd", "sgd-momentum", "adam", "adagrad", "rmsprop", "l4mom", "l4adam", "alig"]
    data = _heatmap(etas, optimizers)
    text = _rendered(heatmap_table(data, width=120), width=120)
    lines = text.splitlines()
    header = next(line for line in lines if "η" in line and "alig" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == ["η", *optimizers]
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 38 and rows[-1].strip("│ ").startswith("∞")
    first = [c.strip() for c in rows[0].strip("│ ").split("│")]
    assert first[:5] == ["0.0001", "diverged", "·", "missing", "1.5e-07"]
    assert "· = not in the study's grid" in " ".join(text.split())
    assert all(len(line) <= 120 for line in lines)
    # on 80 columns too: η down the rows (cells fold where they must)
    narrow = heatmap_table(data, width=80)
    assert [str(c.header) for c in narrow.columns] == ["η", *optimizers]
    assert all(len(line) <= 80 for line in _rendered(narrow, width=80).splitlines())
    # where it fits, optimizers down the rows as before
    small = heatmap_table(_heatmap([0.01, 0.1, 1.0], optimizers[:3]), width=80)
    assert [str(c.header) for c in small.columns] == ["optimizer", "0.01", "0.1", "1"]
    wide = heatmap_table(_heatmap(etas, optimizers), width=1000)
    assert len(wide.columns) == 39 and str(wide.columns[0].header) == "optimizer"
