"""KV cache extraction, injection and continuation with transformers (spec 3.5.3 steps 1, 3, 4)."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import numpy as np
import torch
from numpy.typing import NDArray
from transformers import DynamicCache

from latentmas_mesh.errors import DimensionMismatch, InvalidRequest, ModelNotSupported
from latentmas_mesh.integrations.hf._load import LoadedModel
from latentmas_mesh.protocol import DTYPES, KV_DTYPE_NAMES, KVCache, KVCacheMetadata

CONTEXT_TOKENS_MAX: Final = 8_192
NEW_TOKENS_MAX: Final = 4_096
_DESCRIPTION_CHARS_MAX: Final = 16_384
_TORCH_WIRE_DTYPES: Final = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
}


@dataclass(frozen=True, slots=True)
class ContextTokens:
    """A text as one model reads it: the start token, then the text's tokens.

    ids: int64 [n + 1], ids[0] is the model's start token.
    offsets: int64 [n + 1, 2] character (start, end) of each token in the text; (0, 0) for the
    start token.
    """

    text: str
    ids: NDArray[np.int64]
    offsets: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def tokenize_context(
    loaded: LoadedModel, text: str, *, tokens_max: int | None = None
) -> ContextTokens:
    """`text` in `loaded`'s tokens, led by its start token, with character offsets.

    tokens_max: keep only the first `tokens_max` text tokens (the start token is not counted).
    """
    encoded = loaded.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = [int(i) for i in encoded["input_ids"]]
    offsets = [(int(a), int(b)) for a, b in encoded["offset_mapping"]]
    if tokens_max is not None:
        ids, offsets = ids[:tokens_max], offsets[:tokens_max]
    return ContextTokens(
        text=text,
        ids=np.asarray([loaded.start_token_id, *ids], dtype=np.int64),
        offsets=np.asarray([(0, 0), *offsets], dtype=np.int64).reshape(-1, 2),
    )


def extract_kv_cache(
    loaded: LoadedModel,
    context: ContextTokens | str,
    *,
    dtype: str = "float32",
    context_description: str = "",
) -> KVCache:
    """Run `loaded` over `context` and export its cache as a protocol KVCache (3.5.3 step 1).

    keys / values: [layers, kv_heads, seq, head_dim] as the model stores them (keys after RoPE),
    seq = len(context) including the start token at position 0; position_encodings = 0..seq-1.
    Every layer keeps every position (sliding-window layers included), so the layout is uniform.
    Raises InvalidRequest for an empty or too long context or an unknown dtype.
    """
    tokens = context if isinstance(context, ContextTokens) else tokenize_context(loaded, context)
    _check_length(len(tokens), CONTEXT_TOKENS_MAX, "context tokens")
    if dtype not in KV_DTYPE_NAMES:
        raise InvalidRequest(f"dtype must be one of {sorted(KV_DTYPE_NAMES)}, got {dtype!r}")
    cache = DynamicCache()  # no config: full layers everywhere, so no layer drops old positions
    with torch.inference_mode():
        loaded.model(torch.from_numpy(tokens.ids)[None, :], cache=cache, use_cache=True)
    return kv_cache_from_dynamic(
        cache, loaded.name, dtype=dtype, context_description=context_description
    )


def kv_cache_from_dynamic(
    cache: DynamicCache,
    source_model: str,
    *,
    dtype: str | None = None,
    context_description: str = "",
) -> KVCache:
    """A transformers cache of one sequence as a protocol KVCache in the canonical layout.

    keys / values: [layers, kv_heads, seq, head_dim], each made by one torch.stack over the
    layers' tensors and handed to numpy without a further copy (no per-layer or per-position
    copy in Python). position_encodings = 0..seq-1: the cache must hold every position from the
    start, as a prefill builds it. dtype: a wire dtype name, or None to keep the cache's own.
    Raises InvalidRequest for a batch other than 1, an empty cache or an uncarried dtype,
    DimensionMismatch when layers differ in shape (a sliding-window layer that dropped
    positions), ModelNotSupported for layers without attention keys.
    """
    layers = [layer_tensors(cache, index) for index in range(len(cache.layers))]
    if not layers:
        raise InvalidRequest("the cache holds no layers", details={})
    try:
        keys = torch.stack([k for k, _ in layers])  # [layers, batch, kv_heads, seq, head_dim]
        values = torch.stack([v for _, v in layers])
    except RuntimeError as exc:
        shapes = sorted({tuple(k.shape) for k, _ in layers})
        raise DimensionMismatch(
            "the cache's layers differ in shape: every layer must hold every position "
            "(a sliding-window layer that dropped old ones cannot be exported)",
            details={"layer_key_shapes": [list(shape) for shape in shapes[:8]]},
        ) from exc
    if keys.shape[1] != 1 or values.shape[1] != 1:
        raise InvalidRequest(
            f"a KV cache message holds one sequence; this cache has a batch of {keys.shape[1]}",
            details={"batch": int(keys.shape[1])},
        )
    wire = dtype or _TORCH_WIRE_DTYPES.get(keys.dtype, str(keys.dtype))
    if wire not in KV_DTYPE_NAMES:
        raise InvalidRequest(f"dtype must be one of {sorted(KV_DTYPE_NAMES)}, got {wire}")
    seq = int(keys.shape[3])
    return KVCache(
        source_model=source_model,
        keys=_wire_array(keys[:, 0], wire),
        values=_wire_array(values[:, 0], wire),
        position_encodings=np.arange(seq, dtype=np.int64),
        metadata=KVCacheMetadata(
            sequence_length=seq,
            context_description=context_description[:_DESCRIPTION_CHARS_MAX],
            token_count=seq,
            generated_at=datetime.now(UTC),
        ),
    )


def without_start_entry(kv: KVCache) -> KVCache:
    """The cache less its entry at position 0 (the sender's start token, its attention sink).

    A receiver never takes another model's sink: it keeps its own (see `inject_kv_cache`).
    Raises DimensionMismatch when the cache has no position 0 entry to drop.
    """
    positions = _positions(kv)
    if positions[0] != 0 or kv.metadata.sequence_length < 2:
        raise DimensionMismatch(
            "the cache has no start entry at position 0 followed by content",
            details={"first_position": int(positions[0]), "seq": kv.metadata.sequence_length},
        )
    seq = kv.metadata.sequence_length - 1
    return kv.model_copy(
        update={
            "keys": kv.keys[:, :, 1:],
            "values": kv.values[:, :, 1:],
            "attention_mask": None if kv.attention_mask is None else kv.attention_mask[:, 1:],
            "position_encodings": positions[1:],
            "metadata": kv.metadata.model_copy(
                update={"sequence_length": seq, "token_count": max(0, kv.metadata.token_count - 1)}
            ),
        }
    )


def inject_kv_cache(loaded: LoadedModel, kv: KVCache) -> DynamicCache:
    """Build `loaded`'s own cache from a KVCache of its shape (3.5.3 step 3).

    The receiver computes its own start-token entry at position 0 (its attention sink: replacing
    it with a mapped entry costs most of what the context carries); the entries of `kv` follow at
    positions 1..n. `kv.position_encodings` must be 1..n (content only), or 0..n, in which case
    its position-0 entry is replaced by the receiver's own. The cache is built with
    DynamicCache(config=...) so sliding-window layers get their window.
    Raises DimensionMismatch when `kv` does not have the receiver's [layers, kv_heads, *, head_dim]
    shape or its positions are not contiguous from 0 or 1.
    """
    _check_shape(loaded, kv)
    positions = _positions(kv)
    first = int(positions[0])
    if first not in (0, 1) or np.any(positions != np.arange(first, first + positions.shape[0])):
        raise DimensionMismatch(
            "cache positions must run 0..n or 1..n without gaps to be injected",
            details={"first_position": first, "seq": int(positions.shape[0])},
        )
    own = start_entry_cache(loaded)
    cache = DynamicCache(config=loaded.model.config)
    skip = 1 if first == 0 else 0
    dtype = loaded.model.dtype
    for index in range(len(own.layers)):
        own_keys, own_values = layer_tensors(own, index)
        keys = _tensor(kv.keys[index : index + 1, :, skip:])
        values = _tensor(kv.values[index : index + 1, :, skip:])
        cache.update(
            torch.cat([own_keys, keys.to(dtype)], dim=-2),
            torch.cat([own_values, values.to(dtype)], dim=-2),
            index,
        )
    return cache


def layer_tensors(cache: DynamicCache, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values [batch, kv_heads, seq, head_dim] of layer `index` of a dynamic cache.

    Raises ModelNotSupported for layers that hold no attention keys (linear-attention states).
    """
    layer = cache.layers[index]
    keys = getattr(layer, "keys", None)
    values = getattr(layer, "values", None)
    if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor):
        raise ModelNotSupported(
            f"cache layer {index} ({type(layer).__name__}) holds no attention keys to export",
            details={"layer": index, "kind": type(layer).__name__},
        )
    return keys, values


def start_entry_cache(loaded: LoadedModel) -> DynamicCache:
    """`loaded`'s cache after reading only its start token: one entry per layer at position 0."""
    cache = DynamicCache()
    with torch.inference_mode():
        loaded.model(torch.tensor([[loaded.start_token_id]]), cache=cache, use_cache=True)
    return cache


def prefill_cache(loaded: LoadedModel, context: ContextTokens) -> DynamicCache:
    """`loaded`'s own cache of `context` (the receiver's prefill: what an exchange replaces)."""
    _check_length(len(context), CONTEXT_TOKENS_MAX, "context tokens")
    cache = DynamicCache(config=loaded.model.config)
    with torch.inference_mode():
        loaded.model(torch.from_numpy(context.ids)[None, :], cache=cache, use_cache=True)
    return cache


def continuation_logits(
    loaded: LoadedModel, cache: DynamicCache | None, token_ids: NDArray[np.int64] | list[int]
) -> NDArray[np.float32]:
    """Logits [len(token_ids), vocab] of `loaded` reading `token_ids` after `cache` (3.5.3 step 4).

    Row i predicts the token after token_ids[i]. `cache` is not modified (a copy is extended);
    None means no context at all. Teacher forcing: all tokens are read in one forward pass.
    """
    ids = np.asarray(token_ids, dtype=np.int64)
    _check_length(int(ids.shape[0]), NEW_TOKENS_MAX, "continuation tokens")
    working = copy.deepcopy(cache) if cache is not None else None
    with torch.inference_mode():
        out = loaded.model(torch.from_numpy(ids)[None, :], cache=working, use_cache=True)
    return _numpy(out.logits[0])


def continuation_nll(
    loaded: LoadedModel,
    cache: DynamicCache | None,
    fed_ids: NDArray[np.int64] | list[int],
    scored_ids: NDArray[np.int64] | list[int],
) -> float:
    """Mean negative log-likelihood (nats/token) of `scored_ids` under teacher forcing.

    fed_ids: [k] tokens read after the cache; scored_ids: [k] the token each of them predicts
    (scored_ids[i] follows fed_ids[i]), so fed_ids[1:] == scored_ids[:-1] for a plain continuation.
    """
    fed = np.asarray(fed_ids, dtype=np.int64)
    scored = np.asarray(scored_ids, dtype=np.int64)
    if fed.shape != scored.shape:
        raise DimensionMismatch(
            f"fed {list(fed.shape)} and scored {list(scored.shape)} token arrays differ in shape"
        )
    logits = torch.from_numpy(continuation_logits(loaded, cache, fed))
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    picked = log_probs.gather(1, torch.from_numpy(scored)[:, None])
    return float(-picked.mean())


def greedy_continue(
    loaded: LoadedModel,
    cache: DynamicCache,
    prompt_ids: NDArray[np.int64] | list[int],
    max_new_tokens: int,
) -> list[int]:
    """Greedy continuation of `loaded` from `cache` after reading `prompt_ids` (3.5.3 step 4).

    prompt_ids: [k >= 1] tokens not yet in the cache (at least the last context token, whose
    output predicts the first new token). Returns exactly max_new_tokens token ids (no early stop,
    so results compare token for token). `cache` is not modified.
    """
    ids = np.asarray(prompt_ids, dtype=np.int64)
    _check_length(int(ids.shape[0]), NEW_TOKENS_MAX, "prompt tokens")
    _check_length(max_new_tokens, NEW_TOKENS_MAX, "new tokens")
    working = copy.deepcopy(cache)
    produced: list[int] = []
    step = torch.from_numpy(ids)[None, :]
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            out = loaded.model(step, cache=working, use_cache=True)
            token = int(out.logits[0, -1].argmax())
            produced.append(token)
            step = torch.tensor([[token]])
    return produced


def _check_shape(loaded: LoadedModel, kv: KVCache) -> None:
    layers, heads, _, head_dim = loaded.spec.kv_shape(1)
    expected = (layers, heads, head_dim)
    found = (kv.num_layers, kv.num_kv_heads, kv.head_dim)
    value_dim = int(kv.values.shape[3])
    if found != expected or value_dim != head_dim:
        raise DimensionMismatch(
            f"cache of shape [layers, kv_heads, seq, head_dim] = {list(kv.keys.shape)} does not "
            f"fit {loaded.name} ({layers} layers, {heads} kv heads, head_dim {head_dim})",
            details={
                "model": loaded.name,
                "expected": [layers, heads, None, head_dim],
                "keys_shape": list(kv.keys.shape),
                "values_shape": list(kv.values.shape),
            },
        )


def _positions(kv: KVCache) -> NDArray[np.int64]:
    seq = kv.metadata.sequence_length
    if kv.position_encodings is None:
        return np.arange(seq, dtype=np.int64)
    return np.asarray(kv.position_encodings).astype(np.int64)


def _tensor(array: NDArray[np.generic]) -> torch.Tensor:
    """A numpy KV slice (float32, float16 or bfloat16) as a float32 torch tensor.

    A cache received from the mesh is read-only (views of the message's frames); the tensor is
    only read (`inject_kv_cache` concatenates it into new ones), so torch's warning about
    non-writable arrays is silenced rather than paid for with a copy.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _check_length(count: int, count_max: int, what: str) -> None:
    if count < 1 or count > count_max:
        raise InvalidRequest(f"{what}: {count} is outside 1..{count_max}")


def _wire_array(tensor: torch.Tensor, wire: str) -> NDArray[np.generic]:
    """`tensor` as a numpy array of wire dtype `wire`: its own memory when the dtypes agree
    (bfloat16, which numpy lacks, is reinterpreted bit for bit), else one cast."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        array = tensor.contiguous().view(torch.int16).numpy().view(DTYPES["bfloat16"])
    else:
        array = tensor.numpy()
    target = DTYPES[wire]
    return array if array.dtype == target else array.astype(target)


def _numpy(tensor: torch.Tensor) -> NDArray[np.float32]:
    """A tensor as a float32 numpy array."""
    array: NDArray[np.float32] = tensor.detach().to(torch.float32).cpu().numpy()
    return array
