"""Array fields: numpy arrays checked for rank and dtype; nested lists only at the JSON edge."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, TypeAlias

import numpy as np
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from latentmas_mesh.protocol.dtypes import DTYPES, FLOAT_DTYPE_NAMES, KV_DTYPE_NAMES, dtype_name
from latentmas_mesh.protocol.json_edge import (
    array_to_nested,
    is_json_edge,
    json_float_dtype,
    nested_to_array,
)

NDArray: TypeAlias = np.ndarray[Any, np.dtype[Any]]


@dataclass(frozen=True)
class ArraySpec:
    """Pydantic metadata for an array field: allowed ranks and wire dtype names.

    On the binary path the value must already be a numpy array (the codec builds it from a frame);
    at the JSON edge nested lists are converted to the edge's float dtype, or to int64 when
    `json_integers` is set and every number is a JSON integer, and checked the same way.
    JSON output merges the last `json_merge_trailing` axes.
    """

    ndims: tuple[int, ...]
    dtypes: frozenset[str]
    json_integers: bool = False
    json_merge_trailing: int = 1

    def __get_pydantic_core_schema__(
        self, source: object, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            self.validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                self.to_nested, when_used="json"
            ),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        depth = max(self.ndims) - self.json_merge_trailing + 1
        node: dict[str, Any] = {"type": "number"}
        for _ in range(depth):
            node = {"type": "array", "items": node}
        return node

    def validate(self, value: object, info: ValidationInfo) -> NDArray:
        """Return `value` unchanged (no copy) when it is an allowed array; ValueError otherwise."""
        if isinstance(value, list) and is_json_edge(info.context):
            value = nested_to_array(
                value,
                ndims=self.ndims,
                dtype_name=json_float_dtype(info.context),
                integer_dtype_name="int64" if self.json_integers else None,
            )
        if not isinstance(value, np.ndarray):
            msg = f"expected a numpy array, got {type(value).__name__}"
            raise ValueError(msg)  # a TypeError would escape pydantic; ValueError is reported
        if value.ndim not in self.ndims:
            msg = f"expected an array of rank {sorted(self.ndims)}, got rank {value.ndim}"
            raise ValueError(msg)
        wire_name = dtype_name(value.dtype)
        if wire_name not in self.dtypes:
            msg = f"expected dtype in {sorted(self.dtypes)}, got {value.dtype}"
            raise ValueError(msg)
        return value

    def to_nested(self, value: NDArray) -> Any:  # noqa: ANN401  # nested lists of any depth
        """JSON form of the array: nested lists of Python numbers."""
        return array_to_nested(value, merge_trailing=self.json_merge_trailing)


_FLOATS = frozenset(FLOAT_DTYPE_NAMES)
_INTS = frozenset({"int64", "int32", "int16", "int8", "uint8"})

# Section 3.5.2 keys / values in the canonical layout [layers, kv_heads, seq, head_dim]; JSON
# shows them as [layers][heads][seq × head_dim] as the spec writes.
KVTensor: TypeAlias = Annotated[
    NDArray, ArraySpec(ndims=(4,), dtypes=KV_DTYPE_NAMES, json_merge_trailing=2)
]
# attentionMask?: number[][]  -> [rows, seq]; 1/0 or True/False, or additive float masks.
AttentionMask: TypeAlias = Annotated[
    NDArray,
    ArraySpec(ndims=(2,), dtypes=_FLOATS | _INTS | {"bool"}, json_integers=True),
]
# positionEncodings?: number[] -> [seq] position ids (ints) or positions as floats.
PositionArray: TypeAlias = Annotated[
    NDArray, ArraySpec(ndims=(1,), dtypes=_INTS | _FLOATS, json_integers=True)
]
FloatVector: TypeAlias = Annotated[NDArray, ArraySpec(ndims=(1,), dtypes=_FLOATS)]
FloatMatrix: TypeAlias = Annotated[NDArray, ArraySpec(ndims=(2,), dtypes=_FLOATS)]

assert set(DTYPES) >= _FLOATS | _INTS | {"bool"}

__all__ = [
    "ArraySpec",
    "AttentionMask",
    "FloatMatrix",
    "FloatVector",
    "KVTensor",
    "NDArray",
    "PositionArray",
]
