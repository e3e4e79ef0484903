"""Every LatentMAS wire message as one frozen pydantic model, registered by stable type name."""

from __future__ import annotations

import importlib
import pkgutil

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


def _register_all_message_modules() -> None:
    """Import every module of this package, so each one's @register_message runs.

    A new area adds `protocol/<area>.py` with its models and needs no edit here; the codec can
    then decode its messages in any process that imported `latentmas_mesh.protocol`.
    """
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")


_register_all_message_modules()

__all__ = [
    "DTYPES",
    "FLOAT_DTYPE_NAMES",
    "KV_DTYPE_NAMES",
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
