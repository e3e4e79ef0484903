"""What an exchange call accepts as a cache, turned into the protocol's KVCache."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from latentmas_mesh.errors import InvalidRequest
from latentmas_mesh.protocol.base import validate_message
from latentmas_mesh.protocol.kv import KVCache

if TYPE_CHECKING:
    from transformers import DynamicCache

KVPair: TypeAlias = tuple["np.ndarray[Any, Any]", "np.ndarray[Any, Any]"]
KVInput: TypeAlias = "KVCache | KVPair | DynamicCache"
"""A KVCache message; (keys, values) numpy arrays [layers, kv_heads, seq, head_dim] of one
dtype (float32, float16 or bfloat16), positions 0..seq-1; or a transformers DynamicCache of one
sequence (the `hf` extra)."""


def as_kv_cache(kv: KVInput, source: str) -> KVCache:
    """`kv` as the KVCache of model `source`; InvalidRequest for anything else.

    A KVCache must already name `source` (any case): a cache claiming another model is the
    caller's mistake, not something to relabel. A DynamicCache is converted by the Hugging Face
    integration, imported only here, so the SDK runs without the `hf` extra.
    """
    if isinstance(kv, KVCache):
        if kv.source_model.strip().casefold() != source.strip().casefold():
            raise InvalidRequest(
                f"kv_cache.source_model is {kv.source_model!r} but the call names {source!r}",
                details={"kv_cache_source_model": kv.source_model, "source": source},
            )
        return kv
    if isinstance(kv, tuple | list) and len(kv) == 2:
        keys, values = kv
        if isinstance(keys, np.ndarray) and isinstance(values, np.ndarray):
            return _from_arrays(keys, values, source)
    if type(kv).__module__.split(".")[0] == "transformers":
        return _from_transformers(kv, source)
    raise InvalidRequest(
        "kv_cache must be a KVCache, a (keys, values) pair of numpy arrays [layers, kv_heads,"
        f" seq, head_dim], or a transformers DynamicCache; got {type(kv).__name__}",
        details={"type": type(kv).__name__},
    )


def _from_arrays(keys: np.ndarray[Any, Any], values: np.ndarray[Any, Any], source: str) -> KVCache:
    """The pair as a KVCache at positions 0..seq-1, validated like any message (no copy)."""
    seq = int(keys.shape[2]) if keys.ndim == 4 else 0
    body = {
        "source_model": source,
        "keys": keys,
        "values": values,
        "metadata": {
            "sequence_length": seq,
            "context_description": "",
            "token_count": seq,
            "generated_at": dt.datetime.now(dt.UTC),
        },
    }
    return validate_message(KVCache, body)


def _from_transformers(kv: object, source: str) -> KVCache:
    try:
        from transformers import DynamicCache

        from latentmas_mesh.integrations.hf import kv_cache_from_dynamic
    except ImportError as missing:  # pragma: no cover - a transformers object without torch
        msg = "a transformers cache needs the `hf` extra: pip install 'latentmas-mesh[hf]'"
        raise InvalidRequest(msg, details={"missing": str(missing.name)}) from missing
    if not isinstance(kv, DynamicCache):
        msg = f"of transformers caches only a DynamicCache is taken, not {type(kv).__name__}"
        raise InvalidRequest(msg, details={"type": type(kv).__name__})
    return kv_cache_from_dynamic(kv, source)


__all__ = ["KVInput", "KVPair", "as_kv_cache"]
