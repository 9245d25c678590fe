"""The task catalog: every task a study may name, its options, budget unit and metrics.

The catalog is the contract between a study spec (validated here, in ``studies``) and the task
implementations in ``workers.tasks``, which register one implementation per catalog name. Options
are pydantic models with ``extra="forbid"`` so an option a task does not accept is a 422 naming
the field, not silently ignored.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

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


# The shape of a data-set name in a spec (docs/datasets.md): a plain file name, never a path. The
# workers check it again before they touch the disk (workers.datasets); here it makes a bad name a
# 422 at submit.
DATASET_NAME = re.compile(r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._+-]{0,254}")
DATASET_NAME_RULE = (
    "must be a data-set name or a file name inside the operator's data-set directory: up to 255 "
    "letters, digits, '.', '_', '+' or '-', starting with a letter or digit (no '/', no '..', "
    "no absolute path)"
)


def _dataset_name(value: str) -> str:
    if not DATASET_NAME.fullmatch(value):
        raise ValueError(DATASET_NAME_RULE)
    return value


DatasetName = Annotated[str, AfterValidator(_dataset_name)]


def _removed(field: str, replacement: str) -> str:
    """The message refusing a removed option (kept as a hidden field only to say this)."""
    return f"{field} was removed: a spec names its data, never a path; {replacement}"


class RbfClassificationOptions(TaskOptions):
    """Logistic loss on RBF kernel features (AALIG §5.1); a LIBSVM data set or a synthetic set.

    ``dataset`` names a LIBSVM/svmlight data set of the operator's data-set directory: a known
    name (``mushrooms``, ``ijcnn1``, ``rcv1``, ``w8a``) or a plain file name inside that
    directory (docs/datasets.md); omitted, the data are synthetic. ``features="kernel"`` (the
    benchmark's setup): one feature per training sample, ``exp(−||x − x_j||² / (2 bandwidth²))``,
    no bias; ``features="centres"``: ``n_centers`` random training inputs as centres,
    ``exp(−gamma ||x − c||²)``, and a bias.
    """

    dataset: DatasetName | None = None  # a known name or a file name; None = synthetic data
    # removed (it read any file a spec named); refused with a pointer to ``dataset``
    path: SkipJsonSchema[None] = Field(default=None, exclude=True, repr=False)
    n_samples: Annotated[int, Field(ge=10)] = 1000  # synthetic only
    n_features: Annotated[int, Field(ge=1)] = 10  # synthetic only
    label_noise: Annotated[float, Field(ge=0, le=0.5)] = 0.0  # synthetic: flips (non-interpolating)
    features: Literal["kernel", "centres"] = "kernel"  # full training-set kernel, or centres
    # kernel: σ; None = the benchmark's σ for a known data set, or for a file whose name (up to the
    # first dot) names one (mushrooms 0.5, ijcnn/ijcnn1 0.05, rcv1/rcv1_train 0.25, w8a 20), else
    # √(d/2), i.e. γ = 1/(2σ²) = 1/d
    bandwidth: Annotated[float | None, Field(gt=0)] = None
    # kernel: refuse more training samples than this (the kernel is n_train² float32)
    max_kernel_samples: Annotated[int, Field(ge=1)] = 20_000
    n_centers: Annotated[int, Field(ge=1)] = 200  # centres: drawn from the training data
    gamma: Annotated[float | None, Field(gt=0)] = None  # centres: kernel width; None = 1 / d
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2  # the last ⌈fraction · n⌉ samples
    shuffle_split: bool = False  # False: the benchmark's unshuffled split; True: by data_seed
    data_seed: int = 0  # data, shuffled split and centres; the trial seed only changes the init

    @field_validator("path", mode="before")
    @classmethod
    def _no_path(cls, value: object) -> None:
        raise ValueError(
            _removed(
                "path",
                "use 'dataset' (a known name such as 'mushrooms', or a file name inside the "
                "operator's data-set directory)",
            )
        )

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
    """CIFAR-10/100 and SVHN, read from the operator's data-set directory.

    The task names the data set: torchvision's files are read from ``<datasets_dir>/cifar10``,
    ``<datasets_dir>/cifar100`` or ``<datasets_dir>/svhn`` (docs/datasets.md), md5-checked.
    """

    # let torchvision fetch a missing data set into the data-set directory; refused unless the
    # operator allows downloads (SENSITIVITY_ALLOW_DOWNLOADS), checked by the worker
    download: bool = False
    # removed (it pointed torchvision's pickle reader at any directory); refused with a hint
    data_root: SkipJsonSchema[None] = Field(default=None, exclude=True, repr=False)
    model: Literal["resnet8", "wrn-16-4", "wrn-40-4", "densenet-40"] = "resnet8"
    augment: bool = True  # random crop (padding 4) + horizontal flip (no flip for SVHN)
    loss: Literal["ce", "hinge"] = "ce"  # hinge: ALI-G becomes Deep Frank-Wolfe
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0  # WRN dropout (paper: 0.4 on SVHN)
    train_subset: Annotated[int | None, Field(ge=1)] = None  # first N training images only
    val_subset: Annotated[int | None, Field(ge=1)] = None  # first N test images only

    @field_validator("data_root", mode="before")
    @classmethod
    def _no_data_root(cls, value: object) -> None:
        raise ValueError(
            _removed(
                "data_root",
                "the task names its data set, read from the operator's data-set directory "
                "(docs/datasets.md)",
            )
        )


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
    # whether its trials can train in packs (one vectorised model; docs/architecture.md)
    packs: bool = True
    # whether its packs run each time step compiled under execution.compile (a recurrent
    # model; docs/architecture.md, "Compiled packs")
    compiles: bool = False


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
            compiles=True,
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
                f"{label} image classification (the operator's data-set directory); objective: "
                "training loss",
                ImageClassificationOptions,
                "epochs",
                200,
                128,
                _CLASSIFICATION,
                packs=False,  # batch norm updates running statistics in place
            )
            for name, label in [
                ("cifar10", "CIFAR-10"),
                ("cifar100", "CIFAR-100"),
                ("svhn", "SVHN"),
            ]
        ],
    ]
}
