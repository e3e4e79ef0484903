"""Every LatentMAS wire message as one frozen pydantic model, registered by stable type name."""

from __future__ import annotations

from types import ModuleType
from typing import Final

from latentmas_mesh.protocol import (
    align,
    anchors,
    errors,
    kv,
    ledger,
    market,
    quality,
    registry,
    v1,
    wmatrix,
)
from latentmas_mesh.protocol.align import (
    AlignKVCacheRequest,
    AlignKVCacheResponse,
    ExchangeMemoryRequest,
    ExchangeMemoryResponse,
)
from latentmas_mesh.protocol.arrays import (
    ArraySpec,
    AttentionMask,
    FloatMatrix,
    FloatVector,
    KVTensor,
    NDArray,
    PositionArray,
)
from latentmas_mesh.protocol.base import (
    MESSAGE_TYPES,
    EnvelopeV1,
    EnvelopeV2,
    ModelName,
    WireDatetime,
    WireFloat,
    WireInt,
    WireModel,
    WireStr,
    register_message,
    type_name_of,
    validate_message,
)
from latentmas_mesh.protocol.dtypes import DTYPES, FLOAT_DTYPE_NAMES, KV_DTYPE_NAMES, dtype_name
from latentmas_mesh.protocol.errors import ErrorBody
from latentmas_mesh.protocol.kv import KVCache, KVCacheMetadata
from latentmas_mesh.protocol.quality import AlignmentQuality, WMatrixQualityMetrics
from latentmas_mesh.protocol.v1 import AlignVectorRequest, AlignVectorResponse
from latentmas_mesh.protocol.wmatrix import (
    GenerateWMatrixRequest,
    GenerateWMatrixResponse,
    TransformationRules,
    WMatrixMethod,
    WMatrixStandard,
)

MESSAGE_MODULES: Final[tuple[ModuleType, ...]] = (
    align, anchors, errors, kv, ledger, market, quality, registry, v1, wmatrix
)  # fmt: skip
"""Every module whose @register_message models the codec decodes: importing this package
registers them all. A new area adds `protocol/<area>.py` and names it here (a test checks that
no module with messages is missing)."""


__all__ = [
    "DTYPES",
    "FLOAT_DTYPE_NAMES",
    "KV_DTYPE_NAMES",
    "MESSAGE_MODULES",
    "MESSAGE_TYPES",
    "AlignKVCacheRequest",
    "AlignKVCacheResponse",
    "AlignVectorRequest",
    "AlignVectorResponse",
    "AlignmentQuality",
    "ArraySpec",
    "AttentionMask",
    "EnvelopeV1",
    "EnvelopeV2",
    "ErrorBody",
    "ExchangeMemoryRequest",
    "ExchangeMemoryResponse",
    "FloatMatrix",
    "FloatVector",
    "GenerateWMatrixRequest",
    "GenerateWMatrixResponse",
    "KVCache",
    "KVCacheMetadata",
    "KVTensor",
    "ModelName",
    "NDArray",
    "PositionArray",
    "TransformationRules",
    "WMatrixMethod",
    "WMatrixQualityMetrics",
    "WMatrixStandard",
    "WireDatetime",
    "WireFloat",
    "WireInt",
    "WireModel",
    "WireStr",
    "dtype_name",
    "register_message",
    "type_name_of",
    "validate_message",
]
