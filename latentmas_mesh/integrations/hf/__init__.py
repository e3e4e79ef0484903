"""Hugging Face transformers integration (extra `hf`): real models, cache export and import."""

from __future__ import annotations

from latentmas_mesh.artifacts.activations import PassageActivations, read_anchor_activations
from latentmas_mesh.integrations.hf._activations import (
    export_anchor_activations,
    passage_activations,
)
from latentmas_mesh.integrations.hf._exchange import Exchanged, align_kv_cache, exchange_context
from latentmas_mesh.integrations.hf._kv import (
    CONTEXT_TOKENS_MAX,
    NEW_TOKENS_MAX,
    ContextTokens,
    continuation_logits,
    continuation_nll,
    extract_kv_cache,
    greedy_continue,
    inject_kv_cache,
    layer_tensors,
    prefill_cache,
    start_entry_cache,
    tokenize_context,
    without_start_entry,
)
from latentmas_mesh.integrations.hf._load import (
    MODEL_SOURCES,
    GgufSource,
    LoadedModel,
    convert_model,
    converted_dir,
    gguf_path,
    load_model,
    resolve_model,
    supported_model_names,
)
from latentmas_mesh.integrations.hf._pairfit import (
    FIT_PASSAGES_DEFAULT,
    FIT_TOKENS_DEFAULT,
    cached_anchor_activations,
    fit_pair_from_anchors,
    fit_passages,
)

__all__ = [
    "CONTEXT_TOKENS_MAX",
    "FIT_PASSAGES_DEFAULT",
    "FIT_TOKENS_DEFAULT",
    "MODEL_SOURCES",
    "NEW_TOKENS_MAX",
    "ContextTokens",
    "Exchanged",
    "GgufSource",
    "LoadedModel",
    "PassageActivations",
    "align_kv_cache",
    "cached_anchor_activations",
    "continuation_logits",
    "continuation_nll",
    "convert_model",
    "converted_dir",
    "exchange_context",
    "export_anchor_activations",
    "extract_kv_cache",
    "fit_pair_from_anchors",
    "fit_passages",
    "gguf_path",
    "greedy_continue",
    "inject_kv_cache",
    "layer_tensors",
    "load_model",
    "passage_activations",
    "prefill_cache",
    "read_anchor_activations",
    "resolve_model",
    "start_entry_cache",
    "supported_model_names",
    "tokenize_context",
    "without_start_entry",
]
