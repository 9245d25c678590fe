"""The optimizer registry: one entry per name a study may use, built through one function.

``build_optimizer(name, params, eta, radius=None, **options)`` returns a ready
``torch.optim.Optimizer`` whose single knob ``eta`` means:

- ``max_lr`` (the maximal learning rate) for ``alig``, ``aalig`` and ``sps``; ``alig`` also takes
  ``eta=None``, which is ALI-G∞;
- the *fraction* α for ``l4mom`` / ``l4adam``;
- the learning rate for the ``torch.optim`` baselines and the TensorFlow-1 variants
  ``rmsprop-tf`` / ``adagrad-tf`` (:mod:`optim.tf_rmsprop`, :mod:`optim.tf_adagrad`), which
  reproduce the update rules the ALI-G paper's DNC heatmap ran.

Each :class:`OptimizerInfo` says how the optimizer must be stepped (``closure``: ``"none"``,
``"loss"`` or ``"per-sample"``), whether it handles the l2-ball ``radius`` itself, and which
options it accepts with their defaults. Every other optimizer gets the same joint projection
applied after each of its steps (and once at construction) when a radius is given, so the radius
is a fair axis for all of them.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from optim import validation
from optim.aalig import AALIG
from optim.alig import AliG
from optim.closure import ClosureKind
from optim.exceptions import InvalidHyperparameterError, UnknownOptimizerError
from optim.l4 import L4
from optim.projection import project_onto_ball
from optim.sps import SPS
from optim.tf_adagrad import TFAdagrad
from optim.tf_rmsprop import TFRMSprop

Check = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Option:
    """One accepted option: its default and the check that validates (and normalises) it."""

    default: Any
    check: Check
    help: str


@dataclass(frozen=True)
class OptimizerInfo:
    """How to build and step one registered optimizer. What a study may say about it (its
    description, what η means, its options as a schema) is the torch-free catalog's,
    ``studies.catalog.optimizers``, under the same name; a test keeps the two in step."""

    name: str
    closure: ClosureKind
    factory: Callable[..., torch.optim.Optimizer] = field(repr=False)
    options: Mapping[str, Option] = field(default_factory=dict)
    native_radius: bool = False
    eta_may_be_none: bool = False  # only ALI-G: eta=None is ALI-G∞
    reports_step_size: bool = False  # exposes last_step_size / last_step_capped after a step
    required_options: tuple[str, ...] = ()

    def defaults(self) -> dict[str, Any]:
        """The option defaults, e.g. for ``GET /optimizers``."""
        return {key: option.default for key, option in self.options.items()}


def _required(name: str, value: Any) -> Any:
    if value is None:
        raise InvalidHyperparameterError(f"option {name!r} is required")
    return validation.positive_int(name, value)


def _betas(name: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise InvalidHyperparameterError(f"{name} must be a pair (beta1, beta2), got {value!r}")
    return (
        validation.unit_interval(f"{name}[0]", value[0]),
        validation.unit_interval(f"{name}[1]", value[1]),
    )


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidHyperparameterError(f"{name} must be true or false, got {value!r}")
    return value


_MOMENTUM = Option(0.0, validation.unit_interval, "momentum coefficient in [0, 1)")
_NESTEROV_MOMENTUM = Option(0.9, validation.unit_interval, "Nesterov momentum coefficient")
_WEIGHT_DECAY = Option(0.0, validation.non_negative, "l2 weight decay λ >= 0")
_ADAM = {
    "betas": Option((0.9, 0.999), _betas, "Adam's (beta1, beta2)"),
    "eps": Option(1e-8, validation.positive, "term added to the denominator"),
    "weight_decay": _WEIGHT_DECAY,
}


def _torch_sgd(params: Iterable[Any], eta: float, **options: Any) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=eta, **options)


def _torch_sgd_nesterov(
    params: Iterable[Any], eta: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    if momentum <= 0:
        raise InvalidHyperparameterError("momentum must be > 0 for sgd-nesterov, got 0")
    return torch.optim.SGD(
        params, lr=eta, momentum=momentum, nesterov=True, weight_decay=weight_decay
    )


def _torch_amsgrad(params: Iterable[Any], eta: float, **options: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=eta, amsgrad=True, **options)


def _l4(direction: str) -> Callable[..., torch.optim.Optimizer]:
    def build(params: Iterable[Any], eta: float, **options: Any) -> torch.optim.Optimizer:
        return L4(params, fraction=eta, direction=direction, **options)

    return build


_ENTRIES = [
    OptimizerInfo(
        "alig",
        "loss",
        lambda params, eta, radius=None, **o: AliG(params, max_lr=eta, radius=radius, **o),
        {"momentum": _MOMENTUM, "eps": Option(1e-5, validation.non_negative, "δ in L/(‖g‖²+δ)")},
        native_radius=True,
        eta_may_be_none=True,
        reports_step_size=True,
    ),
    OptimizerInfo(
        "aalig",
        "per-sample",
        lambda params, eta, **o: AALIG(params, max_lr=eta, **o),
        {
            "n_samples": Option(None, _required, "number of training samples (set by the task)"),
            "epochs": Option(None, _required, "training budget in epochs (set by the trainer)"),
            "momentum": _NESTEROV_MOMENTUM,
            "weight_decay": _WEIGHT_DECAY,
            "sections": Option(10, validation.positive_int, "number K of AOV update sections"),
            "lower_bound": Option(0.0, validation.finite, "loss lower bound B"),
            "eps": Option(1e-9, validation.non_negative, "δ in the step denominator"),
        },
        reports_step_size=True,
        required_options=("n_samples", "epochs"),
    ),
    OptimizerInfo(
        "sgd",
        "none",
        _torch_sgd,
        {"momentum": _MOMENTUM, "weight_decay": _WEIGHT_DECAY},
    ),
    OptimizerInfo(
        "sgd-nesterov",
        "none",
        _torch_sgd_nesterov,
        {"momentum": _NESTEROV_MOMENTUM, "weight_decay": _WEIGHT_DECAY},
    ),
    OptimizerInfo(
        "adam",
        "none",
        lambda params, eta, **o: torch.optim.Adam(params, lr=eta, **o),
        _ADAM,
    ),
    OptimizerInfo(
        "adamw",
        "none",
        lambda params, eta, **o: torch.optim.AdamW(params, lr=eta, **o),
        {**_ADAM, "weight_decay": Option(1e-2, validation.non_negative, "decoupled decay")},
    ),
    OptimizerInfo(
        "amsgrad",
        "none",
        _torch_amsgrad,
        _ADAM,
    ),
    OptimizerInfo(
        "adagrad",
        "none",
        lambda params, eta, **o: torch.optim.Adagrad(params, lr=eta, **o),
        {"weight_decay": _WEIGHT_DECAY, "eps": Option(1e-10, validation.positive, "eps")},
    ),
    OptimizerInfo(
        "adagrad-tf",
        "none",
        lambda params, eta, **o: TFAdagrad(params, lr=eta, **o),
        {
            "initial_accumulator": Option(
                0.1, validation.positive, "the accumulator's initial value (TF1: 0.1)"
            ),
        },
    ),
    OptimizerInfo(
        "rmsprop",
        "none",
        lambda params, eta, **o: torch.optim.RMSprop(params, lr=eta, **o),
        {
            "alpha": Option(0.99, validation.unit_interval, "smoothing constant"),
            "momentum": _MOMENTUM,
            "weight_decay": _WEIGHT_DECAY,
            "eps": Option(1e-8, validation.positive, "eps"),
            "centered": Option(False, _boolean, "centered RMSProp"),
        },
    ),
    OptimizerInfo(
        "rmsprop-tf",
        "none",
        lambda params, eta, **o: TFRMSprop(params, lr=eta, **o),
        {
            "decay": Option(0.9, validation.unit_interval, "discount of the mean square"),
            "momentum": _MOMENTUM,
            "eps": Option(1e-10, validation.positive, "ε inside the square root"),
            "initial_accumulator": Option(
                1.0, validation.non_negative, "the mean square's initial value (TF1: 1)"
            ),
        },
    ),
    OptimizerInfo(
        "sps",
        "loss",
        lambda params, eta, **o: SPS(params, max_lr=eta, **o),
        {
            "c": Option(0.5, validation.positive, "constant c in L/(c‖g‖²)"),
            "eps": Option(1e-8, validation.non_negative, "term added to the denominator"),
        },
        reports_step_size=True,
    ),
    OptimizerInfo(
        "l4mom",
        "loss",
        _l4("momentum"),
        {},
        reports_step_size=True,
    ),
    OptimizerInfo(
        "l4adam",
        "loss",
        _l4("adam"),
        {},
        reports_step_size=True,
    ),
]

OPTIMIZERS: Mapping[str, OptimizerInfo] = {entry.name: entry for entry in _ENTRIES}


def optimizer_info(name: str) -> OptimizerInfo:
    """The registry entry for ``name``; ``UnknownOptimizerError`` lists the valid names."""
    try:
        return OPTIMIZERS[name]
    except (KeyError, TypeError):
        valid = ", ".join(OPTIMIZERS)
        raise UnknownOptimizerError(f"unknown optimizer {name!r}; valid names: {valid}") from None


def validate_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``options`` against the entry of ``name``; return them normalised with defaults."""
    info = optimizer_info(name)
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        accepted = ", ".join(info.options) or "none"
        raise InvalidHyperparameterError(
            f"{name} does not accept option(s) {', '.join(unknown)}; accepted: {accepted}"
        )
    resolved: dict[str, Any] = {}
    for key, option in info.options.items():
        value = options.get(key, option.default)
        if value is None and key not in info.required_options:
            continue
        resolved[key] = option.check(key, value)
    return resolved


def validate_eta(name: str, eta: Any) -> float | None:
    """``eta`` checked for ``name``: finite and > 0, or ``None`` where the optimizer allows it."""
    info = optimizer_info(name)
    if eta is None:
        if info.eta_may_be_none:
            return None
        raise InvalidHyperparameterError(f"eta must be a number for {name} (only alig takes null)")
    return validation.positive("eta", eta)


def build_optimizer(
    name: str,
    params: Iterable[Any],
    eta: float | None,
    radius: float | None = None,
    **options: Any,
) -> torch.optim.Optimizer:
    """Build the optimizer ``name`` over ``params`` with knob ``eta`` (see the module docstring).

    ``radius`` constrains all parameters jointly to an l2 ball: natively for ALI-G, by a
    projection after each step for the others. Raises ``ValueError`` subclasses naming the field.
    """
    info = optimizer_info(name)
    eta = validate_eta(name, eta)
    radius = validation.optional_positive("radius", radius)
    resolved = validate_options(name, options)
    params = list(params)
    try:
        if info.native_radius:
            optimizer = info.factory(params, eta, radius=radius, **resolved)
        else:
            optimizer = info.factory(params, eta, **resolved)
    except InvalidHyperparameterError:
        raise
    except ValueError as error:  # torch.optim's own checks: keep their wording, name the optimizer
        raise InvalidHyperparameterError(f"{name}: {error}") from error
    if radius is not None and not info.native_radius:
        _attach_projection(optimizer, radius)
    return optimizer


def _attach_projection(optimizer: torch.optim.Optimizer, radius: float) -> None:
    """Project all of ``optimizer``'s parameters onto the ball now and after each of its steps."""

    def project(opt: torch.optim.Optimizer, *_: Any) -> None:
        project_onto_ball([p for g in opt.param_groups for p in g["params"]], radius)

    project(optimizer)
    optimizer.register_step_post_hook(project)
