"""The one ridge solver behind every fitted map: W-matrices, hub charts and KV maps.

    W(α) = argmin ||X W − Y||² + α·s·||W − W₀||²,   s = trace(XᵀX)/d   (X, Y centred)

with the prior W₀ (zero for plain ridge, the orthogonal map for hybrid). Penalties are relative
to s, so one grid, `RELATIVE_ALPHAS`, fits data of any scale. α is chosen on validation rows by
mean squared error; the caller measures quality on rows that took part in neither choice.

Two solvers give the same W for every α from one factorisation: `"svd"` (X = U S Vᵀ, best
conditioned; the default) and `"moments"` (XᵀX = V Λ Vᵀ, a d x d problem whatever the row
count: the KV maps' hundreds of thousands of rows fit in seconds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from latentmas_mesh.alignment._types import F64
from latentmas_mesh.errors import InvalidRequest

Solver = Literal["svd", "moments"]
RELATIVE_ALPHAS: Final[tuple[float, ...]] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
PRIOR_ONLY: Final = math.inf
"""The relative α that keeps the prior unchanged (hybrid maps may choose it)."""


def penalty_scale(x: F64) -> float:
    """s = trace(XᵀX) / d, what relative penalties multiply (1.0 for an all-zero X)."""
    value = float(np.sum(x * x)) / max(x.shape[1], 1)
    return value if value > 0.0 else 1.0


def ridge_path(x: F64, y: F64, solver: Solver = "svd") -> Callable[[float], F64]:
    """W(relative α) = argmin ||X W − Y||² + α·s·||W||² for any α, from one factorisation.

    x: [n, d] and y: [n, k], both centred. The returned function gives W: [d, k].
    """
    scale = penalty_scale(x)
    if solver == "svd":
        u, singular, vt = np.linalg.svd(x, full_matrices=False)
        uty = u.T @ y

        def solve_svd(relative_alpha: float) -> F64:
            shrink = singular / (singular * singular + relative_alpha * scale)
            return np.asarray(vt.T @ (shrink[:, None] * uty))

        return solve_svd
    if solver == "moments":
        eigenvalues, eigenvectors = np.linalg.eigh(x.T @ x)
        projected = eigenvectors.T @ (x.T @ y)
        eigenvalues = np.clip(eigenvalues, 0.0, None)

        def solve_moments(relative_alpha: float) -> F64:
            shrink = 1.0 / (eigenvalues + relative_alpha * scale)
            return np.asarray(eigenvectors @ (shrink[:, None] * projected))

        return solve_moments
    raise InvalidRequest(f"unknown ridge solver {solver!r}", details={"solver": solver})


@dataclass(frozen=True)
class RidgeChoice:
    """The α chosen on validation rows and the map fitted with it on the training rows."""

    relative_alpha: float  # PRIOR_ONLY: the prior itself won
    weight: F64  # [d, k], fitted on the training rows only
    validation_mse: float


def choose_ridge(
    train: tuple[F64, F64],
    validation: tuple[F64, F64],
    *,
    prior: F64 | None = None,
    relative_alphas: Sequence[float] = RELATIVE_ALPHAS,
    allow_prior: bool = False,
    solver: Solver = "svd",
) -> RidgeChoice:
    """Fit W(α) on `train` (x, y) for every α and keep the one with least error on `validation`.

    With `prior`, the ridge shrinks toward it (the fit is of the residual Y − X·W₀); with
    `allow_prior`, the prior itself (α = ∞) is a candidate too.
    """
    if not relative_alphas:
        raise InvalidRequest("relative_alphas is empty", details={})
    x, y = train
    x_val, y_val = validation
    base = np.zeros((x.shape[1], y.shape[1])) if prior is None else prior
    solve = ridge_path(x, y - x @ base, solver)
    candidates = [(float(alpha), base + solve(alpha)) for alpha in relative_alphas]
    if allow_prior:
        candidates.append((PRIOR_ONLY, base))
    errors = [float(np.mean((x_val @ weight - y_val) ** 2)) for _, weight in candidates]
    best = int(np.argmin(errors))
    return RidgeChoice(candidates[best][0], candidates[best][1], errors[best])


def fit_ridge(
    x: F64, y: F64, relative_alpha: float, *, prior: F64 | None = None, solver: Solver = "svd"
) -> F64:
    """W for one relative α (PRIOR_ONLY returns the prior): the refit once α is chosen."""
    base = np.zeros((x.shape[1], y.shape[1])) if prior is None else prior
    if math.isinf(relative_alpha):
        return base
    return base + ridge_path(x, y - x @ base, solver)(relative_alpha)
