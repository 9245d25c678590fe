"""``execution.compile``: a recurrent task's pack runs each time step as one compiled function
(:mod:`workers.compiled_unroll`), and its members still follow their trials alone.

The references are the trials alone (uncompiled, one model each) at the tolerances of the
uncompiled packs: 1e-10 in float64 over 50 DNC steps, 1e-5 in float32 over 20. Each test also
checks that the step really was compiled (dynamo's graph counter moves), so that a silent
fall-back to the uncompiled pack cannot pass for the compiled one.
"""

import logging

import pytest
import torch
from torch._dynamo.utils import counters

import workers.compiled_unroll as compiled_unroll_module
from studies.exceptions import SpecError
from studies.spec import parse_spec
from tests.workers.test_packed_trainer import MEMBERS, TASKS, _compare, _packed, _trial
from workers.compiled_unroll import CompiledUnroll, compiler_missing

needs_compiler = pytest.mark.skipif(
    compiler_missing(torch.device("cpu")) is not None, reason="no C++ compiler for inductor"
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
    # the smaller pack compiles once more and the others still follow their trials
    members = [*MEMBERS[:3], ("sgd", 1e4, {}, None, 0)]
    trials = _dnc_trials(50, members[:3]) + _dnc_trials(50, members[3:], divergence_factor=1.01)
    _, finals, _, _ = _packed(trials, compile=True)
    blowup = trials[-1]
    assert finals[blowup.key].status == "diverged"
    assert 0 < finals[blowup.key].steps < 50
    _, finals_eager, _, _ = _packed(trials)
    assert finals_eager[blowup.key].steps == finals[blowup.key].steps
    for trial in trials[:3]:
        assert finals[trial.key].status == "completed"
        assert finals[trial.key].final_objective == pytest.approx(
            finals_eager[trial.key].final_objective, rel=1e-10
        )


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_members_follow_their_trials_on_cuda():
    run = _compare(_dnc_trials(20, device="cuda"), 1e-5, compile=True)
    assert isinstance(run.unroll, CompiledUnroll) and run.device.type == "cuda"


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
