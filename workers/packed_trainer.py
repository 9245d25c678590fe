r"""Train a pack: many trials of one task as one vectorised model (``torch.func``).

The members of a pack share task, task options, batch size, budget, device and everything else
of the run but η, radius, the optimizer and its options, and the seed
(:func:`workers.packing.pack_key`). Member ``k`` follows the trajectory its trial would follow
alone (:mod:`workers.trainer`):

- **initialisation**: ``torch.manual_seed(seed_k)`` then the task's ``build_model()``, as a
  trial does; the members' parameters are stacked (``stack_module_state``) into tensors
  ``[K, …]``;
- **data**: one stream per distinct seed, built as a trial builds its own (the task from the
  seed, a generator seeded with it); members with the same seed read the same batches, and a
  step draws one batch per stream, stacked with a stream dimension (the DNC pads its sequences);
- **loss and gradient**: the task's per-sample loss under ``vmap(functional_call)`` (with
  ``compile``, a recurrent task's sequence unrolled around one compiled, vmapped time step:
  :mod:`workers.compiled_unroll`); one backward of the sum of the members' batch-mean losses
  gives each member exactly its own gradient (members share no parameter);
- **per-member everything**: gradient clipping (the same formula as
  ``torch.nn.utils.clip_grad_norm_``, over the member's slices), the packed optimizer
  (:mod:`optim.packed`: each member's step size from its own loss and gradient), the l2-ball
  projection, the learning-rate schedule's multiplier, divergence monitors, step-size
  statistics, reports and objectives;
- **divergence**: a member whose loss blows up is reported ``diverged`` at once and leaves the
  pack (every per-member tensor is compacted), so it costs nothing afterwards and never changes
  another member's numbers;
- **mixed precision** (``amp`` on a device of :data:`workers.precision.AMP_DTYPES`): the
  forward pass runs under ``torch.autocast`` and each member has its own loss scale
  (:class:`~workers.precision.PackedGradScaler`): its loss is scaled by its scale, its
  gradient unscaled by it, and a member whose gradient overflowed skips the step (the packed
  optimizer's ``active``) and backs off alone, as its trial's ``GradScaler`` does.

Reports go to ``report(progress, finals)``: ``progress`` maps trial keys to the metrics a trial
alone would report at that point (the same names: :mod:`workers.trainer`), ``finals`` maps the
keys of the members that ended at that point to their :class:`~workers.trainer.TrialResult`.

**Checkpoints.** With ``checkpointing`` (:class:`~workers.trainer.Checkpointing`), every
``every``-th regular report goes to ``checkpointing.save(progress, states)`` instead, with one
state per member still training (:meth:`PackedRun.member_state`: the member's parameters and
buffers, its share of the packed optimizer, its monitors, losses and curve, the pack's
counters and schedule, and its data stream's random state). A member's state does not depend on
the rest of its pack: :meth:`PackedRun.load_member_states` continues any members whose states
were taken at the same point, in a pack of other members than the one that saved them, and
each ends exactly where the uninterrupted run ends. See docs/architecture.md, "Packed trials"
and "Checkpoints".
"""

import copy
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, stack_module_state, vmap
from torch.utils._pytree import tree_map

from optim.exceptions import MemberStateError
from optim.packed import (
    PackedOptimizer,
    build_packed,
    member_norms,
    packed_form,
    per_member,
    project_members,
)
from studies.trial import Trial, TrialConfig
from workers.checkpoints import rng_state, set_rng_state
from workers.compiled_unroll import COMPILE_ERRORS, compiled_unroll
from workers.divergence import DivergenceMonitor
from workers.exceptions import CheckpointError, TaskConfigError
from workers.precision import PackedGradScaler, amp_dtype, autocast
from workers.schedules import build_scheduler, schedule_applies
from workers.tasks.base import Batch, Task
from workers.tasks.registry import build_task
from workers.trainer import (
    DEFAULT_REPORTS_PER_TRIAL,
    Checkpointing,
    TrialResult,
    _optimizer_options,
    resolve_device,
    seed_everything,
)

log = logging.getLogger(__name__)

PackReport = Callable[[dict[str, dict[str, float]], dict[str, TrialResult]], None]
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s term added to the norm


class _LossOf(torch.nn.Module):
    """``forward(batch) = task.per_sample_loss(model, batch)``: the task's loss as a module, so
    ``functional_call`` can run it with a member's parameters."""

    def __init__(self, model: torch.nn.Module, task: Task) -> None:
        super().__init__()
        self.model = model
        self.task = task

    def forward(self, inputs: Any, targets: torch.Tensor, extras: dict[str, Any]) -> torch.Tensor:
        return self.task.per_sample_loss(self.model, Batch(inputs, targets, None, extras))


@dataclass
class _Member:
    """One trial of the pack and its running bookkeeping."""

    trial: Trial
    stream: int  # index of its data stream (its seed's)
    monitor: DivergenceMonitor
    clip: float | None
    scheduled: bool  # whether the study's schedule moves its η
    interval_losses: list[float] = field(default_factory=list)
    recent: deque[float] = field(default_factory=deque)
    epoch_losses: list[float] = field(default_factory=list)
    size_total: float = 0.0
    size_capped: int = 0
    size_count: int = 0
    last_metrics: dict[str, float] = field(default_factory=dict)
    curve: list[dict[str, float]] = field(default_factory=list)  # every report so far

    @property
    def config(self) -> TrialConfig:
        return self.trial.config

    @property
    def form(self) -> str:
        return str(packed_form(self.config.optimizer, self.config.optimizer_options))


@dataclass
class _Form:
    """A contiguous range of members sharing one packed optimizer."""

    start: int
    stop: int
    optimizer: PackedOptimizer


def packable_trial(config: TrialConfig) -> bool:
    """Whether ``config``'s trial may run in a pack (the optimizer has a packed form and the
    task is packable)."""
    from workers.tasks.registry import TASK_TYPES

    task_type = TASK_TYPES.get(config.task)
    if task_type is None or not task_type.packable:
        return False
    return packed_form(config.optimizer, config.optimizer_options) is not None


class PackedRun:
    """The state of one running pack; :meth:`run` trains it to the end of its budget."""

    def __init__(
        self,
        trials: list[Trial],
        report: PackReport,
        checkpointing: Checkpointing | None = None,
        compile: bool = False,
    ) -> None:
        if not trials:
            raise TaskConfigError("a pack needs at least one trial")
        first = trials[0].config
        for trial in trials:
            if not packable_trial(trial.config):
                raise TaskConfigError(f"{trial.config.optimizer}: this trial cannot be packed")
        self.config = first
        self.report_fn = report
        self.checkpointing = checkpointing
        self.started = time.perf_counter()
        self.device = resolve_device(first.device)
        torch.set_num_threads(first.threads)
        # members sorted by packed form so that each form's members are a contiguous range
        trials = sorted(
            trials,
            key=lambda t: str(packed_form(t.config.optimizer, t.config.optimizer_options)),
        )
        seeds = sorted({t.config.seed for t in trials})
        self.tasks: list[Task] = []
        self.generators: list[torch.Generator] = []
        for seed in seeds:  # each stream built as a trial with that seed builds its own
            seed_everything(seed)
            self.tasks.append(
                build_task(first.task, first.task_options, seed=seed, device=self.device)
            )
            self.generators.append(torch.Generator().manual_seed(seed))
        self.task = self.tasks[0]
        self.unit = self.task.spec.budget_unit
        models = []
        for trial in trials:
            torch.manual_seed(trial.config.seed)  # a trial's initialisation depends on its seed
            models.append(self.task.build_model().to(self.device))
        self.rows = [t.key for t in trials]  # the trial of each row of the stacked tensors
        self.template = models[0]  # holds one member's parameters for evaluation
        self.module = _LossOf(copy.deepcopy(models[0]).to("meta"), self.task)
        # execution.compile: a recurrent task's time steps as one compiled function
        self.unroll = (
            compiled_unroll(self.task, self.module.model, self.template, self.device)
            if compile
            else None
        )
        params, buffers = stack_module_state([_LossOf(m, self.task) for m in models])
        self.names = list(params)
        self.params = [params[n].detach().requires_grad_() for n in self.names]
        self.buffers = buffers
        self.members = [
            _Member(
                trial,
                seeds.index(trial.config.seed),
                DivergenceMonitor(trial.config.divergence_factor),
                self.task.grad_clip_norm(trial.config.optimizer),
                schedule_applies(trial.config.optimizer),
            )
            for trial in trials
        ]
        self.forms = self._build_forms()
        like = self.params[0]
        self.radius = torch.tensor(
            [m.config.radius or math.inf for m in self.members],
            dtype=like.dtype,
            device=self.device,
        )
        self.clip = torch.tensor(
            [m.clip or math.inf for m in self.members], dtype=like.dtype, device=self.device
        )
        project_members([p.data for p in self.params], self.radius)  # the first iterate is feasible
        self.precision = amp_dtype(first.amp, self.device)  # None: full precision
        self.scaler = (
            PackedGradScaler(len(self.members), self.device) if self.precision is not None else None
        )
        self.scheduler, self.schedule_lr = self._schedule()
        self.step_factor = 1.0  # the schedule's multiplier of η at the last step
        self.steps = 0
        self.epochs = 0
        self.reports = 0  # regular reports sent (a checkpoint is due every N of them)
        self.streams: list[Iterator[Batch]] = []

    # ------------------------------------------------------------------------------ building

    def _build_forms(self) -> list[_Form]:
        forms: list[_Form] = []
        start = 0
        while start < len(self.members):
            config = self.members[start].config
            form = packed_form(config.optimizer, config.optimizer_options)
            stop = start
            while (
                stop < len(self.members)
                and packed_form(
                    self.members[stop].config.optimizer, self.members[stop].config.optimizer_options
                )
                == form
            ):
                stop += 1
            group = [m.config for m in self.members[start:stop]]
            try:
                optimizer = build_packed(
                    config.optimizer,
                    [c.eta for c in group],
                    [_optimizer_options(c, self.task) for c in group],
                    like=self.params[0],
                )
            except ValueError as error:
                raise TaskConfigError(f"{config.optimizer}: {error}") from error
            forms.append(_Form(start, stop, optimizer))
            start = stop
        return forms

    def _schedule(self) -> tuple[Any, Callable[[], float]]:
        """The study's schedule as a multiplier of η: a torch scheduler on a one-parameter
        optimizer with learning rate 1 (every schedule is proportional to η)."""
        config = self.config
        dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        scheduler = build_scheduler(dummy, "sgd", config.schedule, config.budget)
        self._schedule_optimizer = dummy
        return scheduler, lambda: float(dummy.param_groups[0]["lr"])

    def _advance_schedule(self) -> None:
        """One unit of the schedule (the one-parameter optimizer's step moves nothing: it has
        no gradient, and torch's schedulers expect a step before theirs)."""
        if self.scheduler is not None:
            self._schedule_optimizer.step()
            self.scheduler.step()

    # ------------------------------------------------------------------------------ one step

    def _batch(self) -> tuple[Batch, bool]:
        """This step's batch of every stream (stacked with a stream dimension when there are
        several: the second value says so)."""
        batches = [next(stream) for stream in self.streams]
        if len(batches) == 1:
            return batches[0].to(self.device), False
        return self.task.stack_batches(batches).to(self.device), True

    def _losses(self, batch: Batch, stacked: bool) -> torch.Tensor:
        """The members' per-sample losses ``[K, B]`` under ``vmap``."""
        params = dict(zip(self.names, self.params, strict=True))
        data: Any = (batch.inputs, batch.targets, batch.extras)
        member_dim = None  # the data's member dimension for vmap
        if stacked:  # each member reads its own stream's batch
            index = torch.tensor([m.stream for m in self.members], device=self.device)
            data = tree_map(lambda t: t.index_select(0, index), data)
            member_dim = 0
        if self.unroll is not None:
            with autocast(self.device, self.precision):
                return self.unroll.losses(params, self.buffers, data, member_dim)
        in_dims: Any = (0, 0, member_dim)

        def loss(p: dict, b: dict, d: tuple) -> torch.Tensor:
            return functional_call(self.module, (p, b), d)

        with autocast(self.device, self.precision):
            return vmap(loss, in_dims=in_dims, randomness="error")(params, self.buffers, data)

    def train_step(self, batch: Batch, stacked: bool) -> None:
        """One step of every member. Members whose loss diverged on this batch are reported
        and leave the pack before the step, with the parameters that gave that loss (as a
        trial stops before its step); the others' losses are computed again without them.

        A compiled step that fails to compile (forward or backward: before any parameter
        moves) is logged and the pack goes on uncompiled, from this step."""
        try:
            self._train_step(batch, stacked)
        except COMPILE_ERRORS as error:
            if self.unroll is None:
                raise
            log.warning(
                "execution.compile: the step did not compile (%s: %s); this pack of %d "
                "runs uncompiled", type(error).__name__, error, len(self.members),
            )  # fmt: skip
            self.unroll = None
            self._train_step(batch, stacked)

    def _train_step(self, batch: Batch, stacked: bool) -> None:
        while True:
            per_sample = self._losses(batch, stacked)
            if per_sample.dtype in (torch.float16, torch.bfloat16):
                per_sample = per_sample.float()
            losses = per_sample.mean(dim=1)
            values = losses.detach().tolist()
            reasons = {
                i: reason
                for i, (m, v) in enumerate(zip(self.members, values, strict=True))
                if (reason := m.monitor.check(v)) is not None
            }
            if not reasons:
                break
            self._diverge(reasons)
            if not self.members:
                return
        for p in self.params:
            p.grad = None
        (losses if self.scaler is None else self.scaler.scaled(losses)).sum().backward()
        with torch.no_grad():
            grads = [p.grad for p in self.params]
            # under AMP: each member's gradient unscaled, and who overflowed (skips the step)
            found = None if self.scaler is None else self.scaler.unscale_(grads)
            active = None if found is None or not bool(found.any()) else ~found
            self._clip(grads)
            factor = self.schedule_lr() if self.scheduler is not None else 1.0
            for form in self.forms:
                if self.scheduler is not None and self.members[form.start].scheduled:
                    form.optimizer.scale_eta(factor)
                window = slice(form.start, form.stop)
                stepping = None if active is None else active[window]
                form.optimizer.step(
                    [p.data[window] for p in self.params],
                    [g[window] for g in grads],
                    losses.detach()[window],
                    stepping,
                )
                self._record_step_sizes(form, stepping)
            project_members([p.data for p in self.params], self.radius)
            if self.scaler is not None:
                self.scaler.update(found)
        self.steps += 1
        self.step_factor = factor
        if self.unit == "steps":
            self._advance_schedule()
        for m, v in zip(self.members, values, strict=True):
            m.interval_losses.append(v)

    def _clip(self, grads: list[torch.Tensor]) -> None:
        """``clip_grad_norm_`` per member: ``g *= min(1, clip / (||g|| + 1e-6))``."""
        if not bool(torch.isfinite(self.clip).any()):
            return
        norms = member_norms(grads)
        scale = (self.clip / (norms + CLIP_EPS)).clamp(max=1.0)
        for g in grads:
            g.mul_(per_member(scale.to(g.dtype), g))

    def _record_step_sizes(self, form: _Form, active: torch.Tensor | None) -> None:
        """Add the form's members' step sizes (not those of members that skipped the step)."""
        optimizer = form.optimizer
        if not optimizer.reports_step_size or optimizer.last_step_size is None:
            return
        sizes = optimizer.last_step_size.tolist()
        capped = optimizer.last_step_capped.tolist()  # type: ignore[union-attr]
        stepped = [True] * len(sizes) if active is None else active.tolist()
        members = self.members[form.start : form.stop]
        for m, size, cap, took in zip(members, sizes, capped, stepped, strict=True):
            if not took:
                continue
            m.size_total += size
            m.size_capped += bool(cap)
            m.size_count += 1

    # ------------------------------------------------------------------------------ members

    def _load_member(self, position: int) -> torch.nn.Module:
        """The template model holding member ``position``'s parameters and buffers."""
        with torch.no_grad():
            state = {
                n[len("model.") :]: p[position]
                for n, p in zip(self.names, self.params, strict=True)
            }
            state.update({n[len("model.") :]: b[position] for n, b in self.buffers.items()})
            self.template.load_state_dict(state, strict=True)
        return self.template

    def _evaluations(self, positions: list[int]) -> dict[int, dict[str, float]]:
        """The task's evaluation of the members ``positions``: vectorised per data stream where
        the task has it (:meth:`Task.evaluate_members`), else member by member."""
        results: dict[int, dict[str, float]] = {}
        for stream, task in enumerate(self.tasks):
            chosen = [i for i in positions if self.members[i].stream == stream]
            if not chosen:
                continue
            index = torch.tensor(chosen, device=self.device)
            params = {
                n: p.detach().index_select(0, index)
                for n, p in zip(self.names, self.params, strict=True)
            }
            buffers = {n: b.index_select(0, index) for n, b in self.buffers.items()}

            def forward(
                inputs: Any, params: dict = params, buffers: dict = buffers
            ) -> torch.Tensor:
                strip = len("model.")
                own = (
                    {n[strip:]: p for n, p in params.items()},
                    {n[strip:]: b for n, b in buffers.items()},
                )
                return vmap(
                    lambda p, b, x: functional_call(self.module.model, (p, b), (x,)),
                    in_dims=(0, 0, None),
                )(*own, inputs)

            together = task.evaluate_members(forward, self.config.batch_size)
            if together is None:
                together = [
                    task.evaluate(self._load_member(i), self.config.batch_size) for i in chosen
                ]
            results.update(zip(chosen, together, strict=True))
        return results

    def _metrics(
        self, position: int, evaluation: dict[str, float] | None = None
    ) -> dict[str, float]:
        """What the member's trial alone would report now (workers.trainer's metrics)."""
        m = self.members[position]
        metrics: dict[str, float] = {"step": self.steps, "epoch": self.epochs}
        if m.interval_losses:
            metrics["train_loss"] = sum(m.interval_losses) / len(m.interval_losses)
        if evaluation is None:
            evaluation = self._evaluations([position])[position]
        metrics.update(evaluation)
        if m.size_count:
            metrics["step_size_mean"] = m.size_total / m.size_count
            metrics["step_capped_fraction"] = m.size_capped / m.size_count
        m.size_total, m.size_capped, m.size_count = 0.0, 0, 0
        if self.scheduler is not None and m.scheduled and self.steps:
            # the learning rate of the last step, as a trial with a scheduler reports it
            metrics["lr"] = self.step_factor * float(m.config.eta)  # type: ignore[arg-type]
        if m.config.schedule.kind != "constant" and not m.scheduled:
            metrics["schedule_ignored"] = 1.0
        metrics["wall_time"] = time.perf_counter() - self.started
        m.interval_losses = []
        m.last_metrics = metrics
        m.curve.append(metrics)
        return metrics

    def _result(self, position: int, objective: float | None, reason: str | None) -> TrialResult:
        return TrialResult.ended(
            objective, reason, steps=self.steps, epochs=self.epochs,
            wall_time=time.perf_counter() - self.started,
            metrics=self.members[position].last_metrics,
        )  # fmt: skip

    def _drop(self, positions: list[int]) -> None:
        """Members ``positions`` leave the pack: every per-member tensor is compacted."""
        if not positions:
            return
        keep = [i for i in range(len(self.members)) if i not in set(positions)]
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.params = [p.detach().index_select(0, index).requires_grad_() for p in self.params]
        self.buffers = {n: b.index_select(0, index) for n, b in self.buffers.items()}
        self.radius = self.radius.index_select(0, index)
        self.clip = self.clip.index_select(0, index)
        if self.scaler is not None:
            self.scaler.keep(index)
        forms, start = [], 0
        for form in self.forms:
            inside = [i - form.start for i in keep if form.start <= i < form.stop]
            if inside:
                form.optimizer.keep(torch.tensor(inside, dtype=torch.long, device=self.device))
                forms.append(_Form(start, start + len(inside), form.optimizer))
                start += len(inside)
        self.forms = forms
        self.members = [self.members[i] for i in keep]
        self.rows = [self.rows[i] for i in keep]

    def _diverge(self, reasons: dict[int, str]) -> None:
        """Report the diverged members (their metrics now, as a trial reports when it stops)
        and drop them from the pack."""
        evaluations = self._evaluations(list(reasons))
        progress = {self.members[i].trial.key: self._metrics(i, evaluations[i]) for i in reasons}
        finals = {self.members[i].trial.key: self._result(i, None, r) for i, r in reasons.items()}
        self.report_fn(progress, finals)
        self._drop(list(reasons))

    def _all_metrics(self) -> dict[str, dict[str, float]]:
        """Every member's metrics now, keyed by trial."""
        evaluations = self._evaluations(list(range(len(self.members))))
        return {m.trial.key: self._metrics(i, evaluations[i]) for i, m in enumerate(self.members)}

    def _send(self, progress: dict[str, dict[str, float]]) -> None:
        """A regular report of every member, carrying their states when a checkpoint is due."""
        self.reports += 1
        if self.checkpointing is not None and self.checkpointing.due(self.reports):
            self.checkpointing.save(progress, self.member_states())
        else:
            self.report_fn(progress, {})

    # ------------------------------------------------------------------------------ checkpoints

    def member_state(self, position: int) -> dict[str, Any]:
        """Everything the rest of member ``position``'s run depends on, as copies (a view
        would save the whole pack's tensor): see the module docstring."""
        m = self.members[position]
        form = next(f for f in self.forms if f.start <= position < f.stop)
        return {
            "form": m.form,
            "params": {
                n: p.detach()[position].clone()
                for n, p in zip(self.names, self.params, strict=True)
            },
            "buffers": {n: b[position].clone() for n, b in self.buffers.items()},
            "optimizer": form.optimizer.member_state(position - form.start),
            "scaler": None if self.scaler is None else self.scaler.member_state(position),
            "monitor": m.monitor.state_dict(),
            "interval_losses": list(m.interval_losses),
            "epoch_losses": list(m.epoch_losses),
            "recent": list(m.recent),
            "step_sizes": [m.size_total, m.size_capped, m.size_count],
            "curve": [dict(metrics) for metrics in m.curve],
            "steps": self.steps,
            "epochs": self.epochs,
            "reports": self.reports,
            "step_factor": self.step_factor,
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "schedule_optimizer": self._schedule_optimizer.state_dict(),
            "wall_time": time.perf_counter() - self.started,
            "rng": rng_state(self.generators[m.stream]),
        }

    def member_states(self) -> dict[str, dict[str, Any]]:
        """Every member's :meth:`member_state`, keyed by trial."""
        return {m.trial.key: self.member_state(i) for i, m in enumerate(self.members)}

    def load_member_states(self, states: dict[str, dict[str, Any]]) -> None:
        """Continue every member from its :meth:`member_state` (trial key → state), taken in
        this pack or in any other at the same point of the run.

        Raises :class:`~workers.exceptions.CheckpointError` when a member has no state, when
        the states were taken at different points, or with another packed form, schedule or
        precision, or when their optimizer states do not fit together.
        """
        missing = [m.trial.key for m in self.members if m.trial.key not in states]
        if missing:
            raise CheckpointError(f"no checkpoint for the members {missing}")
        ordered = [states[m.trial.key] for m in self.members]
        points = sorted({(s["steps"], s["epochs"], s["reports"]) for s in ordered})
        if len(points) != 1:
            raise CheckpointError(
                f"the members' checkpoints were taken at different points (steps, epochs, "
                f"reports): {points}"
            )
        for m, state in zip(self.members, ordered, strict=True):
            if state["form"] != m.form:
                raise CheckpointError(
                    f"trial {m.trial.key}: its checkpoint is of the packed form "
                    f"{state['form']!r}, not {m.form!r}"
                )
        if any((s["scheduler"] is None) != (self.scheduler is None) for s in ordered):
            raise CheckpointError("the checkpoint was taken with another schedule")
        scalers = [s.get("scaler") for s in ordered]
        if any((scaler is None) != (self.scaler is None) for scaler in scalers):
            raise CheckpointError("the checkpoint was taken with another precision (amp)")
        with torch.no_grad():
            self.params = [
                torch.stack([s["params"][n] for s in ordered]).to(self.device).requires_grad_()
                for n in self.names
            ]
            self.buffers = {
                n: torch.stack([s["buffers"][n] for s in ordered]).to(self.device)
                for n in self.buffers
            }
        for form in self.forms:
            try:
                form.optimizer.load_member_states(
                    [s["optimizer"] for s in ordered[form.start : form.stop]]
                )
            except MemberStateError as error:
                raise CheckpointError(str(error)) from error
        if self.scaler is not None:
            self.scaler.load_member_states(scalers)  # type: ignore[arg-type]
        for m, state in zip(self.members, ordered, strict=True):
            m.monitor.load_state_dict(state["monitor"])
            m.interval_losses = list(state["interval_losses"])
            m.epoch_losses = list(state["epoch_losses"])
            m.recent = deque(state["recent"])
            m.size_total, m.size_capped, m.size_count = state["step_sizes"]
            m.curve = [dict(metrics) for metrics in state["curve"]]
            m.last_metrics = dict(m.curve[-1]) if m.curve else {}
        first = ordered[0]
        self.steps, self.epochs, self.reports = first["steps"], first["epochs"], first["reports"]
        self.step_factor = first["step_factor"]
        if self.scheduler is not None:
            self.scheduler.load_state_dict(first["scheduler"])
        self._schedule_optimizer.load_state_dict(first["schedule_optimizer"])
        self.started = time.perf_counter() - max(float(s["wall_time"]) for s in ordered)
        # last: building the pack drew from the random states
        for stream, generator in enumerate(self.generators):
            own = [s for m, s in zip(self.members, ordered, strict=True) if m.stream == stream]
            if own:
                set_rng_state(own[0]["rng"], generator)

    # ------------------------------------------------------------------------------ the loop

    def run(self) -> None:
        """Train every member to the end of the budget or its divergence, reporting as it goes."""
        if self.unit == "steps":
            self._run_steps()
        else:
            self._run_epochs()

    def _run_steps(self) -> None:
        budget = self.config.budget
        every = self.config.report_every or max(1, budget // DEFAULT_REPORTS_PER_TRIAL)
        window = min(getattr(self.task.options, "objective_window", 100), max(1, budget // 100))
        for m in self.members:  # a continued run keeps its checkpoint's window
            m.recent = deque(m.recent, maxlen=window)
        # a continued run draws the rest of each stream from its generator's checkpointed state
        self.streams = [
            iter(task.train_batches(self.config.batch_size, generator))
            for task, generator in zip(self.tasks, self.generators, strict=True)
        ]
        for _ in range(self.steps, budget):
            if not self.members:
                return
            self.train_step(*self._batch())
            for m in self.members:
                m.recent.append(m.interval_losses[-1])
            if self.members and (self.steps % every == 0 or self.steps == budget):
                if self.steps == budget:
                    self._finish_steps()
                else:
                    self._send(self._all_metrics())

    def _finish_steps(self) -> None:
        progress = self._all_metrics()
        finals = {}
        for i, m in enumerate(self.members):
            m.last_metrics = {**m.last_metrics, "objective_median": float(np.median(m.recent))}
            finals[m.trial.key] = self._result(i, sum(m.recent) / len(m.recent), None)
        self.report_fn(progress, finals)
        self.members = []

    def _run_epochs(self) -> None:
        for _ in range(self.epochs, self.config.budget):
            for m in self.members:
                m.epoch_losses = []
            self.streams = [
                iter(task.train_batches(self.config.batch_size, generator))
                for task, generator in zip(self.tasks, self.generators, strict=True)
            ]
            while self.members:
                try:
                    batch = self._batch()
                except StopIteration:
                    break
                self.train_step(*batch)
                for m in self.members:
                    m.epoch_losses.append(m.interval_losses[-1])
            if not self.members:
                return
            self.epochs += 1
            last = self.epochs == self.config.budget
            if last:
                progress = self._all_metrics()
                finals = {
                    m.trial.key: self._result(
                        i,
                        sum(m.epoch_losses) / len(m.epoch_losses) if m.epoch_losses else None,
                        None,
                    )
                    for i, m in enumerate(self.members)
                }
                self.report_fn(progress, finals)
                self.members = []
                return
            progress = self._all_metrics()
            # epoch budgets: the schedule moves once per epoch (before the report's checkpoint,
            # so that the checkpoint holds it; the report's ``lr`` is the last step's)
            self._advance_schedule()
            self._send(progress)


def run_pack(
    trials: list[Trial],
    report: PackReport,
    checkpointing: Checkpointing | None = None,
    compile: bool = False,
) -> None:
    """Train the pack of ``trials`` (see the module docstring; ``compile``:
    :mod:`workers.compiled_unroll`); raises :class:`~workers.exceptions.TaskConfigError` for a
    pack that cannot run."""
    PackedRun(trials, report, checkpointing, compile).run()
