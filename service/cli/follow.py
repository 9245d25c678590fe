"""A live progress bar of a study until it is finished (``status``, and ``make run``'s demo)."""

import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from studies.statuses import STUDY_FINISHED as FINISHED

if TYPE_CHECKING:
    from service.client import ApiClient
    from service.models import StudyOut, StudySummary


def _bar_fields(study: "StudySummary") -> dict[str, Any]:
    """The progress bar's description (the study's name), total, completed count, status and
    counts columns."""
    p = study.progress
    return {
        "description": str(study.name),
        "status": study.status,
        "total": p.total or None,  # None: an indeterminate bar (a search still sampling)
        "completed": p.done,
        "counts": f"running {p.running} · diverged {p.diverged} · failed {p.failed}",
    }


def follow(
    client: "ApiClient",
    study_id: str,
    out: Console,
    interval: float = 1.0,
    timeout: float | None = None,
) -> "StudyOut":
    """Show a live progress bar of the study on ``out`` until it is finished; return the last
    state (the client's ``last_response`` is its body).

    Raises ``ApiError`` from the client, and ``TimeoutError`` when ``timeout`` seconds pass
    before the study finishes.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    columns = (
        SpinnerColumn(),
        # the name as it is: no markup or emoji codes read in it (a name may hold "[/x]")
        TextColumn("{task.description}", markup=False),
        TextColumn("{task.fields[status]}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
    )
    updates = client.watch(study_id, interval)  # ends with the first finished state
    study = next(updates)  # errors (unknown id, no service) before any bar
    if study.status in FINISHED:
        return study
    with Progress(*columns, console=out) as progress:
        bar = progress.add_task(**_bar_fields(study))
        for study in updates:
            progress.update(bar, **_bar_fields(study))
            late = deadline is not None and time.monotonic() > deadline
            if late and study.status not in FINISHED:
                state = study.status
                raise TimeoutError(f"study {study_id} is still {state} after {timeout:g} s")
    return study
