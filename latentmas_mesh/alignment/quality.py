"""Section 4.3.4's quality metrics on held-out rows, thresholds, and a cycle-consistency check."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from latentmas_mesh.alignment._types import F64
from latentmas_mesh.errors import DimensionMismatch, QualityBelowThreshold

BOOTSTRAP_RESAMPLES = 1000
CONFIDENCE_LEVEL = 0.95
_EPS = 1e-12


@dataclass(frozen=True)
class AlignmentQuality:
    """The four metrics of section 4.3.4, each measured on rows the map never saw.

    cosine_similarity: mean over rows of cos(ŷ_i, y_i), on the raw vectors a model consumes.
    euclidean_distance: relative error ||Ŷ − Y||_F / ||Y||_F over all held-out rows (a pooled
        ratio, so a near-zero row cannot blow it up).
    information_retention: explained variance R² = 1 − Σ||ŷ_i − y_i||² / Σ||y_i − ȳ||² of the
        target (ȳ: held-out mean); 1 is perfect, 0 is no better than predicting the mean.
    confidence: lower end of the 95% percentile-bootstrap interval of the mean cosine
        (resampling held-out rows): with 95% confidence the map's mean cosine on fresh rows
        from the same distribution is at least this.
    heldout_rows: how many rows these figures were measured on.
    """

    cosine_similarity: float
    euclidean_distance: float
    information_retention: float
    confidence: float
    heldout_rows: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class QualityThresholds:
    """A caller's minimum quality; the defaults are section 4.3.4's targets."""

    cosine_similarity_min: float = 0.90
    euclidean_distance_max: float = 0.15
    information_retention_min: float = 0.92
    confidence_min: float = 0.85

    def failures(self, quality: AlignmentQuality) -> list[str]:
        """Names of the metrics that miss their threshold (empty when all pass)."""
        missed = []
        if not quality.cosine_similarity > self.cosine_similarity_min:
            missed.append("cosine_similarity")
        if not quality.euclidean_distance < self.euclidean_distance_max:
            missed.append("euclidean_distance")
        if not quality.information_retention > self.information_retention_min:
            missed.append("information_retention")
        if not quality.confidence > self.confidence_min:
            missed.append("confidence")
        return missed


def row_cosines(predicted: F64, target: F64) -> F64:
    """cos(ŷ_i, y_i) for each row of [n, d] arrays; a zero row against anything scores 0."""
    dot = np.sum(predicted * target, axis=-1)
    norms = np.linalg.norm(predicted, axis=-1) * np.linalg.norm(target, axis=-1)
    return np.asarray(np.where(norms > _EPS, dot / np.maximum(norms, _EPS), 0.0))


def bootstrap_lower_bound(
    values: F64, *, resamples: int = BOOTSTRAP_RESAMPLES, random_state: int = 0
) -> float:
    """Lower end of the two-sided 95% percentile-bootstrap interval of mean(values)."""
    rng = np.random.default_rng(random_state)
    draws = rng.integers(0, values.size, size=(resamples, values.size))
    means = values[draws].mean(axis=1)
    return float(np.quantile(means, (1.0 - CONFIDENCE_LEVEL) / 2.0))


def measure_quality(
    predicted: npt.ArrayLike,
    target: npt.ArrayLike,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    random_state: int = 0,
) -> AlignmentQuality:
    """The four metrics of ŷ = predicted against y = target, both [n, d] (see AlignmentQuality)."""
    y_hat = np.asarray(predicted, dtype=np.float64).reshape(-1, np.shape(predicted)[-1])
    y = np.asarray(target, dtype=np.float64).reshape(-1, np.shape(target)[-1])
    if y_hat.shape != y.shape or y.shape[0] < 1:
        raise DimensionMismatch(
            f"predicted {y_hat.shape} and target {y.shape} must be equal non-empty [n, d]",
            details={"predicted": list(y_hat.shape), "target": list(y.shape)},
        )
    cosines = row_cosines(y_hat, y)
    residual = float(np.sum((y_hat - y) ** 2))
    spread = float(np.sum((y - y.mean(axis=0)) ** 2))
    return AlignmentQuality(
        cosine_similarity=float(cosines.mean()),
        euclidean_distance=float(np.sqrt(residual / max(float(np.sum(y * y)), _EPS))),
        information_retention=1.0 - residual / max(spread, _EPS),
        confidence=bootstrap_lower_bound(cosines, resamples=resamples, random_state=random_state),
        heldout_rows=int(y.shape[0]),
    )


def check_quality(quality: AlignmentQuality, thresholds: QualityThresholds, *, method: str) -> None:
    """Raise QualityBelowThreshold, with the measured figures, if any metric misses its threshold.

    Appendix C.2's resolution for this code is "Try different method"; the details name the
    method that was measured so the caller can pick another.
    """
    missed = thresholds.failures(quality)
    if missed:
        raise QualityBelowThreshold(
            f"alignment quality of method {method!r} misses thresholds: {', '.join(missed)}",
            details={
                "method": method,
                "failed": missed,
                "measured": quality.to_dict(),
                "thresholds": asdict(thresholds),
            },
        )


class VectorMap(Protocol):
    """Anything with `transform(x)`: [..., d_in] -> [..., d_out]."""

    def transform(self, x: npt.ArrayLike) -> F64: ...


@dataclass(frozen=True)
class CycleConsistency:
    """x -> W(s->t) -> W(t->s) -> x̂ compared with x: needs no ground truth for the target.

    A map pair that loses or bends information shows it here; a good cycle is necessary, not
    sufficient, for a good forward map (a map could collapse onto a subspace both ways).
    """

    cosine_similarity: float
    euclidean_distance: float
    rows: int


def cycle_consistency(
    forward: VectorMap, backward: VectorMap, x: npt.ArrayLike
) -> CycleConsistency:
    """Mean cosine and relative distance between x [n, d_s] and backward(forward(x))."""
    rows = np.asarray(x, dtype=np.float64)
    rows = rows.reshape(-1, rows.shape[-1])
    return cycle_consistency_of_mapped(backward, rows, forward.transform(rows))


def cycle_consistency_of_mapped(
    backward: VectorMap, x: npt.ArrayLike, mapped: npt.ArrayLike
) -> CycleConsistency:
    """`cycle_consistency` when forward(x) is already at hand (`mapped`, [n, d_t]): the forward
    map is not applied again, so the check costs one map of the rows, not two."""
    rows = np.asarray(x, dtype=np.float64)
    rows = rows.reshape(-1, rows.shape[-1])
    forward_rows = np.asarray(mapped, dtype=np.float64)
    forward_rows = forward_rows.reshape(-1, forward_rows.shape[-1])
    if forward_rows.shape[0] != rows.shape[0]:
        raise DimensionMismatch(
            f"{forward_rows.shape[0]} mapped rows for {rows.shape[0]} source rows",
            details={"mapped": list(forward_rows.shape), "source": list(rows.shape)},
        )
    round_trip = backward.transform(forward_rows)
    if round_trip.shape != rows.shape:
        raise DimensionMismatch(
            f"the backward map returns {round_trip.shape}, not the source shape {rows.shape}",
            details={"round_trip": list(round_trip.shape), "source": list(rows.shape)},
        )
    distance = np.linalg.norm(round_trip - rows) / max(float(np.linalg.norm(rows)), _EPS)
    return CycleConsistency(
        cosine_similarity=float(row_cosines(round_trip, rows).mean()),
        euclidean_distance=float(distance),
        rows=int(rows.shape[0]),
    )


def retention_ratio(none: F64, own: F64, aligned: F64) -> float:
    """What an exchanged cache retains of the receiver's own reading, as a ratio of means:
    (mean NLL_none − mean NLL_aligned) / (mean NLL_none − mean NLL_own) over passages.

    1 is as good as the receiver's own prefill of the text, 0 as good as no context at all.
    """
    gain = float(np.mean(none) - np.mean(own))
    return float(np.mean(none) - np.mean(aligned)) / gain if abs(gain) > _EPS else 0.0


def retention_interval(
    none: F64,
    own: F64,
    aligned: F64,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    random_state: int = 0,
) -> tuple[float, float]:
    """The two-sided 95% percentile-bootstrap interval of `retention_ratio`, resampling
    passages (computed once when maps are measured, never per request)."""
    rng = np.random.default_rng(random_state)
    count = none.shape[0]
    draws = [
        retention_ratio(none[index], own[index], aligned[index])
        for index in (rng.integers(0, count, count) for _ in range(resamples))
    ]
    low, high = np.quantile(draws, [(1 - CONFIDENCE_LEVEL) / 2, (1 + CONFIDENCE_LEVEL) / 2])
    return float(low), float(high)
