"""The torch-free optimizer catalog (``studies.catalog.optimizers``) and the torch registry
(``optim.registry``) describe the same optimizers: names, how they step, options, defaults."""

import pytest

from optim.registry import OPTIMIZERS as REGISTRY
from studies.catalog.optimizers import OPTIMIZERS as CATALOG
from studies.catalog.optimizers import validate_options
from studies.exceptions import SpecError


def test_the_same_names_in_the_same_order():
    assert list(CATALOG) == list(REGISTRY)


@pytest.mark.parametrize("name", list(CATALOG))
def test_each_entry_steps_and_is_configured_the_same_way(name):
    entry, built = CATALOG[name], REGISTRY[name]
    assert entry.closure == built.closure
    assert entry.native_radius == built.native_radius
    assert entry.eta_may_be_none == built.eta_may_be_none
    assert entry.reports_step_size == built.reports_step_size
    assert set(entry.set_by_trial) == set(built.required_options)
    torch_defaults = {k: v for k, v in built.defaults().items() if k not in built.required_options}
    catalog_defaults = entry.options().model_dump()
    assert catalog_defaults == torch_defaults


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("sgd", {"momentum": 1.0}),
        ("sgd-nesterov", {"momentum": 0.0}),
        ("adam", {"betas": (0.9, 1.5)}),
        ("adagrad", {"eps": 0.0}),
        ("aalig", {"sections": 0}),
        ("alig", {"eps": float("nan")}),
        ("rmsprop", {"centered": "yes"}),
    ],
)
def test_what_the_catalog_refuses_the_torch_registry_refuses_too(name, options):
    import torch

    from optim.exceptions import InvalidHyperparameterError
    from optim.registry import build_optimizer

    with pytest.raises(SpecError, match=next(iter(options))):
        validate_options(name, options)
    required = {"n_samples": 10, "epochs": 1} if name == "aalig" else {}
    with pytest.raises(InvalidHyperparameterError):
        build_optimizer(name, [torch.nn.Parameter(torch.ones(2))], 0.1, **required, **options)


def test_unknown_options_list_the_accepted_ones():
    with pytest.raises(
        SpecError, match=r"^options: sgd does not accept option\(s\) betas; accepted: mom"
    ):
        validate_options("sgd", {"betas": (0.9, 0.9)})


@pytest.mark.parametrize("name", list(CATALOG))
def test_the_catalog_says_which_optimizers_pack(name):
    from optim.packed import packed_form

    assert CATALOG[name].packs == (packed_form(name, {}) is not None)


def test_the_catalog_says_which_tasks_pack():
    from studies.catalog.tasks import TASKS
    from workers.tasks.registry import TASK_TYPES

    assert {n: s.packs for n, s in TASKS.items()} == {n: t.packable for n, t in TASK_TYPES.items()}


def test_the_catalog_says_which_tasks_compile():
    from studies.catalog.tasks import TASKS
    from workers.tasks.base import RecurrentTask
    from workers.tasks.registry import TASK_TYPES

    recurrent = {n: issubclass(t, RecurrentTask) for n, t in TASK_TYPES.items()}
    assert {n: s.compiles for n, s in TASKS.items()} == recurrent
    assert recurrent["dnc-copy"]
