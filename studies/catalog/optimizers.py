"""The optimizer catalog: every optimizer a study may name, what η means for it, how it steps
and which options it takes — importable without torch.

The catalog is the contract between a study spec (validated here, in ``studies``) and the torch
implementations in ``optim`` (``optim.registry`` builds them by the same names), exactly as
:mod:`studies.catalog.tasks` is for the tasks in ``workers.tasks``. A test in
``tests/workers/test_catalog_consistency.py`` checks that both sides list the same names, closure
kinds, options and defaults.

Options are pydantic models with ``extra="forbid"``: an option an optimizer does not accept is
an error naming it, and ``GET /optimizers`` shows each model's JSON schema. Options in
``set_by_trial`` (AALIG's data size and epoch budget) are decided by the trainer from the task
and the budget, never by the study. The math of each optimizer is in docs/algorithms.md.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from studies.exceptions import SpecError

ClosureKind = Literal["none", "loss", "per-sample"]  # what ``step`` needs (optim.closure)
EtaMeaning = Literal["max_lr", "fraction", "lr"]

# strict: a string or a boolean is not a number here (as in optim's own checks)
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
UnitInterval = Annotated[Number, Field(ge=0, lt=1)]
Positive = Annotated[Number, Field(gt=0)]
NonNegative = Annotated[Number, Field(ge=0)]


class OptimizerOptions(BaseModel):
    """Base of every optimizer's options: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoOptions(OptimizerOptions):
    """An optimizer without options (L4's are the paper's constants)."""


class AligOptions(OptimizerOptions):
    momentum: UnitInterval = Field(0.0, description="Nesterov momentum coefficient in [0, 1)")
    eps: NonNegative = Field(1e-5, description="δ in L / (‖g‖² + δ)")


class AaligOptions(OptimizerOptions):
    momentum: UnitInterval = Field(0.9, description="Nesterov momentum coefficient")
    weight_decay: NonNegative = Field(0.0, description="l2 weight decay λ >= 0")
    sections: Annotated[int, Field(strict=True, ge=1)] = Field(
        10, description="number K of AOV sections"
    )
    lower_bound: Number = Field(0.0, description="loss lower bound B (default: the task's)")
    eps: NonNegative = Field(
        1e-9, description="δ in the step denominator (1e-9, as in the authors' code)"
    )


class SgdOptions(OptimizerOptions):
    momentum: UnitInterval = Field(0.0, description="momentum coefficient in [0, 1)")
    weight_decay: NonNegative = Field(0.0, description="l2 weight decay λ >= 0")


class SgdNesterovOptions(OptimizerOptions):
    momentum: Annotated[Number, Field(gt=0, lt=1)] = Field(
        0.9, description="Nesterov momentum coefficient in (0, 1)"
    )
    weight_decay: NonNegative = Field(0.0, description="l2 weight decay λ >= 0")


class AdamOptions(OptimizerOptions):
    betas: tuple[UnitInterval, UnitInterval] = Field((0.9, 0.999), description="(β1, β2)")
    eps: Positive = Field(1e-8, description="term added to the denominator")
    weight_decay: NonNegative = Field(0.0, description="l2 weight decay λ >= 0")


class AdamwOptions(AdamOptions):
    weight_decay: NonNegative = Field(1e-2, description="decoupled weight decay")


class AdagradOptions(OptimizerOptions):
    weight_decay: NonNegative = Field(0.0, description="l2 weight decay λ >= 0")
    eps: Positive = Field(1e-10, description="term added to the denominator")


class AdagradTfOptions(OptimizerOptions):
    initial_accumulator: Positive = Field(
        0.1, description="the accumulator's initial value (TF1: 0.1)"
    )


class RmspropOptions(OptimizerOptions):
    alpha: UnitInterval = Field(0.99, description="smoothing constant")
    momentum: UnitInterval = Field(0.0, description="momentum coefficient in [0, 1)")
    weight_decay: NonNegative = Field(0.0, description="l2 weight decay λ >= 0")
    eps: Positive = Field(1e-8, description="term added to the denominator")
    centered: Annotated[bool, Field(strict=True)] = Field(False, description="centered RMSProp")


class RmspropTfOptions(OptimizerOptions):
    decay: UnitInterval = Field(0.9, description="discount of the mean square")
    momentum: UnitInterval = Field(0.0, description="momentum coefficient in [0, 1)")
    eps: Positive = Field(1e-10, description="ε inside the square root")
    initial_accumulator: NonNegative = Field(
        1.0, description="the mean square's initial value (TF1: 1)"
    )


class SpsOptions(OptimizerOptions):
    c: Positive = Field(0.5, description="constant c in L / (c‖g‖²)")
    eps: NonNegative = Field(1e-8, description="term added to the denominator")


@dataclass(frozen=True)
class OptimizerInfo:
    """A catalog entry: what a study needs to know about an optimizer without building it."""

    name: str
    description: str
    eta_meaning: EtaMeaning
    closure: ClosureKind
    options: type[OptimizerOptions]
    native_radius: bool = False  # handles the l2 ball itself (others are projected after a step)
    eta_may_be_none: bool = False  # only ALI-G: eta = null is ALI-G∞
    reports_step_size: bool = False  # exposes last_step_size / last_step_capped after a step
    set_by_trial: tuple[str, ...] = ()  # options the trainer decides (AALIG's data and budget)
    # whether its trials can train in packs (optim.packed has its packed form; docs/architecture.md)
    packs: bool = True

    @property
    def takes_weight_decay(self) -> bool:
        """Whether the grid's weight-decay axis applies to this optimizer."""
        return "weight_decay" in self.options.model_fields

    def defaults(self) -> dict[str, Any]:
        """Every option's default (``GET /optimizers``)."""
        return self.options().model_dump(mode="json")


OPTIMIZERS: Mapping[str, OptimizerInfo] = {
    info.name: info
    for info in [
        OptimizerInfo(
            "alig",
            "ALI-G (Berrada et al. 2020); eta = maximal learning rate, null = ALI-G∞",
            "max_lr",
            "loss",
            AligOptions,
            native_radius=True,
            eta_may_be_none=True,
            reports_step_size=True,
        ),
        OptimizerInfo(
            "aalig",
            "Adaptive ALI-G with per-sample approximate optimal values; eta = maximal learning "
            "rate",
            "max_lr",
            "per-sample",
            AaligOptions,
            reports_step_size=True,
            set_by_trial=("n_samples", "epochs"),
            packs=False,  # per-sample AOVs and end-of-epoch updates: no packed form yet
        ),
        OptimizerInfo(
            "sgd", "SGD (torch.optim.SGD); eta = learning rate", "lr", "none", SgdOptions
        ),
        OptimizerInfo(
            "sgd-nesterov",
            "SGD with Nesterov momentum 0.9 (torch.optim.SGD); eta = learning rate",
            "lr",
            "none",
            SgdNesterovOptions,
        ),
        OptimizerInfo(
            "adam", "Adam (torch.optim.Adam); eta = learning rate", "lr", "none", AdamOptions
        ),
        OptimizerInfo(
            "adamw", "AdamW (torch.optim.AdamW); eta = learning rate", "lr", "none", AdamwOptions
        ),
        OptimizerInfo(
            "amsgrad",
            "AMSGrad (torch.optim.Adam, amsgrad=True); eta = learning rate",
            "lr",
            "none",
            AdamOptions,
        ),
        OptimizerInfo(
            "adagrad",
            "Adagrad (torch.optim.Adagrad); eta = learning rate",
            "lr",
            "none",
            AdagradOptions,
        ),
        OptimizerInfo(
            "adagrad-tf",
            "Adagrad as TensorFlow 1 (accumulator starts at 0.1, no eps), as the ALI-G paper's "
            "DNC runs; eta = learning rate",
            "lr",
            "none",
            AdagradTfOptions,
        ),
        OptimizerInfo(
            "rmsprop",
            "RMSProp (torch.optim.RMSprop); eta = learning rate",
            "lr",
            "none",
            RmspropOptions,
        ),
        OptimizerInfo(
            "rmsprop-tf",
            "RMSProp as TensorFlow 1 (decay 0.9, mean square starts at 1, eps 1e-10 inside the "
            "square root), as the ALI-G paper's DNC runs; eta = learning rate",
            "lr",
            "none",
            RmspropTfOptions,
        ),
        OptimizerInfo(
            "sps",
            "SPS_max (Loizou et al. 2021), c = 0.5; eta = maximal learning rate",
            "max_lr",
            "loss",
            SpsOptions,
            reports_step_size=True,
        ),
        OptimizerInfo(
            "l4mom",
            "L4 with a momentum direction (Rolinek & Martius 2018); eta = fraction α",
            "fraction",
            "loss",
            NoOptions,
            reports_step_size=True,
        ),
        OptimizerInfo(
            "l4adam",
            "L4 with an Adam direction (Rolinek & Martius 2018); eta = fraction α",
            "fraction",
            "loss",
            NoOptions,
            reports_step_size=True,
        ),
    ]
}

# Optimizers whose step size is adaptive by construction: the DNC paper setting clips the
# gradient norm of every other optimizer at 50 but not theirs (ALI-G paper, §5.1; the authors'
# lberrada/dnc train.py exempts exactly alig, l4mom and l4adam; aalig cannot run on DNC; sps,
# absent from the paper's DNC runs, is clipped).
POLYAK_OPTIMIZERS = ("alig", "aalig", "l4mom", "l4adam")


def optimizer_info(name: str) -> OptimizerInfo:
    """The catalog entry of ``name``; SpecError lists the valid names."""
    info = OPTIMIZERS.get(name) if isinstance(name, str) else None
    if info is None:
        raise SpecError(f"unknown optimizer {name!r}; valid names: {', '.join(OPTIMIZERS)}")
    return info


def validate_options(
    name: str, options: Mapping[str, Any], field: str = "options"
) -> dict[str, Any]:
    """``options`` checked against the entry of ``name``, with its defaults filled in.

    Raises SpecError naming the option under ``field`` (``options.momentum: …``), or listing
    the accepted options for an unknown one (``options: sgd does not accept …``).
    """
    info = optimizer_info(name)
    fields = info.options.model_fields
    unknown = sorted(set(options) - set(fields))
    if unknown:
        accepted = ", ".join(fields) or "none"
        raise SpecError(
            f"{field}: {name} does not accept option(s) {', '.join(unknown)}; accepted: {accepted}"
        )
    try:
        return info.options.model_validate(dict(options)).model_dump()
    except ValidationError as error:
        parts = []
        for item in error.errors():
            location = ".".join(str(piece) for piece in item["loc"])
            parts.append(f"{field}.{location}: {item['msg']}")
        raise SpecError("; ".join(parts)) from None
