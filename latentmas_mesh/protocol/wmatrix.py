"""Section 4.3.3's W-matrix standard and Appendix C.1's generate request and response."""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from latentmas_mesh.protocol.arrays import FloatMatrix, FloatVector
from latentmas_mesh.protocol.base import (
    EnvelopeV2,
    ModelName,
    WireInt,
    WireModel,
    WireStr,
    register_message,
)
from latentmas_mesh.protocol.quality import AlignmentQuality, WMatrixQualityMetrics

UNIFIED_DIMENSION_MAX: Final = 1 << 16
STORED_VERSIONS_MAX: Final = 256
"""Versions of one kind one listing names at most (the newest ones)."""
# "1.0.0" in the spec's examples: three dot-separated decimal numbers.
VERSION_PATTERN: Final = r"^[0-9]{1,6}\.[0-9]{1,6}\.[0-9]{1,6}$"

WMatrixMethod = Literal["orthogonal", "learned", "hybrid"]  # section 4.3.2
WMatrixVersion = str


class TransformationRules(WireModel):
    """Section 4.3.3 `transformationRules`; each part is optional, as the spec writes it.

    orthogonal_matrix: [d_in, d_out]; shared_parameters and scaling_factors: [n].
    """

    orthogonal_matrix: FloatMatrix | None = None
    shared_parameters: FloatVector | None = None
    scaling_factors: FloatVector | None = None


@register_message("w_matrix_standard")
class WMatrixStandard(WireModel):
    """Section 4.3.3: one versioned W-matrix, W: R^d_s -> R^d_u -> R^d_t."""

    version: WireStr = Field(pattern=VERSION_PATTERN)
    source_model: ModelName
    target_model: ModelName
    unified_dimension: WireInt = Field(ge=1, le=UNIFIED_DIMENSION_MAX)
    method: WMatrixMethod
    transformation_rules: TransformationRules
    quality_metrics: WMatrixQualityMetrics


@register_message("generate_w_matrix_request")
class GenerateWMatrixRequest(EnvelopeV2):
    """Appendix C.1 `POST /api/latentmas/w-matrix/generate` body."""

    source_model: ModelName
    target_model: ModelName
    method: WMatrixMethod


@register_message("generate_w_matrix_response")
class GenerateWMatrixResponse(WireModel):
    """Appendix C.1 generate response: the new version and its measured quality."""

    version: WireStr = Field(pattern=VERSION_PATTERN)
    unified_dimension: WireInt = Field(ge=1, le=UNIFIED_DIMENSION_MAX)
    quality_metrics: WMatrixQualityMetrics


class StoredWMatrix(WireModel):
    """One stored W-matrix version (vectors and hidden states) and its held-out quality."""

    version: WireStr = Field(pattern=VERSION_PATTERN)
    method: WMatrixMethod
    unified_dimension: WireInt = Field(ge=1, le=UNIFIED_DIMENSION_MAX)
    quality_metrics: WMatrixQualityMetrics


class StoredKVMaps(WireModel):
    """One stored version of a pair's KV-cache maps (what align and exchange apply) and what
    exchanges through it retained on the receiver, on passages held out from its fit (None for
    maps stored without that measurement)."""

    version: WireStr = Field(pattern=VERSION_PATTERN)
    alignment_quality: AlignmentQuality | None


@register_message("w_matrix_versions_request")
class WMatrixVersionsRequest(WireModel):
    """`GET /api/latentmas/w-matrix/{source}/{target}`: the pair's stored versions."""

    source_model: ModelName
    target_model: ModelName


@register_message("w_matrix_versions_reply")
class WMatrixVersionsReply(WireModel):
    """The pair's stored maps, oldest version first (canonical model names): W-matrices for
    vectors, KV maps for caches; both empty when nothing is stored for the pair."""

    source_model: ModelName
    target_model: ModelName
    w_matrices: tuple[StoredWMatrix, ...] = Field(max_length=STORED_VERSIONS_MAX)
    kv_maps: tuple[StoredKVMaps, ...] = Field(max_length=STORED_VERSIONS_MAX)


__all__ = [
    "STORED_VERSIONS_MAX",
    "VERSION_PATTERN",
    "GenerateWMatrixRequest",
    "GenerateWMatrixResponse",
    "StoredKVMaps",
    "StoredWMatrix",
    "TransformationRules",
    "WMatrixMethod",
    "WMatrixStandard",
    "WMatrixVersionsReply",
    "WMatrixVersionsRequest",
]
