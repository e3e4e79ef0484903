"""Hugging Face transformers integration (extra `hf`): real models, cache export and import."""

from __future__ import annotations

from latentmas_mesh.artifacts.activations import PassageActivations, read_anchor_activations
from latentmas_mesh.integrations.hf._activations import (
    export_anchor_activations,
    passage_activations,
)
from latentmas_mesh.integrations.hf._embeddings import (
    EMBEDDING_TOKENS_DEFAULT,
    passage_embeddings,
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
    kv_cache_from_dynamic,
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
    measure_passages,
)
from latentmas_mesh.integrations.hf._retention import (
    Case,
    PassageExchange,
    case_for,
    exchange_passage,
    exchange_quality,
    measure_exchange,
    score_continuation,
    sender_context,
)

__all__ = [
    "CONTEXT_TOKENS_MAX",
    "EMBEDDING_TOKENS_DEFAULT",
    "FIT_PASSAGES_DEFAULT",
    "FIT_TOKENS_DEFAULT",
    "MODEL_SOURCES",
    "NEW_TOKENS_MAX",
    "Case",
    "ContextTokens",
    "Exchanged",
    "GgufSource",
    "LoadedModel",
    "PassageActivations",
    "PassageExchange",
    "align_kv_cache",
    "cached_anchor_activations",
    "case_for",
    "continuation_logits",
    "continuation_nll",
    "convert_model",
    "converted_dir",
    "exchange_context",
    "exchange_passage",
    "exchange_quality",
    "export_anchor_activations",
    "extract_kv_cache",
    "fit_pair_from_anchors",
    "fit_passages",
    "gguf_path",
    "greedy_continue",
    "inject_kv_cache",
    "kv_cache_from_dynamic",
    "layer_tensors",
    "load_model",
    "measure_exchange",
    "measure_passages",
    "passage_activations",
    "passage_embeddings",
    "prefill_cache",
    "read_anchor_activations",
    "resolve_model",
    "score_continuation",
    "sender_context",
    "start_entry_cache",
    "supported_model_names",
    "tokenize_context",
    "without_start_entry",
]
