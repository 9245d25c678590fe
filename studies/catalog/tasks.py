"""The task catalog: every task a study may name, its options, budget unit and metrics.

The catalog is the contract between a study spec (validated here, in ``studies``) and the task
implementations in ``workers.tasks``, which register one implementation per catalog name. Options
are pydantic models with ``extra="forbid"`` so an option a task does not accept is a 422 naming
the field, not silently ignored.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from studies.catalog.matrix_data import training_floors
from studies.catalog.optimizers import POLYAK_OPTIMIZERS

BudgetUnit = Literal["steps", "epochs"]
Direction = Literal["minimize", "maximize"]


class TaskOptions(BaseModel):
    """Base of every task's options: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DncCopyOptions(TaskOptions):
    """The DNC repeat-copy task of the ALI-G paper (DeepMind's reference configuration)."""

    bits: Annotated[int, Field(ge=1, le=64)] = 4  # pattern width
    min_length: Annotated[int, Field(ge=1)] = 1  # pattern length L ~ U{min_length..max_length}
    max_length: Annotated[int, Field(ge=1)] = 2
    min_repeats: Annotated[int, Field(ge=1)] = 1  # repeat count R ~ U{min_repeats..max_repeats}
    max_repeats: Annotated[int, Field(ge=1)] = 2
    memory_slots: Annotated[int, Field(ge=1)] = 16  # N memory rows
    word_size: Annotated[int, Field(ge=1)] = 16  # W memory columns
    read_heads: Annotated[int, Field(ge=1)] = 4
    controller_size: Annotated[int, Field(ge=1)] = 64  # LSTM hidden units
    clip_value: Annotated[float, Field(gt=0)] = 20.0  # controller outputs, state, logits
    grad_clip: Annotated[float | None, Field(gt=0)] = 50.0  # global-norm clipping; None = off
    # optimizers exempt from gradient clipping, as in the paper
    no_clip_for: tuple[str, ...] = POLYAK_OPTIMIZERS
    objective_window: Annotated[int, Field(ge=1)] = 100  # final objective: mean of last N steps
    # key strengths β: DeepMind's reference applies a plain softplus; the DNC paper's 1 + softplus
    key_strength: Literal["softplus", "oneplus"] = "softplus"
    # held-out set: this many batches of 16 from a fixed seed (the same for every trial seed)
    heldout_batches: Annotated[int, Field(ge=1, le=1024)] = 8

    @model_validator(mode="after")
    def _ranges(self) -> "DncCopyOptions":
        if self.min_length > self.max_length:
            raise ValueError("min_length must be <= max_length")
        if self.min_repeats > self.max_repeats:
            raise ValueError("min_repeats must be <= max_repeats")
        return self


class MatrixFactorisationOptions(TaskOptions):
    """min ||W1 W2 x − A x||² over samples x (AALIG paper §5.1, the benchmark code's data);
    ranks 1 and 4 do not interpolate. Data: :mod:`studies.catalog.matrix_data`."""

    generator: Literal["benchmark", "exact-condition"] = "benchmark"  # how A is built
    rank: Literal[1, 4, 10, "true-model"] = 4
    n_samples: Annotated[int, Field(ge=2)] = 1000  # samples x ~ N(0, I_6), before the split
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2  # held out for validation
    condition_number: Annotated[float, Field(ge=1)] = 1e10  # the 1/cond of A's scales or spectrum
    data_seed: int = 0  # A and the samples; the trial seed only changes the initialisation


class RbfClassificationOptions(TaskOptions):
    """Logistic loss on RBF kernel features (AALIG §5.1); LIBSVM file or a synthetic set.

    ``features="kernel"`` (the benchmark's setup): one feature per training sample,
    ``exp(−||x − x_j||² / (2 bandwidth²))``, no bias; ``features="centres"``: ``n_centers``
    random training inputs as centres, ``exp(−gamma ||x − c||²)``, and a bias.
    """

    path: str | None = None  # LIBSVM/svmlight file (mushrooms, ijcnn1); None = synthetic data
    n_samples: Annotated[int, Field(ge=10)] = 1000  # synthetic only
    n_features: Annotated[int, Field(ge=1)] = 10  # synthetic only
    label_noise: Annotated[float, Field(ge=0, le=0.5)] = 0.0  # synthetic: flips (non-interpolating)
    features: Literal["kernel", "centres"] = "kernel"  # full training-set kernel, or centres
    # kernel: σ; None = the benchmark's σ for a file named after its LIBSVM set (mushrooms 0.5,
    # ijcnn/ijcnn1 0.05, rcv1 0.25, w8a 20), else √(d/2), i.e. γ = 1/(2σ²) = 1/d
    bandwidth: Annotated[float | None, Field(gt=0)] = None
    # kernel: refuse more training samples than this (the kernel is n_train² float32)
    max_kernel_samples: Annotated[int, Field(ge=1)] = 20_000
    n_centers: Annotated[int, Field(ge=1)] = 200  # centres: drawn from the training data
    gamma: Annotated[float | None, Field(gt=0)] = None  # centres: kernel width; None = 1 / d
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2  # the last ⌈fraction · n⌉ samples
    shuffle_split: bool = False  # False: the benchmark's unshuffled split; True: by data_seed
    data_seed: int = 0  # data, shuffled split and centres; the trial seed only changes the init

    @model_validator(mode="after")
    def _feature_options(self) -> "RbfClassificationOptions":
        other = "centres" if self.features == "kernel" else "kernel"
        belongs = {"kernel": ("bandwidth", "max_kernel_samples"), "centres": ("n_centers", "gamma")}
        for name in belongs[other]:
            if name in self.model_fields_set and getattr(self, name) is not None:
                raise ValueError(
                    f"{name}: only with features={other!r}, not features={self.features!r}"
                )
        return self


class DigitsOptions(TaskOptions):
    """scikit-learn's bundled 8×8 digits (1,797 real images, offline)."""

    model: Literal["mlp", "cnn"] = "mlp"
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    loss: Literal["ce", "hinge"] = "ce"  # hinge: ALI-G becomes Deep Frank-Wolfe
    data_seed: int = 0  # the train/validation split


class ImageClassificationOptions(TaskOptions):
    """CIFAR-10/100 and SVHN from a local torchvision data root."""

    data_root: str = "./data"  # torchvision's on-disk layout
    download: bool = False  # never download at run time unless asked
    model: Literal["resnet8", "wrn-16-4", "wrn-40-4", "densenet-40"] = "resnet8"
    augment: bool = True  # random crop (padding 4) + horizontal flip (no flip for SVHN)
    loss: Literal["ce", "hinge"] = "ce"  # hinge: ALI-G becomes Deep Frank-Wolfe
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0  # WRN dropout (paper: 0.4 on SVHN)
    train_subset: Annotated[int | None, Field(ge=1)] = None  # first N training images only
    val_subset: Annotated[int | None, Field(ge=1)] = None  # first N test images only


@dataclass(frozen=True)
class TaskSpec:
    """A catalog entry: what a study needs to know about a task without running it."""

    name: str
    description: str
    options: type[TaskOptions]
    budget_unit: BudgetUnit
    default_budget: int
    default_batch_size: int
    # metric name -> direction; "final_objective" is what heatmaps show by default
    metrics: dict[str, Direction] = field(default_factory=dict)
    # what is known about the task's default data, computed on demand (GET /tasks shows it)
    facts: Callable[[], dict[str, Any]] = field(default=dict, repr=False)


_MIN = "minimize"
_MAX = "maximize"
_CLASSIFICATION = {
    "final_objective": _MIN,
    "train_loss": _MIN,
    "val_loss": _MIN,
    "val_accuracy": _MAX,
}

TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec(
            "dnc-copy",
            "DNC on repeat-copy (ALI-G paper, Figure 3); objective: mean loss of the last steps",
            DncCopyOptions,
            "steps",
            10_000,
            16,
            {
                "final_objective": _MIN,
                "objective_median": _MIN,
                "train_loss": _MIN,
                "heldout_loss": _MIN,
                "heldout_bit_errors": _MIN,
                "val_loss": _MIN,
                "val_bit_errors": _MIN,
            },
        ),
        TaskSpec(
            "matrix-factorisation",
            "W1 W2 ≈ A on the benchmark's data (AALIG paper §5.1); objective: final training "
            "loss (mean squared error); facts: each rank's optimal training loss",
            MatrixFactorisationOptions,
            "epochs",
            50,
            100,
            {"final_objective": _MIN, "train_loss": _MIN, "val_loss": _MIN},
            facts=lambda: {"rank_floors": training_floors()},
        ),
        TaskSpec(
            "rbf-classification",
            "RBF-kernel logistic regression (AALIG §5.1; by default the benchmark's full "
            "training-set kernel); objective: final training loss",
            RbfClassificationOptions,
            "epochs",
            35,
            100,
            _CLASSIFICATION,
        ),
        TaskSpec(
            "digits",
            "scikit-learn 8×8 digits, MLP or CNN; objective: final training loss",
            DigitsOptions,
            "epochs",
            20,
            64,
            _CLASSIFICATION,
        ),
        *[
            TaskSpec(
                name,
                f"{label} image classification (torchvision data root); objective: training loss",
                ImageClassificationOptions,
                "epochs",
                200,
                128,
                _CLASSIFICATION,
            )
            for name, label in [
                ("cifar10", "CIFAR-10"),
                ("cifar100", "CIFAR-100"),
                ("svhn", "SVHN"),
            ]
        ],
    ]
}
