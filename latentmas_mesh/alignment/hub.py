"""Hub-and-spoke unified space (section 4.3.1): one chart per model, W(s->t) by composition."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
from latentmas_mesh.alignment.quality import measure_quality
from latentmas_mesh.alignment.ridge import RELATIVE_ALPHAS, choose_ridge, fit_ridge
from latentmas_mesh.alignment.wmatrix import WMatrix
from latentmas_mesh.errors import DimensionMismatch, InvalidRequest, WMatrixNotFound

FORMAT: Final = "latentmas-unified-space/1"
GPA_ITERATIONS_MAX: Final = 100


@dataclass(frozen=True)
class ModelChart:
    """One model's spoke: R^d_m -> R^d_u and back, plus its held-out anchor rows.

    encode(x) = ((x − mean) · encoder) ⊙ scaling: [.., d_m] -> [.., d_u];
    decode(u) = u · decoder + mean: [.., d_u] -> [.., d_m];
    holdout: [n_holdout, d_m] the model's activations on the hub's held-out anchor rows.
    """

    mean: F64
    encoder: F64
    scaling: F64
    decoder: F64
    holdout: F64


class UnifiedSpace:
    """The protocol's unified space R^d_u: each model has one chart into it and out of it, so
    N models need N charts and W(s->t) = decode_t ∘ encode_s (never N² pairwise fits).

    How the unified coordinates are defined: every model's activations on the same anchor rows
    (the shared anchor corpus, row-paired across models) are reduced to their top-d_u principal
    components (QR-orthonormalised) and scaled to unit RMS norm, Z_m. The founding models'
    Z_m are put in one frame by generalised Procrustes analysis: starting from C = Z_first,
    repeat R_m = argmin_{RᵀR=I} ||Z_m R − C|| and C = mean_m(Z_m R_m) rescaled to unit RMS,
    until C stops moving. C ([n_fit, d_u], the consensus coordinates of the fit anchor rows) is
    then *the* unified space: the frame stays close to the first model's principal axes, and a
    model registered later is charted against C without refitting anyone else.

    Charts, by method: ``orthogonal``: encoder = [P_m, 0]/σ_m · R_m (a scaled isometry of the
    model's principal subspace), decoder its exact pseudo-inverse; ``learned``: ridge maps
    x -> C and C -> x with α chosen on validation rows, plus per-dimension scaling factors;
    ``hybrid``: ridge refinements shrunk toward the orthogonal chart (α = ∞ allowed).
    Rows in ``split_.holdout`` take no part in any fit; composed maps are measured on them.
    ``anchor_set`` names the anchor rows (kept with the space, so a service can tell whether a
    new model's activations pair with it).
    """

    def __init__(
        self,
        unified_dim: int = 128,
        *,
        method: Method = "orthogonal",
        holdout_fraction: float = 0.2,
        validation_fraction: float = 0.2,
        relative_alphas: Sequence[float] = RELATIVE_ALPHAS,
        tolerance: float = 1e-10,
        random_state: int = 0,
        anchor_set: str = "",
    ) -> None:
        self.unified_dim = unified_dim
        self.method = method
        self.holdout_fraction = holdout_fraction
        self.validation_fraction = validation_fraction
        self.relative_alphas = relative_alphas
        self.tolerance = tolerance
        self.random_state = random_state
        self.anchor_set = anchor_set

    def fit(
        self, activations: Mapping[str, npt.ArrayLike], *, groups: npt.ArrayLike | None = None
    ) -> Self:
        """Found the space from models' anchor activations {name: [n, d_m]} (same n rows)."""
        if self.method not in METHODS:
            raise InvalidRequest(f"unknown method {self.method!r}", details={})
        if not activations:
            raise InvalidRequest("a unified space needs at least one model", details={})
        arrays = {name: _rows(value, name) for name, value in activations.items()}
        counts = {name: a.shape[0] for name, a in arrays.items()}
        if len(set(counts.values())) != 1:
            raise DimensionMismatch(
                "every model must have activations on the same anchor rows",
                details={"rows": counts},
            )
        self.split_ = split_rows(
            next(iter(counts.values())),
            holdout_fraction=self.holdout_fraction,
            validation_fraction=self.validation_fraction,
            random_state=self.random_state,
            groups=groups,
        )
        fit = self.split_.fit
        coordinates = [_principal_coordinates(a[fit], self.unified_dim) for a in arrays.values()]
        self.reference_ = _generalised_procrustes(coordinates, self.tolerance)
        self.charts_: dict[str, ModelChart] = {}
        for name, array in arrays.items():
            self.register(name, array)
        return self

    def register(self, model: str, activations: npt.ArrayLike) -> ModelChart:
        """Chart a model against the existing unified coordinates (others are untouched)."""
        if not hasattr(self, "reference_"):
            raise InvalidRequest("fit the unified space before registering models", details={})
        x = _rows(activations, model)
        rows = self.reference_.shape[0] + self.split_.holdout.size
        if x.shape[0] != rows:
            raise DimensionMismatch(
                f"{model}: {x.shape[0]} anchor rows, the unified space has {rows}",
                details={"model": model, "rows": x.shape[0], "expected_rows": rows},
            )
        chart = _fit_chart(x, self.reference_, self.split_, self.method, self.relative_alphas)
        self.charts_[model] = chart
        return chart

    @property
    def models(self) -> list[str]:
        return list(getattr(self, "charts_", {}))

    def chart(self, model: str) -> ModelChart:
        """The model's chart; WMatrixNotFound when the model never registered."""
        charts = getattr(self, "charts_", {})
        if model not in charts:
            raise WMatrixNotFound(
                f"{model} is not registered in the unified space",
                details={"model": model, "registered": sorted(charts)},
            )
        chart: ModelChart = charts[model]
        return chart

    def encode(self, model: str, x: npt.ArrayLike) -> F64:
        """Model activations [.., d_m] -> unified coordinates [.., d_u]."""
        chart = self.chart(model)
        rows = np.asarray(x, dtype=np.float64)
        return np.asarray(((rows - chart.mean) @ chart.encoder) * chart.scaling)

    def w_matrix(self, source: str, target: str) -> WMatrix:
        """W(source -> target) = decode_target ∘ encode_source, measured on held-out anchors."""
        s, t = self.chart(source), self.chart(target)
        wmatrix = WMatrix.from_parts(
            method=self.method,
            source_mean=s.mean,
            encoder=s.encoder,
            core=np.eye(self.unified_dim),
            scaling=s.scaling,
            decoder=t.decoder,
            target_mean=t.mean,
        )
        wmatrix.quality_ = measure_quality(
            wmatrix.transform(s.holdout), t.holdout, random_state=self.random_state
        )
        return wmatrix

    # ------------------------------------------------------- serialised form (no I/O)

    def to_tensors(self) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
        """Reference, split and every chart as arrays, with the JSON settings beside them."""
        tensors: dict[str, npt.NDArray[Any]] = {
            "reference": self.reference_,
            "split/train": self.split_.train,
            "split/validation": self.split_.validation,
            "split/holdout": self.split_.holdout,
        }
        for name, chart in self.charts_.items():
            for part in _CHART_PARTS:
                tensors[f"chart/{name}/{part}"] = getattr(chart, part)
        meta = {
            "format": FORMAT,
            "unified_dim": self.unified_dim,
            "method": self.method,
            "models": list(self.charts_),
            "random_state": self.random_state,
            "anchor_set": self.anchor_set,
        }
        return tensors, meta

    @classmethod
    def from_tensors(
        cls, tensors: Mapping[str, npt.NDArray[Any]], meta: Mapping[str, Any], *, origin: str
    ) -> UnifiedSpace:
        """Rebuild a space from `to_tensors` output; `origin` names where it came from."""
        if meta.get("format", FORMAT) != FORMAT:
            raise InvalidRequest(f"{origin} is not a latentmas unified space", details={})
        space = cls(
            meta["unified_dim"],
            method=meta["method"],
            random_state=meta["random_state"],
            anchor_set=meta.get("anchor_set", ""),
        )
        space.reference_ = tensors["reference"]
        space.split_ = RowSplit(
            tensors["split/train"], tensors["split/validation"], tensors["split/holdout"]
        )
        space.charts_ = {
            name: ModelChart(*(tensors[f"chart/{name}/{part}"] for part in _CHART_PARTS))
            for name in meta["models"]
        }
        return space


_CHART_PARTS: Final = ("mean", "encoder", "scaling", "decoder", "holdout")


def _rows(value: npt.ArrayLike, name: str) -> F64:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2:
        raise DimensionMismatch(
            f"{name}: activations must be [n, d], got {array.shape}",
            details={"model": name, "shape": list(array.shape)},
        )
    if not np.isfinite(array).all():
        raise InvalidRequest(f"{name}: activations contain NaN or infinity", details={})
    return array


def _principal_coordinates(x: F64, unified_dim: int) -> F64:
    """[m, d] -> [m, d_u]: centered top principal components, unit RMS norm, zero-padded."""
    centered = x - x.mean(axis=0)
    basis = orthonormal_basis(centered, min(unified_dim, x.shape[1], x.shape[0] - 1))
    z = (
        pad_columns(centered @ basis, unified_dim)
        if basis.size
        else np.zeros((x.shape[0], unified_dim))
    )
    return z / _rms(z)


def _rms(rows: F64) -> float:
    value = float(np.sqrt(np.mean(np.sum(rows * rows, axis=1))))
    return value if value > 0.0 else 1.0


def _generalised_procrustes(coordinates: list[F64], tolerance: float) -> F64:
    """Consensus C of several [m, d_u] configurations under rotations (see UnifiedSpace)."""
    consensus = coordinates[0]
    for _ in range(GPA_ITERATIONS_MAX):
        aligned = [z @ procrustes(z, consensus) for z in coordinates]
        updated = np.mean(aligned, axis=0)
        updated = updated / _rms(updated)
        moved = float(np.linalg.norm(updated - consensus)) / math.sqrt(consensus.shape[0])
        consensus = updated
        if moved < tolerance:
            break
    return np.asarray(consensus)


def _fit_chart(
    x: F64, reference: F64, split: RowSplit, method: Method, relative_alphas: Sequence[float]
) -> ModelChart:
    """Encoder x -> reference and decoder reference -> x on the fit rows (see UnifiedSpace)."""
    fit = split.fit
    mean = x[fit].mean(axis=0)
    centered = x - mean
    unified_dim = reference.shape[1]
    basis = orthonormal_basis(centered[fit], min(unified_dim, x.shape[1], fit.size - 1))
    chart = pad_columns(basis, unified_dim) / _rms(centered[fit] @ basis)
    rotation = procrustes(centered[fit] @ chart, reference)
    encoder = chart @ rotation
    decoder = np.asarray(np.linalg.pinv(encoder), dtype=np.float64)
    scaling = np.ones(unified_dim)
    if method != "orthogonal":
        # Reference rows are indexed by position within split.fit (sorted train ∪ validation).
        unified = np.zeros((x.shape[0], unified_dim))
        unified[fit] = reference
        prior_encoder = np.zeros_like(encoder) if method == "learned" else encoder
        prior_decoder = np.zeros_like(decoder) if method == "learned" else decoder
        encoder, scaling = _ridge_toward(
            centered, unified, split, prior_encoder, relative_alphas=relative_alphas, method=method
        )
        decoder, _ = _ridge_toward(
            unified, centered, split, prior_decoder, relative_alphas=relative_alphas, method=method
        )
    return ModelChart(mean, encoder, scaling, decoder, x[split.holdout].copy())


def _ridge_toward(
    x: F64,
    y: F64,
    split: RowSplit,
    prior: F64,
    *,
    relative_alphas: Sequence[float],
    method: Method,
) -> tuple[F64, F64]:
    """argmin ||X W − Y||² + α||W − prior||², α chosen on validation (∞ = prior, for hybrid);
    returns (W refitted on the fit rows, per-dimension scaling factors from validation)."""
    train, validation, fit = split.train, split.validation, split.fit
    choice = choose_ridge(
        (x[train], y[train]),
        (x[validation], y[validation]),
        prior=prior,
        relative_alphas=relative_alphas,
        allow_prior=method == "hybrid",
    )
    scaling = validated_scaling(x[validation] @ choice.weight, y[validation])
    return fit_ridge(x[fit], y[fit], choice.relative_alpha, prior=prior), scaling
