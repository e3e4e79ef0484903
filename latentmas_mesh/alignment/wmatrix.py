"""The W-matrix estimator (section 4.3): W: R^d_s -> R^d_u -> R^d_t, fitted three ways."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Self

import numpy as np
import numpy.typing as npt

from latentmas_mesh.alignment._linalg import (
    orthonormal_basis,
    pad_columns,
    procrustes,
    validated_scaling,
)
from latentmas_mesh.alignment._split import RowSplit, split_rows
from latentmas_mesh.alignment._types import F64, METHODS, Method
from latentmas_mesh.alignment.quality import BOOTSTRAP_RESAMPLES, AlignmentQuality, measure_quality
from latentmas_mesh.alignment.ridge import RELATIVE_ALPHAS, choose_ridge, fit_ridge
from latentmas_mesh.errors import DimensionMismatch, InternalError, InvalidRequest

FORMAT: Final = "latentmas-wmatrix/1"
# Arrays that define what a W-matrix computes, in the order the content hash reads them.
ARRAY_NAMES: Final = ("source_mean", "encoder", "core", "scaling", "decoder", "target_mean")


class NotFittedError(RuntimeError):
    """A W-matrix was used before `fit` (a programming error, never a wire error)."""


@dataclass(frozen=True)
class _Charts:
    """Each side's chart into R^d_u, fitted on the fit rows only.

    source_encoder: [d_s, d_u] = [P_s, 0] / σ_s; target_encoder: [d_t, d_u] = [P_t, 0] / σ_t;
    target_decoder: [d_u, d_t] = σ_t [P_t, 0]ᵀ. σ is the RMS norm of the projected fit rows, so
    each side's chart coordinates have unit mean squared norm. P_s holds the source's principal
    directions; P_t the target's, or (a predicted chart) those of the source's ridge prediction
    of the target.
    """

    source_mean: F64
    target_mean: F64
    source_encoder: F64
    target_encoder: F64
    target_decoder: F64


@dataclass(frozen=True)
class _Choices:
    """What the first fit chose on train / validation rows; the refit on every row reuses it."""

    alpha: float | None  # the map's relative α (None: orthogonal, which has none)
    scaling: F64
    chart_alpha: float | None  # the pilot ridge's relative α for a predicted chart; None: PCA


class WMatrix:
    """A fitted map W = decoder ∘ (core · diag(scaling)) ∘ encoder, scikit-learn style.

    transform(x) = (((x − μ_s) E) C ⊙ s) D + μ_t with E: [d_s, d_u], C: [d_u, d_u], s: [d_u],
    D: [d_u, d_t]. The unified space R^d_u is a chart of the target (d_u orthonormal directions
    P_t, scaled to unit RMS norm); D = σ_t P_tᵀ maps it back. For ``orthogonal`` P_t holds the
    target's top-d_u principal directions. For ``learned`` and ``hybrid`` below full rank they
    are the principal directions of a pilot ridge's prediction of the target from the source
    (reduced-rank ridge): a target direction of large variance that the source cannot predict
    would waste a dimension of the chart, so such a map is at least as good as reduced-rank
    ridge on the same rows (the pilot's α is chosen on validation rows like the map's).

    Methods (section 4.3.2):

    * ``orthogonal``: E = [P_s, 0]/σ_s (source principal chart: QR-orthonormalised principal
      directions), C = R = argmin_{RᵀR=I} ||U_s R − U_t||_F (orthogonal Procrustes by SVD of
      U_sᵀU_t), s = 1. Inside the unified space the map is R, so norms and angles are preserved
      exactly: ||uR|| = ||u|| and ⟨uR, vR⟩ = ⟨u, v⟩.
    * ``learned``: E = argmin ||X E − U_t||² + α||E||² (ridge on the full source, closed form
      by SVD), C = I, and per-dimension scaling factors s_j = ⟨û_j, u_j⟩/⟨û_j, û_j⟩ fitted on
      validation rows (the spec's lightweight scaling parameters; they undo ridge shrinkage).
    * ``hybrid``: the orthogonal map E₀C as a base plus a ridge refinement
      Δ = argmin ||X(E₀R + Δ) − U_t||² + α||Δ||², so α → ∞ gives back the orthogonal map
      (∞ is one of the candidates); stored as E = E₀ + ΔRᵀ, C = R, then scaling factors.

    α (``alpha_``, relative to trace(XᵀX)/d_s) is chosen from ``relative_alphas`` by mean
    squared error on validation rows, with the scaling factors; the map fitted on train +
    validation rows is measured on the held-out rows (``split_.holdout``), which neither the
    fit nor α saw: that is ``quality_``. The shipped map is then the same recipe (α and scaling
    fixed) refitted on every row, so ``quality_`` is a slightly pessimistic estimate of it, and
    ``learned`` at full rank is plain ridge on all rows.

    Parameters: method; unified_dim d_u; holdout_fraction (of rows, or of groups) kept for
    quality; validation_fraction (of the rest) for choosing α and the scaling factors;
    relative_alphas; resamples for the bootstrap confidence; random_state seeds the split and
    the bootstrap.
    """

    def __init__(
        self,
        method: Method = "orthogonal",
        unified_dim: int = 128,
        *,
        holdout_fraction: float = 0.2,
        validation_fraction: float = 0.2,
        relative_alphas: Sequence[float] = RELATIVE_ALPHAS,
        resamples: int = BOOTSTRAP_RESAMPLES,
        random_state: int = 0,
    ) -> None:
        self.method = method
        self.unified_dim = unified_dim
        self.holdout_fraction = holdout_fraction
        self.validation_fraction = validation_fraction
        self.relative_alphas = relative_alphas
        self.resamples = resamples
        self.random_state = random_state

    # ---------------------------------------------------------------- fitting

    def fit(
        self, source: npt.ArrayLike, target: npt.ArrayLike, *, groups: npt.ArrayLike | None = None
    ) -> Self:
        """Fit on row-paired source [n, d_s] and target [n, d_t]; returns self.

        groups [n] (optional, e.g. passage ids) keeps related rows on one side of each split, so
        held-out quality is not inflated by near-duplicate neighbours.
        """
        x, y = _paired_rows(source, target)
        self._check_hyperparameters()
        split = split_rows(
            x.shape[0],
            holdout_fraction=self.holdout_fraction,
            validation_fraction=self.validation_fraction,
            random_state=self.random_state,
            groups=groups,
        )
        # 1. Choose α and the scaling on train / validation, fit on both, measure on holdout.
        parts, chosen = self._fit_parts(x, y, split, split.fit, None)
        self._set_parts(**parts)
        quality = measure_quality(
            self.transform(x[split.holdout]),
            y[split.holdout],
            resamples=self.resamples,
            random_state=self.random_state,
        )
        # 2. Ship the same recipe (α and scaling fixed) refitted on every row: the measured
        # quality is then a slightly pessimistic estimate of the shipped map's.
        everything = np.arange(x.shape[0], dtype=np.int64)
        parts, _ = self._fit_parts(x, y, split, everything, chosen)
        self._set_parts(**parts)
        self.alpha_: float | None = chosen.alpha
        self.chart_alpha_: float | None = chosen.chart_alpha
        self.split_: RowSplit | None = split
        self.quality_: AlignmentQuality | None = quality
        return self

    def _fit_parts(
        self,
        x: F64,
        y: F64,
        split: RowSplit,
        fit_rows: npt.NDArray[np.int64],
        chosen: _Choices | None,
    ) -> tuple[dict[str, F64], _Choices]:
        """The map's arrays fitted on `fit_rows`, with α, scaling and chart chosen on the
        split's train / validation rows, or `chosen` when given (the refit)."""
        if chosen is not None:
            chart_alpha = chosen.chart_alpha
        elif self.method == "orthogonal":
            chart_alpha = None
        else:
            chart_alpha = _chart_alpha(x, y, split, self.unified_dim, self.relative_alphas)
        charts = _fit_charts(x[fit_rows], y[fit_rows], self.unified_dim, chart_alpha)
        if self.method == "orthogonal":
            encoder, core, scaling, alpha = _fit_orthogonal(x, y, fit_rows, charts)
        else:
            encoder, core, scaling, alpha = _fit_ridge(
                x, y, split, fit_rows, charts, method=self.method,
                relative_alphas=self.relative_alphas, chosen=chosen,
            )  # fmt: skip
        parts = {
            "source_mean": charts.source_mean,
            "encoder": encoder,
            "core": core,
            "scaling": scaling,
            "decoder": charts.target_decoder,
            "target_mean": charts.target_mean,
        }
        return parts, _Choices(alpha, scaling, chart_alpha)

    def _check_hyperparameters(self) -> None:
        if self.method not in METHODS:
            raise InvalidRequest(
                f"unknown W-matrix method {self.method!r}; use one of {', '.join(METHODS)}",
                details={"method": self.method, "methods": list(METHODS)},
            )
        if not isinstance(self.unified_dim, int) or self.unified_dim < 1:
            raise InvalidRequest(
                f"unified_dim must be a positive integer, got {self.unified_dim!r}",
                details={"unified_dim": repr(self.unified_dim)},
            )

    @classmethod
    def from_parts(
        cls,
        *,
        method: Method,
        source_mean: npt.ArrayLike,
        encoder: npt.ArrayLike,
        core: npt.ArrayLike,
        scaling: npt.ArrayLike,
        decoder: npt.ArrayLike,
        target_mean: npt.ArrayLike,
        quality: AlignmentQuality | None = None,
        alpha: float | None = None,
    ) -> WMatrix:
        """A W-matrix from explicit parts (a hub composition, an identity, a loaded file)."""
        parts = {
            name: np.asarray(value, dtype=np.float64)
            for name, value in zip(
                ARRAY_NAMES,
                (source_mean, encoder, core, scaling, decoder, target_mean),
                strict=True,
            )
        }
        unified_dim = parts["core"].shape[0]
        wmatrix = cls(method=method, unified_dim=unified_dim)
        wmatrix._set_parts(**parts)
        wmatrix.alpha_ = alpha
        wmatrix.chart_alpha_ = None  # a choice of the fit, not part of the stored map
        wmatrix.split_ = None
        wmatrix.quality_ = quality
        return wmatrix

    @classmethod
    def identity(cls, dim: int, unified_dim: int | None = None) -> WMatrix:
        """The exact identity map on R^dim (a same-model exchange): E = D = I, C = I, s = 1."""
        width = dim if unified_dim is None else unified_dim
        if width < dim:
            raise InvalidRequest(
                f"an identity map of dimension {dim} needs unified_dim >= {dim}",
                details={"dim": dim, "unified_dim": width},
            )
        embed = pad_columns(np.eye(dim), width)
        return cls.from_parts(
            method="orthogonal",
            source_mean=np.zeros(dim),
            encoder=embed,
            core=np.eye(width),
            scaling=np.ones(width),
            decoder=embed.T,
            target_mean=np.zeros(dim),
        )

    def _set_parts(
        self,
        *,
        source_mean: F64,
        encoder: F64,
        core: F64,
        scaling: F64,
        decoder: F64,
        target_mean: F64,
    ) -> None:
        d_s, d_u = encoder.shape
        d_t = decoder.shape[1]
        expected = {
            "source_mean": (d_s,),
            "core": (d_u, d_u),
            "scaling": (d_u,),
            "decoder": (d_u, d_t),
            "target_mean": (d_t,),
        }
        actual = {
            "source_mean": source_mean.shape,
            "core": core.shape,
            "scaling": scaling.shape,
            "decoder": decoder.shape,
            "target_mean": target_mean.shape,
        }
        if expected != actual:
            raise DimensionMismatch(
                "W-matrix parts do not compose",
                details={
                    "expected": {k: list(v) for k, v in expected.items()},
                    "actual": {k: list(v) for k, v in actual.items()},
                },
            )
        self.source_mean_ = source_mean
        self.encoder_ = encoder
        self.core_ = core
        self.scaling_ = scaling
        self.decoder_ = decoder
        self.target_mean_ = target_mean
        self.n_features_in_ = int(d_s)
        self.n_features_out_ = int(d_t)
        matrix = ((encoder @ core) * scaling) @ decoder
        self._matrix: F64 = np.asarray(matrix)
        self._bias: F64 = np.asarray(target_mean - source_mean @ matrix)

    # ---------------------------------------------------------------- using

    def _check_fitted(self) -> None:
        if not hasattr(self, "encoder_"):
            raise NotFittedError("this W-matrix is not fitted yet; call fit() first")

    def transform(self, x: npt.ArrayLike) -> F64:
        """Map x: [..., d_s] -> [..., d_t] (float64). Raises DimensionMismatch on the last axis."""
        self._check_fitted()
        rows = np.asarray(x, dtype=np.float64)
        if rows.ndim < 1 or rows.shape[-1] != self.n_features_in_:
            raise DimensionMismatch(
                f"input's last axis is {rows.shape[-1:] or '()'}, this W-matrix reads "
                f"{self.n_features_in_}",
                details={"shape": list(rows.shape), "source_dim": self.n_features_in_},
            )
        return np.asarray(rows @ self._matrix + self._bias)

    def affine(self) -> tuple[F64, F64]:
        """The whole map folded into one affine map: (A [d_s, d_t], b [d_t]), y = x A + b."""
        self._check_fitted()
        return self._matrix.copy(), self._bias.copy()

    @property
    def quality(self) -> AlignmentQuality:
        """Held-out quality of section 4.3.4 (raises if this map was never measured)."""
        self._check_fitted()
        if self.quality_ is None:
            raise NotFittedError("this W-matrix carries no measured quality")
        return self.quality_

    @property
    def computational_cost(self) -> int:
        """Multiply-adds per vector in factored form, d_s·d_u + d_u·d_t (128/128/128: 32768)."""
        self._check_fitted()
        d_u = self.core_.shape[0]
        return int(self.n_features_in_ * d_u + d_u * self.n_features_out_)

    def arrays(self) -> dict[str, F64]:
        """The defining arrays by name (what `to_tensors` gives and the content hash reads)."""
        self._check_fitted()
        return {name: getattr(self, f"{name}_") for name in ARRAY_NAMES}

    @property
    def content_hash(self) -> str:
        """sha256 over the method and every defining array (name, dtype, shape, bytes)."""
        return _content_hash(self.method, self.arrays())

    def transformation_rules(self) -> dict[str, list[Any]]:
        """Section 4.3.3 transformationRules: the core (orthogonal part) and the scaling factors."""
        self._check_fitted()
        rules: dict[str, list[Any]] = {"scaling_factors": self.scaling_.tolist()}
        if self.method != "learned":
            rules["orthogonal_matrix"] = self.core_.tolist()
        return rules

    # ------------------------------------------------------- serialised form (no I/O)

    def metadata(self) -> dict[str, Any]:
        """JSON-safe description: format, method, dimensions, α, quality, content hash."""
        self._check_fitted()
        return {
            "format": FORMAT,
            "method": self.method,
            "unified_dim": int(self.core_.shape[0]),
            "source_dim": self.n_features_in_,
            "target_dim": self.n_features_out_,
            "alpha": _json_float(self.alpha_),
            "quality": None if self.quality_ is None else self.quality_.to_dict(),
            "computational_cost": self.computational_cost,
            "content_hash": self.content_hash,
        }

    def to_tensors(self) -> tuple[dict[str, F64], dict[str, Any]]:
        """The arrays and the JSON description that `from_tensors` rebuilds this map from."""
        return (
            {name: np.ascontiguousarray(a) for name, a in self.arrays().items()},
            self.metadata(),
        )

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, npt.NDArray[Any]], meta: dict[str, Any], *, origin: str
    ) -> WMatrix:
        """Rebuild a map from `to_tensors` output; the content hash is checked against the
        arrays. `origin` names where they came from, for the error."""
        if meta.get("format") != FORMAT or any(name not in tensors for name in ARRAY_NAMES):
            raise InvalidRequest(f"{origin} is not a latentmas W-matrix", details={})
        quality = None if meta["quality"] is None else AlignmentQuality(**meta["quality"])
        alpha = meta["alpha"]
        wmatrix = cls.from_parts(
            method=meta["method"],
            quality=quality,
            alpha=math.inf if alpha == "inf" else alpha,
            **{name: tensors[name] for name in ARRAY_NAMES},
        )
        if wmatrix.content_hash != meta["content_hash"]:
            raise InternalError(
                f"W-matrix {origin} is corrupt: its arrays do not match its content hash",
                details={"stored": meta["content_hash"], "computed": wmatrix.content_hash},
            )
        return wmatrix

    def __repr__(self) -> str:
        state = (
            "unfitted"
            if not hasattr(self, "encoder_")
            else (f"{self.n_features_in_}->{self.core_.shape[0]}->{self.n_features_out_}")
        )
        return f"WMatrix(method={self.method!r}, {state})"


def fit_w_matrix(
    source: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    method: Method = "orthogonal",
    unified_dim: int = 128,
    groups: npt.ArrayLike | None = None,
    holdout_fraction: float = 0.2,
    validation_fraction: float = 0.2,
    random_state: int = 0,
) -> WMatrix:
    """Fit a W-matrix on row-paired source [n, d_s] and target [n, d_t] (see WMatrix)."""
    return WMatrix(
        method,
        unified_dim,
        holdout_fraction=holdout_fraction,
        validation_fraction=validation_fraction,
        random_state=random_state,
    ).fit(source, target, groups=groups)


# -------------------------------------------------------------------- private solvers


def _paired_rows(source: npt.ArrayLike, target: npt.ArrayLike) -> tuple[F64, F64]:
    x = np.asarray(source, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise DimensionMismatch(
            f"source {x.shape} and target {y.shape} must be row-paired [n, d_s] and [n, d_t]",
            details={"source": list(x.shape), "target": list(y.shape)},
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InvalidRequest("fitting data contains NaN or infinity", details={})
    return x, y


def _fit_charts(x: F64, y: F64, unified_dim: int, chart_alpha: float | None) -> _Charts:
    """Both sides' charts (see _Charts) from the fit rows x [m, d_s], y [m, d_t]: principal, or
    for the target with `chart_alpha` the principal directions of ridge(α)'s prediction."""
    source_mean, target_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - source_mean, y - target_mean
    rank_max = x.shape[0] - 1
    source_basis = orthonormal_basis(xc, min(unified_dim, x.shape[1], rank_max))
    spanned = yc if chart_alpha is None else xc @ fit_ridge(xc, yc, chart_alpha)
    target_basis = orthonormal_basis(spanned, min(unified_dim, y.shape[1], rank_max))
    source_scale = _rms_norm(xc @ source_basis)
    target_scale = _rms_norm(yc @ target_basis)
    target_embed = pad_columns(target_basis, unified_dim)
    return _Charts(
        source_mean=source_mean,
        target_mean=target_mean,
        source_encoder=pad_columns(source_basis, unified_dim) / source_scale,
        target_encoder=target_embed / target_scale,
        target_decoder=target_embed.T * target_scale,
    )


def _rms_norm(rows: F64) -> float:
    value = float(np.sqrt(np.mean(np.sum(rows * rows, axis=1))))
    return value if value > 0.0 else 1.0


def _chart_alpha(
    x: F64, y: F64, split: RowSplit, unified_dim: int, relative_alphas: Sequence[float]
) -> float | None:
    """The pilot ridge's α for a predicted target chart, chosen on train / validation rows;
    None at full rank, where every chart spans the whole target and PCA's is kept."""
    train, validation = split.train, split.validation
    if unified_dim >= min(y.shape[1], train.size - 1):
        return None
    source_mean, target_mean = x[train].mean(axis=0), y[train].mean(axis=0)
    choice = choose_ridge(
        (x[train] - source_mean, y[train] - target_mean),
        (x[validation] - source_mean, y[validation] - target_mean),
        relative_alphas=relative_alphas,
    )
    return choice.relative_alpha


def _fit_orthogonal(
    x: F64, y: F64, fit_rows: npt.NDArray[np.int64], charts: _Charts
) -> tuple[F64, F64, F64, float | None]:
    """E = source chart, C = Procrustes rotation between the two charts on the fit rows."""
    u_source = (x[fit_rows] - charts.source_mean) @ charts.source_encoder
    u_target = (y[fit_rows] - charts.target_mean) @ charts.target_encoder
    rotation = procrustes(u_source, u_target)
    return charts.source_encoder, rotation, np.ones(rotation.shape[0]), None


def _fit_ridge(
    x: F64,
    y: F64,
    split: RowSplit,
    fit_rows: npt.NDArray[np.int64],
    charts: _Charts,
    *,
    method: Method,
    relative_alphas: Sequence[float],
    chosen: _Choices | None,
) -> tuple[F64, F64, F64, float]:
    """Learned or hybrid: α and scaling chosen on validation (or `chosen`), fit on fit_rows."""
    xc = x - charts.source_mean
    uc = (y - charts.target_mean) @ charts.target_encoder
    if chosen is None or chosen.alpha is None:
        train, validation = split.train, split.validation
        choice = choose_ridge(
            (xc[train], uc[train]),
            (xc[validation], uc[validation]),
            prior=_base_encoder(xc[train], uc[train], charts, method),
            relative_alphas=relative_alphas,
            allow_prior=method == "hybrid",
        )
        alpha = choice.relative_alpha
        scaling = validated_scaling(xc[validation] @ choice.weight, uc[validation])
    else:
        alpha, scaling = chosen.alpha, chosen.scaling
    base = _base_encoder(xc[fit_rows], uc[fit_rows], charts, method)
    encoder = fit_ridge(xc[fit_rows], uc[fit_rows], alpha, prior=base)
    if method == "learned":
        return encoder, np.eye(encoder.shape[1]), scaling, alpha
    rotation = procrustes(xc[fit_rows] @ charts.source_encoder, uc[fit_rows])
    return encoder @ rotation.T, rotation, scaling, alpha


def _base_encoder(xc: F64, uc: F64, charts: _Charts, method: Method) -> F64:
    """The prior the ridge shrinks toward: zero (learned) or the orthogonal map E₀R (hybrid)."""
    if method == "learned":
        return np.zeros((xc.shape[1], uc.shape[1]))
    rotation = procrustes(xc @ charts.source_encoder, uc)
    return np.asarray(charts.source_encoder @ rotation)


def _content_hash(method: str, arrays: dict[str, F64]) -> str:
    digest = hashlib.sha256(f"{FORMAT}\0{method}\0".encode())
    for name in ARRAY_NAMES:
        array = np.ascontiguousarray(arrays[name], dtype="<f8")
        digest.update(f"{name}\0{array.dtype.str}\0{list(array.shape)}\0".encode())
        digest.update(array.tobytes())
    return f"sha256:{digest.hexdigest()}"


def _json_float(value: float | None) -> float | str | None:
    if value is None:
        return None
    return "inf" if math.isinf(value) else float(value)
