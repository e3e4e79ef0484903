"""The alignment engine: W-matrices, the unified space, KV-cache alignment and its kernels."""

from __future__ import annotations

from latentmas_mesh.alignment._types import METHODS, Method
from latentmas_mesh.alignment.quality import (
    AlignmentQuality,
    CycleConsistency,
    QualityThresholds,
    check_quality,
    cycle_consistency,
    measure_quality,
)
from latentmas_mesh.alignment.wmatrix import NotFittedError, WMatrix, fit_w_matrix

__all__ = [
    "METHODS",
    "AlignmentQuality",
    "CycleConsistency",
    "Method",
    "NotFittedError",
    "QualityThresholds",
    "WMatrix",
    "check_quality",
    "cycle_consistency",
    "fit_w_matrix",
    "measure_quality",
]
