"""Activations on anchor passages, exported so the mesh fits maps without the model's weights."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
import transformers
from numpy.typing import NDArray
from transformers import DynamicCache

from latentmas_mesh.anchors import Passage, anchor_corpus_sha256, load_anchor_passages
from latentmas_mesh.artifacts.activations import (
    EXPORT_FORMAT,
    MANIFEST,
    PassageActivations,
)
from latentmas_mesh.artifacts.files import write_json, write_tensors
from latentmas_mesh.errors import InvalidRequest, ModelNotSupported
from latentmas_mesh.integrations.hf._kv import (
    CONTEXT_TOKENS_MAX,
    ContextTokens,
    layer_tensors,
    tokenize_context,
)
from latentmas_mesh.integrations.hf._load import LoadedModel

EXPORT_DTYPES: Final = {"float32": np.float32, "float16": np.float16}

# Per architecture: the attention submodule whose output is the key before RoPE, and its layout.
# llama: k_proj output [batch, seq, kv_heads * head_dim]; gemma3: k_norm output (the RMS-normed
# key, which is what RoPE rotates) [batch, kv_heads, seq, head_dim].
_PRE_ROPE_KEY: Final[dict[str, tuple[str, str]]] = {
    "llama": ("k_proj", "flat"),
    "gemma3_text": ("k_norm", "heads"),
}


def passage_activations(
    loaded: LoadedModel,
    context: ContextTokens | str,
    *,
    passage_id: str = "",
    include_hidden: bool = True,
) -> PassageActivations:
    """Run `loaded` once over `context` and keep keys before and after RoPE, values, hidden states.

    All float arrays are float32. Raises ModelNotSupported for architectures whose pre-RoPE key
    this integration does not know how to observe.
    """
    tokens = context if isinstance(context, ContextTokens) else tokenize_context(loaded, context)
    if not 1 <= len(tokens) <= CONTEXT_TOKENS_MAX:
        raise InvalidRequest(f"context of {len(tokens)} tokens is outside 1..{CONTEXT_TOKENS_MAX}")
    cache = DynamicCache()
    with _pre_rope_keys(loaded) as captured, torch.inference_mode():
        out = loaded.model(
            torch.from_numpy(tokens.ids)[None, :],
            cache=cache,
            use_cache=True,
            output_hidden_states=include_hidden,
        )
    layers = [layer_tensors(cache, index) for index in range(len(cache.layers))]
    hidden = None
    if include_hidden:
        hidden = np.stack([_float32(h[0]) for h in out.hidden_states])
    return PassageActivations(
        passage_id=passage_id,
        token_ids=tokens.ids,
        offsets=tokens.offsets,
        keys_pre_rope=np.stack(captured),
        keys=np.stack([_float32(k[0]) for k, _ in layers]),
        values=np.stack([_float32(v[0]) for _, v in layers]),
        hidden_states=hidden,
    )


@contextmanager
def _pre_rope_keys(loaded: LoadedModel) -> Iterator[list[NDArray[np.float32]]]:
    """Forward hooks that collect each layer's pre-RoPE keys [kv_heads, seq, head_dim] in order."""
    architecture = loaded.spec.architecture or ""
    if architecture not in _PRE_ROPE_KEY:
        raise ModelNotSupported(
            f"{loaded.name}: pre-RoPE keys of architecture {architecture!r} are not observable",
            details={"model": loaded.name, "architecture": architecture},
        )
    module_name, layout = _PRE_ROPE_KEY[architecture]
    heads, head_dim = loaded.spec.kv_shape(1)[1], loaded.spec.kv_shape(1)[3]
    captured: list[NDArray[np.float32]] = []

    def keep(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
        array = _float32(output[0])
        if layout == "flat":  # [seq, kv_heads * head_dim] -> [kv_heads, seq, head_dim]
            array = array.reshape(array.shape[0], heads, head_dim).transpose(1, 0, 2)
        captured.append(np.ascontiguousarray(array))

    handles = [
        getattr(layer.self_attn, module_name).register_forward_hook(keep)
        for layer in _decoder_layers(loaded)
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _decoder_layers(loaded: LoadedModel) -> list[Any]:
    inner = getattr(loaded.model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ModelNotSupported(f"{loaded.name}: no decoder layers at model.model.layers")
    return list(layers)


def export_anchor_activations(
    loaded: LoadedModel,
    out_dir: Path,
    *,
    passages: Sequence[Passage] | None = None,
    tokens_max: int | None = None,
    dtype: str = "float16",
    include_hidden: bool = True,
    on_passage: Callable[[int, int], None] | None = None,
) -> Path:
    """Write `loaded`'s activations on anchor passages to `out_dir`; return the manifest's path.

    One `<passage id>.safetensors` per passage (the arrays of PassageActivations) and a
    `manifest.json` naming the model, its registry geometry, the corpus hash, the tokenizer's
    start token and the options. This is what a model owner sends to register a model: the
    server fits maps from it and never needs the weights. `on_passage(done, total)` reports
    progress. tokens_max caps the text tokens read per passage (None: the whole passage).
    """
    if dtype not in EXPORT_DTYPES:
        raise InvalidRequest(f"dtype must be one of {sorted(EXPORT_DTYPES)}, got {dtype!r}")
    chosen = passages if passages is not None else load_anchor_passages()
    out_dir.mkdir(parents=True, exist_ok=True)
    cast = EXPORT_DTYPES[dtype]
    for done, passage in enumerate(chosen, start=1):
        tokens = tokenize_context(loaded, passage.text, tokens_max=tokens_max)
        activations = passage_activations(
            loaded, tokens, passage_id=passage.id, include_hidden=include_hidden
        )
        arrays = {
            name: array if array.dtype == np.int64 else array.astype(cast)
            for name, array in activations.arrays().items()
        }
        write_tensors(out_dir / f"{passage.id}.safetensors", arrays, None)
        if on_passage is not None:
            on_passage(done, len(chosen))
    manifest = {
        "format": EXPORT_FORMAT,
        "model": loaded.name,
        "geometry": loaded.spec.model_dump(mode="json"),
        "anchor_corpus_sha256": anchor_corpus_sha256() if passages is None else None,
        "passage_ids": [p.id for p in chosen],
        "start_token_id": loaded.start_token_id,
        "tokens_max": tokens_max,
        "dtype": dtype,
        "hidden_states": include_hidden,
        "transformers": transformers.__version__,
    }
    path = out_dir / MANIFEST
    write_json(path, manifest)  # after every passage file is durable
    return path


def _float32(tensor: torch.Tensor) -> NDArray[np.float32]:
    array: NDArray[np.float32] = tensor.detach().to(torch.float32).cpu().numpy()
    return array
