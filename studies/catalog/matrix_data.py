r"""The matrix-factorisation data, generated without torch, and each rank's optimal loss.

Two generators of the 10×6 target ``A`` (``data_seed`` drives both, with NumPy's PCG64):

- ``"benchmark"`` (default) — what the benchmark code the AALIG paper reuses actually builds:
  ``A = linspace(1, 1/cond, 10)[:, None] * U(0, 1)^{10×6}``, the rows of a uniform random matrix
  scaled linearly. Its condition number is *not* ``cond`` (the row scales leave a full-rank
  matrix of moderate conditioning); it is the data of the paper's Figure 2.
- ``"exact-condition"`` — ``A = U diag(s) Vᵀ`` with random orthonormal ``U``, ``V`` and singular
  values log-spaced from 1 down to ``1/cond``: the conditioning the paper's text names.

Then ``X ~ N(0, I_6)`` (``n_samples`` rows), ``Y = X Aᵀ`` without noise, and a split into
training and validation sets (the last ``val_fraction`` of the rows, after a seeded shuffle).
The loss of a model ``f`` is the mean squared error over every output entry (torch's
``MSELoss(reduction="mean")``): ``L(f) = (1 / (10 n)) Σ_i ||f(x_i) − y_i||²``.

**The floor of a rank.** A rank-``k`` model ``x ↦ W₁W₂x`` is any 10×6 matrix ``B`` of rank ≤ k,
and ``Σ_i ||B x_i − y_i||² = ||(B − A) Xᵀ||²_F = ||(B − A) L||²_F`` with ``XᵀX = L Lᵀ``
(Cholesky). ``B L`` ranges over the rank-≤k matrices, so by Eckart–Young the optimum keeps the
``k`` largest singular values of ``A L``: ``L*_k = Σ_{i>k} σ_i(A L)² / (10 n)``. Rank 10 and the
true model (a plain 10×6 map) represent ``A`` exactly (floor 0); ranks 1 and 4 do not.
See docs/algorithms.md, section "matrix-factorisation".
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

IN_FEATURES, OUT_FEATURES = 6, 10
Generator = Literal["benchmark", "exact-condition"]


@dataclass(frozen=True)
class MatrixData:
    """The target and the split samples (float64, rows are samples)."""

    target: np.ndarray  # A, 10×6
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def make_target(
    generator: Generator, condition_number: float, rng: np.random.Generator
) -> np.ndarray:
    """The 10×6 target ``A`` of ``generator`` (see the module docstring)."""
    if generator == "benchmark":
        scales = np.linspace(1.0, 1.0 / condition_number, OUT_FEATURES)[:, None]
        return scales * rng.random((OUT_FEATURES, IN_FEATURES))
    u, _ = np.linalg.qr(rng.standard_normal((OUT_FEATURES, IN_FEATURES)))
    v, _ = np.linalg.qr(rng.standard_normal((IN_FEATURES, IN_FEATURES)))
    singular = condition_number ** (-np.linspace(0.0, 1.0, IN_FEATURES))
    return u @ np.diag(singular) @ v.T


def make_data(
    generator: Generator,
    condition_number: float,
    n_samples: int,
    val_fraction: float,
    data_seed: int,
) -> MatrixData:
    """Target, samples and split for ``data_seed`` (the same on every platform)."""
    rng = np.random.default_rng(data_seed)
    target = make_target(generator, condition_number, rng)
    x = rng.standard_normal((n_samples, IN_FEATURES))
    y = x @ target.T
    order = rng.permutation(n_samples)
    n_val = max(1, round(val_fraction * n_samples)) if n_samples > 1 else 0
    train, val = order[: n_samples - n_val], order[n_samples - n_val :]
    return MatrixData(target, x[train], y[train], x[val], y[val])


def mean_squared_error(prediction: np.ndarray, y: np.ndarray) -> float:
    """``(1 / (10 n)) Σ_i ||prediction_i − y_i||²``: the task's loss."""
    return float(np.mean((prediction - y) ** 2))


def optimal_map(x: np.ndarray, target: np.ndarray, rank: int | None) -> np.ndarray:
    """The rank-≤``rank`` 10×6 map ``B`` with the least squared error on ``(x, x Aᵀ)``
    (``None``: unconstrained, i.e. ``A`` itself)."""
    if rank is None or rank >= min(IN_FEATURES, OUT_FEATURES):
        return target.copy()
    cholesky = np.linalg.cholesky(x.T @ x)
    u, s, vt = np.linalg.svd(target @ cholesky)
    best = (u[:, :rank] * s[:rank]) @ vt[:rank]  # the best rank-k approximation of A L
    return np.linalg.solve(cholesky.T, best.T).T  # B = (A L)_k L⁻¹


def rank_floor(x: np.ndarray, target: np.ndarray, rank: int | None) -> float:
    """The least mean squared error a rank-``rank`` model reaches on ``(x, x Aᵀ)``."""
    b = optimal_map(x, target, rank)
    return mean_squared_error(x @ b.T, x @ target.T)


RANKS: dict[str, int | None] = {"1": 1, "4": 4, "10": 10, "true-model": None}


@lru_cache(maxsize=8)
def training_floors(
    generator: Generator = "benchmark",
    condition_number: float = 1e10,
    n_samples: int = 1000,
    val_fraction: float = 0.2,
    data_seed: int = 0,
) -> dict[str, float]:
    """Each rank's optimal training loss for these data options (``GET /tasks`` shows the
    defaults')."""
    data = make_data(generator, condition_number, n_samples, val_fraction, data_seed)
    return {name: rank_floor(data.x_train, data.target, rank) for name, rank in RANKS.items()}
