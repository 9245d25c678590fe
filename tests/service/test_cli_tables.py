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
