"""The answers of the analysis routes, computed once per study version and kept in memory.

An analysis reads every trial of a study (thousands of rows, each a validated config) and can
take seconds (fANOVA importance: ~13 s for 5,000 trials; a large heatmap image: seconds under
matplotlib's process-wide lock). The answer only changes when the study's trials do, so the
routes serve it from an :class:`AnswerCache` keyed on

``(what, study id, study version, parameters)``

where :func:`study_version` is one aggregate query over the study's trial rows (served by the
``(study_id, status)`` index): the number of trials, how many are finished, the sum of their
attempts and the latest ``updated_at``. A new trial changes the count; a trial that starts,
finishes, is requeued or cancelled changes a count, the attempts or the timestamp (the store
sets ``updated_at`` on every change of a row, and writing the same result again changes
nothing, not even the timestamp), so a new result invalidates every answer of its study and
nothing else. Old versions are never looked up again and age out of the LRU. Blind spot,
accepted: a finished trial whose result is replaced by another one within the same microsecond
as the latest change, or by a writer whose clock is behind, without any count changing.

The version does not see a trial's curve points: a report writes them without touching the
trial's row. The analyses read final values, which only the row holds, so their keys need no
more; the answers drawn from the curves themselves (``/curves``, the live page's curve names,
its event stream's token) add :func:`studies.store.repository.latest_steps` to their keys.

:class:`AnswerCache` is a bounded LRU (entries and bytes) that is safe across the threadpool's
threads, with one computation per key at a time: concurrent requests for an answer being
computed wait for it instead of computing it again (a burst of requests for a cold importance
costs one computation, not one per request). A refusal (the analysis cannot be computed from
these results yet, a 422) is an answer too and is cached the same way; any other error is
not cached and reaches every waiting request.
"""

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from service.exceptions import AnalysisUnavailable
from studies.statuses import TRIAL_FINISHED
from studies.store.models import TrialRow

MAX_ENTRIES = 512
MAX_BYTES = 256 * 2**20  # 256 MiB in all
MAX_ENTRY_BYTES = 32 * 2**20  # a larger answer is served but not kept


@dataclass(frozen=True)
class StudyVersion:
    """What changes whenever a trial of the study changes (see the module docstring)."""

    trials: int
    finished: int
    attempts: int
    updated_at: datetime | None


def study_version(session: Session, study_id: str) -> StudyVersion:
    """The study's :class:`StudyVersion`: one aggregate query over its trial rows."""
    finished = func.sum(case((TrialRow.status.in_(TRIAL_FINISHED), 1), else_=0))
    row = session.execute(
        select(
            func.count(TrialRow.id),
            func.coalesce(finished, 0),
            func.coalesce(func.sum(TrialRow.attempts), 0),
            func.max(TrialRow.updated_at),
        ).where(TrialRow.study_id == study_id)
    ).one()
    return StudyVersion(int(row[0]), int(row[1]), int(row[2]), row[3])


@dataclass(frozen=True)
class Answer:
    """A computed answer: the response body and its media type, or why there is none."""

    body: bytes = b""
    media_type: str = "application/json"
    refusal: str | None = None  # the message of the 422 when the analysis is unavailable

    @property
    def size(self) -> int:
        return len(self.body) + len(self.refusal or "")


class AnswerCache:
    """A thread-safe LRU of :class:`Answer` by key, bounded in entries and bytes, computing
    each key once at a time (see the module docstring)."""

    def __init__(
        self,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        max_entry_bytes: int = MAX_ENTRY_BYTES,
    ) -> None:
        self.max_entries, self.max_bytes, self.max_entry_bytes = (
            max_entries, max_bytes, max_entry_bytes,
        )  # fmt: skip
        self._entries: OrderedDict[Hashable, Answer] = OrderedDict()
        self._running: dict[Hashable, Future[Answer]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.waits = 0  # waits: spared a computation under way

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """The bytes the kept answers hold."""
        return self._bytes

    def clear(self) -> None:
        """Forget every kept answer (computations under way finish and are kept)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def get(self, key: Hashable, compute: Callable[[], Answer]) -> Answer:
        """The answer of ``key``: kept, being computed by another thread (waited for), or
        computed now by ``compute()`` in this thread. :class:`AnalysisUnavailable` raised by
        ``compute`` becomes a kept refusal; any other exception propagates, uncached."""
        with self._lock:
            kept = self._entries.get(key)
            if kept is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return kept
            running = self._running.get(key)
            if running is not None:
                self.waits += 1
            else:
                self.misses += 1
                future: Future[Answer] = Future()
                self._running[key] = future
        if running is not None:
            return running.result()
        try:
            try:
                answer = compute()
            except AnalysisUnavailable as error:
                answer = Answer(refusal=str(error))
        except BaseException as error:
            with self._lock:
                del self._running[key]
            future.set_exception(error)
            raise
        with self._lock:
            del self._running[key]
            self._keep(key, answer)
        future.set_result(answer)
        return answer

    def _keep(self, key: Hashable, answer: Answer) -> None:
        """Store ``answer`` and evict the least recently used ones past the bounds (locked)."""
        if answer.size > self.max_entry_bytes:
            return
        previous = self._entries.pop(key, None)  # only after a clear() during the computation
        if previous is not None:
            self._bytes -= previous.size
        self._entries[key] = answer
        self._bytes += answer.size
        while self._entries and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size
