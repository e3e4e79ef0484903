"""Section 3.5.2: the KV cache, a transformer's attention working memory, as one message."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import Field, ValidationInfo, model_validator

from latentmas_mesh.protocol.arrays import AttentionMask, KVTensor, NDArray, PositionArray
from latentmas_mesh.protocol.base import (
    ModelName,
    WireDatetime,
    WireInt,
    WireModel,
    WireStr,
    register_message,
)
from latentmas_mesh.protocol.dtypes import dtype_name
from latentmas_mesh.protocol.json_edge import is_json_edge, json_float_dtype, nested_to_array

CONTEXT_DESCRIPTION_CHARS_MAX: Final = 16_384
SEQUENCE_LENGTH_MAX: Final = 1 << 24  # 16M tokens: beyond any published context window
_KV_NAMES: Final = ("keys", "values")


class KVCacheMetadata(WireModel):
    """metadata of section 3.5.2; `sequence_length` must equal the seq axis of keys and values."""

    sequence_length: WireInt = Field(ge=1, le=SEQUENCE_LENGTH_MAX)
    context_description: WireStr = Field(max_length=CONTEXT_DESCRIPTION_CHARS_MAX)
    token_count: WireInt = Field(ge=0, le=SEQUENCE_LENGTH_MAX)
    generated_at: WireDatetime


@register_message("kv_cache")
class KVCache(WireModel):
    """A model's KV cache (section 3.5.2) in the canonical layout.

    keys:   [layers, kv_heads, seq, head_dim]   float32 / float16 / bfloat16, RoPE already applied
    values: [layers, kv_heads, seq, value_dim]  same dtype, same layers / kv_heads / seq
    attention_mask: [rows, seq], optional;  position_encodings: [seq], optional.
    value_dim may differ from head_dim (some architectures use different key and value widths).
    """

    source_model: ModelName
    keys: KVTensor
    values: KVTensor
    attention_mask: AttentionMask | None = None
    position_encodings: PositionArray | None = None
    metadata: KVCacheMetadata

    @model_validator(mode="before")
    @classmethod
    def _accept_spec_nested_lists(cls, data: object, info: ValidationInfo) -> object:
        """At the JSON edge, keys/values arrive as [layers][heads][seq × dim] and are reshaped."""
        if not is_json_edge(info.context) or not isinstance(data, Mapping):
            return data
        sequence_length = _sequence_length_of(data.get("metadata"))
        converted = dict(data)
        for name in _KV_NAMES:
            nested = data.get(name)
            if isinstance(nested, list):
                converted[name] = _kv_from_nested(
                    nested, sequence_length, json_float_dtype(info.context), name
                )
        return converted

    @model_validator(mode="after")
    def _check_shapes(self) -> KVCache:
        """keys and values agree with each other and with metadata (section 3.5.2)."""
        layers, heads, seq, head_dim = self.keys.shape
        if min(layers, heads, seq, head_dim) < 1:
            msg = f"keys shape {self.keys.shape} has an empty axis; every axis must be >= 1"
            raise ValueError(msg)
        if self.values.shape[:3] != self.keys.shape[:3] or self.values.shape[3] < 1:
            msg = (
                f"values shape {self.values.shape} disagrees with keys shape {self.keys.shape} "
                "on [layers, kv_heads, seq] or has an empty value axis"
            )
            raise ValueError(msg)
        if dtype_name(self.values.dtype) != dtype_name(self.keys.dtype):
            msg = f"values dtype {self.values.dtype} differs from keys dtype {self.keys.dtype}"
            raise ValueError(msg)
        if seq != self.metadata.sequence_length:
            msg = f"metadata.sequence_length {self.metadata.sequence_length} != seq axis {seq}"
            raise ValueError(msg)
        if self.attention_mask is not None and self.attention_mask.shape[1] != seq:
            msg = f"attention_mask shape {self.attention_mask.shape} must be [rows, {seq}]"
            raise ValueError(msg)
        if self.position_encodings is not None and self.position_encodings.shape[0] != seq:
            msg = f"position_encodings shape {self.position_encodings.shape} must be [{seq}]"
            raise ValueError(msg)
        return self

    @property
    def num_layers(self) -> int:
        return int(self.keys.shape[0])

    @property
    def num_kv_heads(self) -> int:
        return int(self.keys.shape[1])

    @property
    def head_dim(self) -> int:
        return int(self.keys.shape[3])

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays together: what the codec puts in frames."""
        arrays = (self.keys, self.values, self.attention_mask, self.position_encodings)
        return sum(int(a.nbytes) for a in arrays if a is not None)


def _sequence_length_of(metadata: object) -> int | None:
    """metadata.sequence_length (or sequenceLength) if it is a positive int, else None."""
    if not isinstance(metadata, Mapping):
        return None
    value = metadata.get("sequence_length", metadata.get("sequenceLength"))
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    return None


def _kv_from_nested(
    nested: list[Any], sequence_length: int | None, dtype: str, name: str
) -> NDArray:
    """Spec form [layers][heads][seq × dim], or [layers][heads][seq][dim], to a 4-D array."""
    array = nested_to_array(nested, ndims=(3, 4), dtype_name=dtype, what=name)
    if array.ndim == 4:
        return array
    layers, heads, flat = array.shape
    if sequence_length is None:
        msg = f"{name} in [layers][heads][seq × dim] form needs metadata.sequence_length"
        raise ValueError(msg)
    if flat == 0 or flat % sequence_length:
        msg = f"{name} rows of {flat} numbers do not split into {sequence_length} positions"
        raise ValueError(msg)
    return array.reshape(layers, heads, sequence_length, flat // sequence_length)


__all__ = ["CONTEXT_DESCRIPTION_CHARS_MAX", "KVCache", "KVCacheMetadata"]
