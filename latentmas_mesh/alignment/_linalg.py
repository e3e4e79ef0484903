"""Closed-form pieces of the W-matrix estimators: bases, Procrustes, scaling (ridge: ridge.py)."""

from __future__ import annotations

import numpy as np

from latentmas_mesh.alignment._types import F64

# A per-dimension scaling factor outside [0, SCALING_MAX] means that dimension is noise.
SCALING_MAX = 2.0


def orthonormal_basis(centered: F64, rank: int) -> F64:
    """Orthonormal basis of the top-`rank` principal directions of `centered` rows.

    centered: [n, d] rows with their mean removed. Returns B: [d, rank], BᵀB = I.
    The principal directions are the leading right singular vectors v_1..v_rank of X; they are
    passed through QR (Gram-Schmidt) once more so BᵀB = I holds to machine precision, with the
    sign of each column fixed so the result does not depend on the LAPACK build.
    """
    if rank < 1:
        return np.zeros((centered.shape[1], 0))
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    q, r = np.linalg.qr(vt[:rank].T)
    signs = np.where(np.diag(r) < 0, -1.0, 1.0)
    return np.asarray(q * signs, dtype=np.float64)


def pad_columns(matrix: F64, width: int) -> F64:
    """[d, k] -> [d, width] with zero columns appended (k <= width): a chart into R^width."""
    padded = np.zeros((matrix.shape[0], width))
    padded[:, : matrix.shape[1]] = matrix
    return padded


def procrustes(source: F64, target: F64) -> F64:
    """Orthogonal Procrustes: R = argmin_{RᵀR = I} ||source·R − target||_F.

    source, target: [n, k]. With U Σ Vᵀ = svd(sourceᵀ·target), R = U·Vᵀ: [k, k] (Schönemann 1966).
    """
    u, _, vt = np.linalg.svd(source.T @ target)
    return np.asarray(u @ vt, dtype=np.float64)


def scaling_factors(predicted: F64, target: F64) -> F64:
    """Per-dimension least-squares scale s_j = ⟨ŷ_j, y_j⟩ / ⟨ŷ_j, ŷ_j⟩, clipped to [0, 2].

    predicted, target: [n, k] (centered). A dimension the map never predicts keeps s_j = 1.
    These are the spec's "lightweight scaling parameters" (4.3.2): fitted on validation rows they
    undo the shrinkage ridge leaves in each output dimension.
    """
    energy = np.sum(predicted * predicted, axis=0)
    overlap = np.sum(predicted * target, axis=0)
    tiny = energy <= 1e-12 * max(float(energy.max(initial=0.0)), 1e-300)
    scale = np.where(tiny, 1.0, overlap / np.where(tiny, 1.0, energy))
    return np.asarray(np.clip(scale, 0.0, SCALING_MAX), dtype=np.float64)


def validated_scaling(predicted: F64, target: F64) -> F64:
    """`scaling_factors` of the validation rows, kept only where they earn their place.

    Factors fitted on few validation rows are noisy and can undo more than shrinkage: they are
    cross-fitted in two halves (fitted on one, scored on the other) and used only when that
    lowers the squared error against leaving every dimension unscaled.
    """
    rows = predicted.shape[0]
    if rows < 4:
        return np.ones(predicted.shape[1])
    halves = (slice(0, rows // 2), slice(rows // 2, rows))
    scaled = unscaled = 0.0
    for fit, score in (halves, halves[::-1]):
        factors = scaling_factors(predicted[fit], target[fit])
        scaled += float(np.sum((predicted[score] * factors - target[score]) ** 2))
        unscaled += float(np.sum((predicted[score] - target[score]) ** 2))
    if scaled < unscaled:
        return scaling_factors(predicted, target)
    return np.ones(predicted.shape[1])
