"""The alignment engine: W-matrices, the unified space, KV-cache alignment and its kernels."""

from __future__ import annotations

from latentmas_mesh.alignment._types import METHODS, Allocator, Method
from latentmas_mesh.alignment.geometry import geometry_from_registry
from latentmas_mesh.alignment.hub import ModelChart, UnifiedSpace
from latentmas_mesh.alignment.kernels import (
    HeadMaps,
    align_heads,
    align_heads_reference,
    warm_up,
)
from latentmas_mesh.alignment.kv import (
    KVAligner,
    KVGeometry,
    KVMapping,
    mean_quality,
    proportional_head_map,
    proportional_layer_map,
)
from latentmas_mesh.alignment.pairing import PairingMode, TokenPairs, pair_tokens
from latentmas_mesh.alignment.quality import (
    AlignmentQuality,
    CycleConsistency,
    QualityThresholds,
    check_quality,
    cycle_consistency,
    measure_quality,
)
from latentmas_mesh.alignment.rope import RotarySpec, RotaryTables, apply_rotary, rotary_tables
from latentmas_mesh.alignment.tokens import overlap_matrix, pooling_weights
from latentmas_mesh.alignment.wmatrix import NotFittedError, WMatrix, fit_w_matrix

__all__ = [
    "METHODS",
    "AlignmentQuality",
    "Allocator",
    "CycleConsistency",
    "HeadMaps",
    "KVAligner",
    "KVGeometry",
    "KVMapping",
    "Method",
    "ModelChart",
    "NotFittedError",
    "PairingMode",
    "QualityThresholds",
    "RotarySpec",
    "RotaryTables",
    "TokenPairs",
    "UnifiedSpace",
    "WMatrix",
    "align_heads",
    "align_heads_reference",
    "apply_rotary",
    "check_quality",
    "cycle_consistency",
    "fit_w_matrix",
    "geometry_from_registry",
    "mean_quality",
    "measure_quality",
    "overlap_matrix",
    "pair_tokens",
    "pooling_weights",
    "proportional_head_map",
    "proportional_layer_map",
    "rotary_tables",
    "warm_up",
]
