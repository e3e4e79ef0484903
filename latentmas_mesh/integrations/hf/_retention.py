"""What an exchange retains, measured on the receiver (spec 4.3.4 "semantic content preserved").

On passages that influenced nothing, the receiver scores the same continuation three ways with
teacher forcing: from no context (NLL_none), from its own prefill of the context (NLL_own) and
from the sender's cache of that text, aligned and injected (NLL_aligned). Retention is the
ratio of means (NLL_none − NLL_aligned) / (NLL_none − NLL_own); its confidence is the lower end
of the 95% bootstrap interval over passages. Cosine and euclidean figures compare the receiver's
attention outputs (every layer, every continuation token) computed from the aligned cache and
from its own: published work finds they predict retention where the key R² does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import torch
from numpy.typing import NDArray
from transformers import DynamicCache

from latentmas_mesh.alignment import AlignmentQuality, KVAligner
from latentmas_mesh.alignment.quality import retention_interval, retention_ratio
from latentmas_mesh.errors import InvalidRequest
from latentmas_mesh.integrations.hf._exchange import align_kv_cache
from latentmas_mesh.integrations.hf._kv import (
    ContextTokens,
    continuation_logits,
    extract_kv_cache,
    inject_kv_cache,
    prefill_cache,
    start_entry_cache,
    tokenize_context,
    without_start_entry,
)
from latentmas_mesh.integrations.hf._load import LoadedModel

CONTEXT_TOKENS: Final = 128
CONTINUATION_TOKENS: Final = 32
_EPS: Final = 1e-12


@dataclass(frozen=True)
class Case:
    """One passage as one receiver sees it: its cache text, bridge token and continuation."""

    own: ContextTokens  # receiver's start token + r_1..r_{k-1}
    fed: NDArray[np.int64]  # r_k .. r_{k+c-1}
    scored: NDArray[np.int64]  # r_{k+1} .. r_{k+c}
    cut: int  # characters of text the caches may cover (end of r_{k-1})


def case_for(
    receiver: LoadedModel,
    reference: LoadedModel,
    text: str,
    *,
    context_tokens: int = CONTEXT_TOKENS,
    continuation_tokens: int = CONTINUATION_TOKENS,
) -> Case | None:
    """The context / continuation split of `text` for `receiver` (None: too short).

    The context is the text of `reference`'s first `context_tokens` tokens (one reference for
    both directions keeps the text the same); the receiver reads it in its own tokens r_1..r_k,
    feeds r_k itself (a cache cannot predict the first continuation token on its own) and the
    `continuation_tokens` after it are scored.
    """
    ref = tokenize_context(reference, text)
    if len(ref) <= context_tokens:
        return None
    context_end = int(ref.offsets[context_tokens, 1])
    tokens = tokenize_context(receiver, text)
    k = int(np.searchsorted(tokens.offsets[:, 1], context_end, side="right")) - 1
    if k < 2 or k + continuation_tokens >= len(tokens):
        return None
    return Case(
        own=ContextTokens(text, tokens.ids[:k], tokens.offsets[:k]),
        fed=tokens.ids[k : k + continuation_tokens],
        scored=tokens.ids[k + 1 : k + continuation_tokens + 1],
        cut=int(tokens.offsets[k - 1, 1]),
    )


def sender_context(sender: LoadedModel, text: str, cut: int) -> ContextTokens:
    """The sender's tokens of text[:cut]: its start token and every token ending by `cut`."""
    tokens = tokenize_context(sender, text)
    keep = np.r_[True, tokens.offsets[1:, 1] <= cut]
    return ContextTokens(text, tokens.ids[keep], tokens.offsets[keep])


@dataclass(frozen=True)
class Continuation:
    """A scored continuation: mean NLL (nats/token) and each attention layer's outputs."""

    nll: float
    attention: tuple[NDArray[np.float32], ...]  # per layer [continuation tokens, hidden]


def score_continuation(loaded: LoadedModel, cache: DynamicCache | None, case: Case) -> Continuation:
    """Teacher-forced NLL of the case's continuation after `cache`, with attention outputs."""
    captured: list[NDArray[np.float32]] = []

    def keep(
        _module: torch.nn.Module, _args: tuple[object, ...], output: torch.Tensor | tuple[Any, ...]
    ) -> None:
        first = output[0] if isinstance(output, tuple) else output
        captured.append(first[0].detach().float().numpy())

    modules = [m for name, m in loaded.model.named_modules() if name.endswith("self_attn")]
    if not modules:
        raise InvalidRequest(f"{loaded.name} has no self_attn modules to read", details={})
    hooks = [module.register_forward_hook(keep) for module in modules]
    try:
        logits = torch.from_numpy(continuation_logits(loaded, cache, case.fed))
    finally:
        for hook in hooks:
            hook.remove()
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    picked = log_probs.gather(1, torch.from_numpy(case.scored)[:, None])
    return Continuation(float(-picked.mean()), tuple(captured))


@dataclass(frozen=True)
class PassageExchange:
    """One held-out passage's figures for one direction."""

    passage_id: str
    nll_none: float
    nll_own: float
    nll_aligned: float
    attention_cosine: float  # mean over layers and tokens, aligned vs own
    attention_distance: float  # ||aligned − own||_F / ||own||_F over layers and tokens


def exchange_passage(
    sender: LoadedModel,
    receiver: LoadedModel,
    aligner: KVAligner,
    passage_id: str,
    text: str,
    *,
    reference: LoadedModel | None = None,
) -> PassageExchange | None:
    """Every condition of the protocol on one passage (None: the passage is too short)."""
    case = case_for(receiver, reference or receiver, text)
    if case is None:
        return None
    sent = without_start_entry(extract_kv_cache(sender, sender_context(sender, text, case.cut)))
    aligned = score_continuation(receiver, inject_kv_cache(receiver, align_kv_cache(sent, aligner)),
                                 case)  # fmt: skip
    own = score_continuation(receiver, prefill_cache(receiver, case.own), case)
    none = score_continuation(receiver, start_entry_cache(receiver), case)
    a = np.concatenate([layer.reshape(-1, layer.shape[-1]) for layer in aligned.attention])
    o = np.concatenate([layer.reshape(-1, layer.shape[-1]) for layer in own.attention])
    dots = np.sum(a * o, axis=1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(o, axis=1)
    cosine = float(np.mean(np.where(norms > _EPS, dots / np.maximum(norms, _EPS), 0.0)))
    distance = float(np.linalg.norm(a - o) / max(float(np.linalg.norm(o)), _EPS))
    return PassageExchange(passage_id, none.nll, own.nll, aligned.nll, cosine, distance)


def exchange_quality(results: Sequence[PassageExchange]) -> AlignmentQuality:
    """The map's published quality from per-passage figures (see the module docstring)."""
    if len(results) < 2:
        raise InvalidRequest("need at least two measured passages", details={})
    none, own, aligned = (np.array([getattr(r, f) for r in results], dtype=np.float64)
                          for f in ("nll_none", "nll_own", "nll_aligned"))  # fmt: skip
    return AlignmentQuality(
        cosine_similarity=float(np.mean([r.attention_cosine for r in results])),
        euclidean_distance=float(np.mean([r.attention_distance for r in results])),
        information_retention=retention_ratio(none, own, aligned),
        confidence=retention_interval(none, own, aligned)[0],
        heldout_rows=len(results),
    )


def measure_exchange(
    sender: LoadedModel,
    receiver: LoadedModel,
    aligner: KVAligner,
    passages: Sequence[tuple[str, str]],
    *,
    reference: LoadedModel | None = None,
) -> tuple[AlignmentQuality, list[PassageExchange]]:
    """The aligner's exchange quality over (passage id, text) pairs the maps never saw."""
    results = [
        result
        for passage_id, text in passages
        if (result := exchange_passage(sender, receiver, aligner, passage_id, text,
                                       reference=reference)) is not None
    ]  # fmt: skip
    return exchange_quality(results), results
