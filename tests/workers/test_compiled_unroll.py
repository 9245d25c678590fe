"""``execution.compile``: a recurrent task's pack runs each time step as one compiled function
(:mod:`workers.compiled_unroll`), and its members still follow their trials alone.

The references are the trials alone (uncompiled, one model each) at the tolerances of the
uncompiled packs: 1e-10 in float64 over 50 DNC steps, 1e-5 in float32 over 20. Each test also
checks that the step really was compiled (dynamo's graph counter moves), so that a silent
fall-back to the uncompiled pack cannot pass for the compiled one. (The counter is the
process's: a graph an earlier test compiled, say a dynamic one, could serve a later test
without moving it; that would fail the test, not pass it.)
"""

import logging

import pytest
import torch
import torch._inductor.exc
from torch._dynamo.utils import counters

import workers.compiled_unroll as compiled_unroll_module
from studies.exceptions import SpecError
from studies.spec import parse_spec
from tests.workers.test_packed_trainer import (
    MEMBERS,
    TASKS,
    _assert_params_close,
    _compare,
    _packed,
    _trial,
)
from workers.compiled_unroll import CompiledUnroll, compiler_missing

needs_compiler = pytest.mark.skipif(
    compiler_missing(torch.device("cpu")) is not None, reason="no C++ compiler for inductor"
)
needs_cuda_compiler = pytest.mark.skipif(
    not torch.cuda.is_available() or compiler_missing(torch.device("cuda")) is not None,
    reason="needs a CUDA GPU and Triton",
)


def _dnc_trials(budget: int, members=MEMBERS, **extra):
    options, _, batch = TASKS["dnc-copy"]
    return [_trial("dnc-copy", options, budget, batch, m, **extra) for m in members]


def _graphs() -> int:
    return counters["stats"]["unique_graphs"]


@needs_compiler
def test_compiled_members_follow_their_trials_in_float64(float64):
    before = _graphs()
    run = _compare(_dnc_trials(50), 1e-10, compile=True)  # two seeds: a stacked batch
    assert isinstance(run.unroll, CompiledUnroll)
    assert _graphs() > before


@needs_compiler
def test_compiled_members_follow_their_trials_in_float32():
    before = _graphs()
    run = _compare(_dnc_trials(20), 1e-5, compile=True)
    assert isinstance(run.unroll, CompiledUnroll)
    assert _graphs() > before


@needs_compiler
def test_a_compiled_pack_that_loses_a_member_goes_on(float64):
    # a member whose divergence bound lies just above its first loss leaves at its first rise;
    # the smaller pack is compiled again and the others still follow the uncompiled pack's
    # members (which follow their trials alone: test_packed_trainer)
    members = [*MEMBERS[:3], ("sgd", 1e4, {}, None, 0)]
    trials = _dnc_trials(50, members[:3]) + _dnc_trials(50, members[3:], divergence_factor=1.01)
    before = _graphs()
    params, finals, _, run = _packed(trials, compile=True)
    assert isinstance(run.unroll, CompiledUnroll)
    assert _graphs() > before
    blowup = trials[-1]
    assert finals[blowup.key].status == "diverged"
    assert 0 < finals[blowup.key].steps < 50
    eager, finals_eager, _, _ = _packed(trials)
    assert finals_eager[blowup.key].steps == finals[blowup.key].steps
    for trial in trials[:3]:
        assert finals[trial.key].status == "completed"
        assert finals[trial.key].final_objective == pytest.approx(
            finals_eager[trial.key].final_objective, rel=1e-10
        )
        _assert_params_close(params[trial.key], eager[trial.key], 1e-10, trial.key)


def test_a_step_that_fails_to_compile_leaves_the_pack_uncompiled(monkeypatch, caplog, float64):
    """A worker whose compiler is there but fails (say, without Python's headers): the pack
    goes on uncompiled from the step that failed, and its members still follow the
    uncompiled pack's. The step runs vmapped but uncompiled for its first two calls (the
    first two time steps of the first pack step), then fails as inductor would."""
    calls = []

    def failing_compile(step, fullgraph):
        def run(*args):
            calls.append(1)
            if len(calls) > 2:
                error = RuntimeError("g++: fatal error: Python.h: No such file or directory")
                raise torch._inductor.exc.InductorError(error, None)
            return step(*args)

        return run

    monkeypatch.setattr(compiled_unroll_module, "compiler_missing", lambda device: None)
    monkeypatch.setattr(compiled_unroll_module, "_STEPS", {})
    monkeypatch.setattr(compiled_unroll_module.torch, "compile", failing_compile)
    trials = _dnc_trials(3, MEMBERS[:2])
    with caplog.at_level(logging.WARNING, logger="workers.packed_trainer"):
        params, finals, _, run = _packed(trials, compile=True)
    assert len(calls) == 3 and run.unroll is None
    assert "the step did not compile (InductorError" in caplog.text
    assert "Python.h" in caplog.text and "this pack of 2 runs uncompiled" in caplog.text
    monkeypatch.undo()
    eager, _, _, _ = _packed(trials)
    for trial in trials:
        assert finals[trial.key].status == "completed"
        _assert_params_close(params[trial.key], eager[trial.key], 1e-10, trial.key)


def test_packs_share_a_compiled_step_when_their_models_agree():
    from studies.catalog.tasks import DncCopyOptions
    from workers.compiled_unroll import step_key
    from workers.tasks.registry import build_task

    def task(**options):
        return build_task("dnc-copy", DncCopyOptions(**options), seed=0, device=torch.device("cpu"))

    default = task()
    assert set(default.model_fields) <= set(DncCopyOptions.model_fields)
    data_only = task(
        min_length=2, max_length=3, min_repeats=2, max_repeats=3, grad_clip=None,
        objective_window=7, heldout_batches=2, no_clip_for=(),
    )  # fmt: skip
    assert step_key(data_only) == step_key(default)
    torch.manual_seed(0)
    a = default.build_model()
    torch.manual_seed(0)
    b = data_only.build_model()
    assert (a.clip_value, a.access.key_strength) == (b.clip_value, b.access.key_strength)
    for (name, p), (other, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert name == other and torch.equal(p, q)
    changed = {
        "bits": 5, "memory_slots": 8, "word_size": 8, "read_heads": 2, "controller_size": 32,
        "clip_value": 10.0, "key_strength": "oneplus",
    }  # fmt: skip
    assert set(changed) == set(default.model_fields)
    for name, value in changed.items():
        assert step_key(task(**{name: value})) != step_key(default), name


def test_a_worker_that_cannot_compile_runs_the_pack_uncompiled(monkeypatch, caplog, float64):
    monkeypatch.setattr(
        compiled_unroll_module, "compiler_missing", lambda device: "no C++ compiler (test)"
    )
    trials = _dnc_trials(3, MEMBERS[:2])
    with caplog.at_level(logging.WARNING, logger="workers.compiled_unroll"):
        params, finals, _, run = _packed(trials, compile=True)
    assert run.unroll is None
    assert "no C++ compiler (test); this pack runs uncompiled" in caplog.text
    eager, finals_eager, _, _ = _packed(trials)
    for trial in trials:  # exactly the uncompiled pack
        assert finals[trial.key].final_objective == finals_eager[trial.key].final_objective
        for got, want in zip(params[trial.key], eager[trial.key], strict=True):
            assert torch.equal(got, want)


def test_compile_leaves_a_task_without_a_recurrent_model_as_it_is(float64):
    options, _, batch = TASKS["matrix-factorisation"]
    trials = [_trial("matrix-factorisation", options, 1, batch, m) for m in MEMBERS[:3]]
    _, finals, _, run = _packed(trials, compile=True)
    assert run.unroll is None
    _, finals_eager, _, _ = _packed(trials)
    for trial in trials:
        assert finals[trial.key].final_objective == finals_eager[trial.key].final_objective


@needs_cuda_compiler
def test_compiled_members_follow_their_trials_on_cuda():
    before = _graphs()
    run = _compare(_dnc_trials(20, device="cuda"), 1e-5, compile=True)
    assert isinstance(run.unroll, CompiledUnroll) and run.device.type == "cuda"
    assert _graphs() > before


def _spec(execution):
    return {
        "task": "dnc-copy", "optimizers": ["alig"], "grid": {"eta": [0.1]},
        "budget": {"steps": 10}, "execution": execution,
    }  # fmt: skip


def test_the_spec_says_whether_packs_compile():
    assert parse_spec(_spec({})).execution.compile is False
    assert parse_spec(_spec({"compile": True})).execution.compile is True
    with pytest.raises(SpecError, match=r"execution\.compile"):
        parse_spec(_spec({"compile": "often"}))


def test_the_driver_hands_the_choice_to_the_packs(monkeypatch):
    """``execution.compile`` travels from the spec through the driver's trainable parameters
    and ``train`` to the pack."""
    import workers.trainable as trainable
    from studies.settings import Settings
    from workers.run import StudyDriver

    spec = parse_spec(_spec({"compile": True}))
    parameters = StudyDriver(None, "study", Settings())._train_parameters(spec, {})  # type: ignore[arg-type]
    assert parameters["compile"] is True
    assert (
        StudyDriver(None, "study", Settings())._train_parameters(  # type: ignore[arg-type]
            parse_spec(_spec({})), {}
        )["compile"]
        is False
    )

    built = []

    class Recorder:
        def __init__(self, trials, report, checkpointing, compile):
            built.append((len(trials), compile))

        def run(self):
            pass

    monkeypatch.setattr(trainable, "PackedRun", Recorder)
    trials = _dnc_trials(3, MEMBERS[:2])
    trainable.train({"trial": [t.to_json() for t in trials]}, **parameters)
    assert built == [(2, True)]
