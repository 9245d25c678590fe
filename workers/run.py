"""A study's driver: ``python -m workers.run <study-id>``, usually as the study's Ray Job.

1. loads the study from SQL (``SENSITIVITY_DATABASE_URL``), resets trials a dead driver left
   ``running``, and marks the study ``running``;
2. runs the study's **unfinished** trials with Ray Tune on the cluster it is in (or a local Ray):
   grid studies as ``tune.grid_search`` over the trials' configs, grouped into packs trained as
   one vectorised model each where they can be (``execution.packing``: :mod:`workers.packing`),
   search studies with
   one ``OptunaSearch`` per optimizer; ``tune.with_resources`` from the spec (fractional GPUs
   allowed), ``reuse_actors=True``, ``FailureConfig(max_failures)`` and an absolute storage path;
   trials Tune ended because the cluster lost them (not their own crashes) run again in up to
   ``LOST_TRIAL_ROUNDS`` further Tune runs;
3. a driver-side callback writes every result into SQL as it arrives (``store_callback``);
4. ends the study ``succeeded`` (every trial finished; diverged and failed trials are results),
   ``failed`` with the reason (every trial failed, or the driver itself failed), or leaves it
   ``cancelled`` when it was cancelled meanwhile (its running trials become ``cancelled``).

Running it again for an interrupted study runs only what is not finished: the database, not
Tune's experiment directory, is the source of truth. What the experiment directories add is the
trials' checkpoints (``execution.checkpoint_every``; :mod:`workers.checkpoints`): each Tune run
keeps the last ``KEEP_CHECKPOINTS`` of each trial (``CheckpointConfig(num_to_keep)``), Tune's
retry of a crashed trial continues from its last one, and every round hands its trials the
latest checkpoint earlier runs left of each (``resume_from``), so a trial interrupted with its
driver continues too. After a round the checkpoints of trials finished in SQL are deleted; the
rest go with the study (``RayJobLauncher.forget`` removes its experiment directories).
"""

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from studies.lifecycle import StudyLifecycle
from studies.settings import Settings
from studies.spec import StudySpec
from studies.statuses import TRIAL_FINISHED
from studies.store import Store, repository
from studies.trial import TrialRecord
from workers.checkpoints import CheckpointInfo, latest_checkpoint_infos, remove_checkpoints
from workers.ray_env import apply_ray_environment

log = logging.getLogger("workers.run")
# Tune runs after the first one, each for the trials the one before lost to the cluster (a node
# gone while a trial was being placed or restarted: Tune ends those trials without a retry)
LOST_TRIAL_ROUNDS = 3
# checkpoints Tune keeps per trial: the last, and the one before (a driver that died while the
# last was being copied finds that one incomplete and continues from the one before)
KEEP_CHECKPOINTS = 2


def _samples_left(n_trials: int, records: list[TrialRecord], row: str) -> int:
    """How many of a search entry's ``n_trials`` samples have no finished trial yet."""
    return n_trials - sum(1 for r in records if r.optimizer == row and r.status in TRIAL_FINISHED)


class StudyDriver:
    """Runs one study's unfinished trials on Ray Tune."""

    def __init__(self, store: Store, study_id: str, settings: Settings) -> None:
        self.store = store
        self.study_id = study_id
        self.settings = settings
        self.lifecycle = StudyLifecycle(store)

    def run(self) -> str:
        """Run the study; return its final status."""
        started = self.lifecycle.begin_run(self.study_id)
        if started is None:
            log.info("study %s is cancelled: nothing to run", self.study_id)
            return "cancelled"
        if started.reset_trials:
            log.info("reset %d trials left running by an earlier driver", started.reset_trials)
        spec = started.spec
        try:
            self._connect_ray()
            run_round = self._run_search if spec.search is not None else self._run_grid
            for round_number in range(1 + LOST_TRIAL_ROUNDS):
                run_round(spec)
                left = self._left_to_run(spec)
                if not left or self.lifecycle.is_cancelled(self.study_id):
                    break
                if round_number < LOST_TRIAL_ROUNDS:
                    log.info(
                        "study %s: %d trials lost to the cluster run again", self.study_id, left
                    )
        except BaseException as error:
            log.error("study %s failed: %s", self.study_id, traceback.format_exc())
            self.lifecycle.fail_run(self.study_id, f"{type(error).__name__}: {error}")
            raise
        status, progress = self.lifecycle.finish_run(self.study_id)
        log.info("study %s %s: %s", self.study_id, status, progress.as_dict())
        return status

    # ----------------------------------------------------------------------------- Ray and Tune

    def _connect_ray(self) -> None:
        import ray

        apply_ray_environment(self.settings)
        if ray.is_initialized():
            return
        address = self.settings.ray_cluster_address
        if address:
            # ray.init prefers RAY_ADDRESS (a Ray Job's) to its argument: the setting wins
            os.environ["RAY_ADDRESS"] = address
        if address or os.environ.get("RAY_ADDRESS"):
            # a Ray Job (RAY_ADDRESS set by Ray) or an explicit cluster: join it
            ray.init(address=address, log_to_driver=True)
        else:  # run by hand with no cluster: a private local Ray for this driver
            ray.init(
                address="local", num_cpus=self.settings.local_ray_num_cpus, include_dashboard=False
            )

    def _tuner_parts(self, spec: StudySpec, name: str) -> dict[str, Any]:
        from ray import tune

        from workers.store_callback import CancelStopper

        storage = self.settings.resolved_storage_path
        storage.mkdir(parents=True, exist_ok=True)
        return {
            "resources": {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
            "run_config": tune.RunConfig(
                name=name,
                storage_path=str(storage),
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
                stop=CancelStopper(self.store, self.study_id),
                verbose=1,
            ),
        }

    def _run_grid(self, spec: StudySpec) -> None:
        from ray import tune

        from workers.packing import plan_packs, runs_packed
        from workers.store_callback import StoreCallback
        from workers.trainable import grid_trials, train

        with self.store.session() as session:
            trials = repository.unfinished_trials(session, self.study_id)
        if not trials:
            log.info("study %s: every trial is finished", self.study_id)
            return
        log.info("study %s: running %d unfinished trials", self.study_id, len(trials))
        parts = self._tuner_parts(spec, f"study-{self.study_id}")
        run_config = parts["run_config"]
        run_config.callbacks = [
            StoreCallback(
                self.store, self.study_id, trial_of=grid_trials, max_failures=spec.max_failures
            )
        ]
        ours = [record.trial for record in trials]
        checkpoints = latest_checkpoint_infos(self._experiment_dirs())
        if spec.execution.packing == "auto":
            packs = plan_packs(
                ours,
                slots=self._slots(spec),
                max_pack_size=spec.execution.max_pack_size,
                checkpoints=checkpoints,
            )
        else:
            packs = [[trial] for trial in ours]
        log.info(
            "study %s: %d Tune trials (%d packs of %s members)",
            self.study_id, len(packs), sum(len(p) > 1 for p in packs),
            sorted({len(p) for p in packs if len(p) > 1}),
        )  # fmt: skip
        entries = [
            [t.to_json() for t in pack] if runs_packed(pack, checkpoints) else pack[0].to_json()
            for pack in packs
        ]
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(train, **self._train_parameters(spec, checkpoints)),
                parts["resources"],
            ),
            param_space={"trial": tune.grid_search(entries)},
            tune_config=tune.TuneConfig(reuse_actors=True),
            run_config=run_config,
        )
        tuner.fit()
        self._remove_finished_checkpoints()

    # ------------------------------------------------------------------------------ checkpoints

    def _experiment_dirs(self) -> list[Path]:
        """Tune's experiment directories of this study (a grid's, a search's one per entry)."""
        storage = self.settings.resolved_storage_path
        return [storage / f"study-{self.study_id}", *storage.glob(f"study-{self.study_id}-*")]

    def _train_parameters(
        self, spec: StudySpec, checkpoints: dict[str, CheckpointInfo] | None = None
    ) -> dict[str, Any]:
        """The trainable's parameters from the study's execution: the checkpoint cadence and,
        per trial key, the latest checkpoint an earlier run left (a driver that died, a round
        that lost the trial); whether packs compile."""
        if checkpoints is None:
            checkpoints = latest_checkpoint_infos(self._experiment_dirs())
        resume_from = {key: str(info.path) for key, info in checkpoints.items()}
        if resume_from:
            log.info("study %s: %d trials continue from checkpoints", self.study_id,
                     len(resume_from))  # fmt: skip
        return {
            "checkpoint_every": spec.execution.checkpoint_every,
            "resume_from": resume_from,
            "compile": spec.execution.compile,
        }

    def _remove_finished_checkpoints(self) -> None:
        """Delete the checkpoints of trials finished in SQL: nothing continues them."""
        with self.store.session() as session:
            finished = {
                r.key
                for r in repository.trial_records(session, self.study_id)
                if r.status in TRIAL_FINISHED
            }
        removed = remove_checkpoints(self._experiment_dirs(), finished)
        if removed:
            log.info("study %s: removed %d checkpoints of finished trials", self.study_id,
                     removed)  # fmt: skip

    def _slots(self, spec: StudySpec) -> int:
        """How many trials of ``spec``'s resources the cluster can run at once (at least 1)."""
        import ray

        total = ray.cluster_resources()
        if spec.resources.gpu > 0:
            return max(1, int(total.get("GPU", 0) // spec.resources.gpu))
        return max(1, int(total.get("CPU", 1) // spec.resources.cpu))

    def _run_search(self, spec: StudySpec) -> None:
        from ray import tune

        from workers.search import SampledTrials, make_searcher, sampled_point, search_space
        from workers.store_callback import StoreCallback
        from workers.trainable import train

        assert spec.search is not None
        with self.store.session() as session:
            unfinished = repository.unfinished_trials(session, self.study_id)
            records = repository.trial_records(session, self.study_id)
        for index, entry in enumerate(spec.entries):
            remaining = _samples_left(spec.search.n_trials, records, entry.row)
            if remaining <= 0:
                continue
            # samples an earlier driver started and never finished run again, first
            rerun = [
                sampled_point(spec.search, trial)
                for trial in unfinished
                if trial.optimizer == entry.row
            ][:remaining]
            if rerun:
                log.info("optimizer %s: re-running %d interrupted samples", entry.row, len(rerun))
            sampled = SampledTrials(spec, index)
            parts = self._tuner_parts(spec, f"study-{self.study_id}-{index}")
            run_config = parts["run_config"]
            run_config.callbacks = [
                StoreCallback(
                    self.store,
                    self.study_id,
                    trial_of=sampled,
                    creates_rows=True,
                    max_failures=spec.max_failures,
                )
            ]
            tuner = tune.Tuner(
                tune.with_resources(
                    tune.with_parameters(train, trial_of=sampled, **self._train_parameters(spec)),
                    parts["resources"],
                ),
                param_space=search_space(spec.search),
                tune_config=tune.TuneConfig(
                    search_alg=make_searcher(
                        spec, self.study_id, index, self.settings.resolved_database_url, rerun
                    ),
                    num_samples=remaining,
                    reuse_actors=True,
                ),
                run_config=run_config,
            )
            tuner.fit()
            self._remove_finished_checkpoints()
            if self.lifecycle.is_cancelled(self.study_id):
                return

    def _left_to_run(self, spec: StudySpec) -> int:
        """Trials a round left to run: unfinished rows (lost to the cluster); for a search also
        the samples of its budget that never got a row (lost before they started)."""
        with self.store.session() as session:
            records = repository.trial_records(session, self.study_id)
        if spec.search is None:
            return sum(1 for r in records if r.status not in TRIAL_FINISHED)
        n_trials = spec.search.n_trials
        return sum(max(0, _samples_left(n_trials, records, entry.row)) for entry in spec.entries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a stored study's unfinished trials.")
    parser.add_argument("study_id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings()
    store = Store(settings.resolved_database_url)
    store.upgrade()
    status = StudyDriver(store, args.study_id, settings).run()
    return 0 if status in ("succeeded", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main())
