"""A pack of a recurrent task unrolled over time through one compiled time step
(``execution.compile``; docs/architecture.md, "Compiled packs").

A pack's forward is ``vmap(functional_call(model))`` over its members
(:mod:`workers.packed_trainer`): for the DNC, a Python unroll of about a hundred small
operations per time step, each reading and writing the members' whole ``[K, B, N, N]`` link or
``[K, B, N, W]`` memory tensors, and a backward of about twice as many. For a
:class:`~workers.tasks.base.RecurrentTask` this module unrolls the sequence itself and runs each
time step as one ``torch.compile``-d function

    step(params, buffers, x_t, state) = vmap(functional_call(model.step))(…)

so that inductor fuses the step's pointwise chains, forward and backward, into a few loops.
The outputs are stacked over time and the task's ``loss_from_outputs`` gives the members'
per-sample losses ``[K, B]``, as the uncompiled pack does.

- ``vmap`` sits inside the compiled function: torch cannot compile a function that runs under
  an enclosing ``vmap`` (pytorch/pytorch#128711).
- One graph serves every sequence length (the unroll is not compiled, the step is). A pack that
  loses members, or a second pack of another size in the same process, compiles once more with
  the member dimension dynamic (torch's automatic dynamic shapes); dynamo specialises a size
  of 1, so a pack down to one member compiles once more again. :data:`RECOMPILE_LIMIT` bounds
  the graphs per step.
- The numbers are those of the same operations, fused: the rounding differs from the
  uncompiled pack's in the last bits (tested against the trial alone to the tolerances of
  uncompiled packs: 1e-10 in float64 over 50 steps, 1e-5 in float32 over 20).
- :func:`compiler_missing` says why a worker cannot compile (inductor needs a C++ compiler for
  the CPU and Triton for CUDA); the pack then runs uncompiled. A compilation that fails anyway
  (a compiler without Python's headers, an inductor error) raises one of
  :data:`COMPILE_ERRORS`, and the pack goes on uncompiled from that step
  (:meth:`workers.packed_trainer.PackedRun.train_step`).
- Packs whose task options agree on the fields the model is built from
  (:attr:`~workers.tasks.base.RecurrentTask.model_fields`) share one compiled step.
"""

import json
import logging
import shutil
from collections.abc import Callable
from typing import Any

import torch
import torch._dynamo.exc
from torch import nn
from torch.func import functional_call, vmap
from torch.utils._pytree import tree_map

from workers.tasks.base import Batch, RecurrentTask, Task

log = logging.getLogger(__name__)


def compiler_missing(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot build code for ``device`` on this worker, or ``None``."""
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed"
    from torch._inductor.cpp_builder import get_cpp_compiler

    try:
        compiler = get_cpp_compiler()
    except (RuntimeError, OSError) as error:
        return f"no C++ compiler: {error}"
    return None if shutil.which(compiler) else f"no C++ compiler ({compiler} is not on the PATH)"


class _StepOf(nn.Module):
    """``forward(x_t, state) = model.step(x_t, state)``: one time step as a module, so that
    ``functional_call`` runs it with a member's parameters (named ``model.…`` as the pack's)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        return self.model.step(x, state)


#: dynamo's graphs per compiled step, raised from its default of 8: every dtype, member count
#: regime (fixed, then dynamic) and batch layout (one stream or several) of a task
#: configuration is a graph of its own, and past the limit dynamo would quietly run uncompiled
RECOMPILE_LIMIT = 64

#: what a compilation that fails raises: dynamo's errors (a backend's failure is wrapped in
#: ``BackendCompilerFailed``, inductor's ``InductorError`` among them) and its recompile limit
COMPILE_ERRORS: tuple[type[Exception], ...] = (
    torch._dynamo.exc.TorchDynamoException,
    torch._dynamo.exc.FailOnRecompileLimitHit,
)

Step = Callable[..., tuple[torch.Tensor, Any]]

# One compiled step per task configuration, shared by the process's packs of it: dynamo keys
# its graphs on the function and the module it runs, so a fresh pair per pack would compile
# every pack again.
_STEPS: dict[tuple[str, str], Step] = {}


def _compiled_step(key: tuple[str, str], model: nn.Module) -> Step:
    """The compiled, vmapped time step of the model of task configuration ``key``."""
    if key not in _STEPS:
        stepper = _StepOf(model)

        def step(
            params: dict, buffers: dict, x: torch.Tensor, state: Any, x_dim: int | None
        ) -> tuple[torch.Tensor, Any]:
            def one(p: dict, b: dict, xt: torch.Tensor, s: Any) -> tuple[torch.Tensor, Any]:
                return functional_call(stepper, (p, b), (xt, s))

            return vmap(one, in_dims=(0, 0, x_dim, 0), randomness="error")(
                params, buffers, x, state
            )

        _STEPS[key] = torch.compile(step, fullgraph=True)
    return _STEPS[key]


def step_key(task: RecurrentTask) -> str:
    """The task options the model is built from, as JSON: one compiled step per value."""
    options = task.options.model_dump(mode="json")
    return json.dumps({name: options[name] for name in task.model_fields}, sort_keys=True)


class CompiledUnroll:
    """The members' per-sample losses of a recurrent task's pack, one compiled step per time step.

    ``model`` is the pack's stateless copy of the model (on the meta device, as
    ``functional_call`` needs), ``template`` a real one (for the initial state's shapes).
    """

    def __init__(self, model: nn.Module, template: nn.Module, task: RecurrentTask) -> None:
        self.task = task
        self.template = template
        self._step = _compiled_step((task.name, step_key(task)), model)

    def losses(
        self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
        data: tuple[torch.Tensor, torch.Tensor, dict[str, Any]], member_dim: int | None,
    ) -> torch.Tensor:  # fmt: skip
        """Per-sample losses ``[K, B]`` of the ``K`` members of ``params`` on ``data``
        (inputs, targets, extras): one batch for all (``member_dim`` None) or one per member
        (``member_dim`` 0, each member's stream selected)."""
        inputs, targets, extras = data
        members = next(iter(params.values())).shape[0]
        batch_size, steps = inputs.shape[-3], inputs.shape[-2]
        zeros = self.template.initial_state(batch_size, inputs.device, inputs.dtype)
        # the state's leaves require a gradient at every step, the first one included: one
        # graph for all steps (the zeros' gradients are computed and dropped)
        state = tree_map(lambda z: z.expand(members, *z.shape).contiguous().requires_grad_(), zeros)
        outputs = []
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
            for t in range(steps):
                output, state = self._step(params, buffers, inputs[..., t, :], state, member_dim)
                outputs.append(output)
        stacked = torch.stack(outputs, dim=-2)
        return self.task.loss_from_outputs(stacked, Batch(inputs, targets, None, extras))


def compiled_unroll(
    task: Task, model: nn.Module, template: nn.Module, device: torch.device
) -> CompiledUnroll | None:
    """The compiled unroll of a pack of ``task``, or ``None`` where it does not apply (a task
    without a recurrent model) or cannot run (logged: why the worker cannot compile)."""
    if not isinstance(task, RecurrentTask):
        return None
    missing = compiler_missing(device)
    if missing is not None:
        log.warning("execution.compile: %s; this pack runs uncompiled", missing)
        return None
    return CompiledUnroll(model, template, task)
