"""The four steps of an exchange (spec 3.5.3) between two loaded models, in one process."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from transformers import DynamicCache

from latentmas_mesh.alignment import KVAligner
from latentmas_mesh.errors import DimensionMismatch
from latentmas_mesh.integrations.hf._kv import (
    ContextTokens,
    extract_kv_cache,
    inject_kv_cache,
    without_start_entry,
)
from latentmas_mesh.integrations.hf._load import LoadedModel
from latentmas_mesh.protocol import KVCache


@dataclass(frozen=True)
class Exchanged:
    """An exchange's products: the sender's exported cache, the aligned one, the receiver's cache.

    sent: the sender's cache less its start entry (positions 1..n); aligned: the same slots in
    the receiver's geometry; cache: the receiver's DynamicCache, its own start entry at 0.
    """

    sent: KVCache
    aligned: KVCache
    cache: DynamicCache


def exchange_context(
    sender: LoadedModel,
    receiver: LoadedModel,
    aligner: KVAligner,
    context: ContextTokens | str,
) -> Exchanged:
    """Extract the sender's cache of `context`, align it, inject it into the receiver.

    Step 1 extraction (sender reads the context, its start token first), step 2 alignment
    (`aligner`, keys de-rotated / re-rotated at the cache's positions), step 3 injection (the
    receiver keeps its own start entry at position 0). Step 4, continuation, is the caller's:
    `greedy_continue` or `continuation_nll` on `Exchanged.cache`.
    Raises DimensionMismatch when the aligner does not go from sender to receiver.
    """
    if (aligner.source.name, aligner.target.name) != (sender.name, receiver.name):
        raise DimensionMismatch(
            f"aligner {aligner.source.name!r} -> {aligner.target.name!r} does not fit the "
            f"exchange {sender.name!r} -> {receiver.name!r}",
            details={"aligner": [aligner.source.name, aligner.target.name]},
        )
    sent = without_start_entry(extract_kv_cache(sender, context))
    aligned = align_kv_cache(sent, aligner)
    return Exchanged(sent=sent, aligned=aligned, cache=inject_kv_cache(receiver, aligned))


def align_kv_cache(kv: KVCache, aligner: KVAligner) -> KVCache:
    """The KVCache message `kv` of the aligner's source model, aligned to its target model.

    Keys are de-rotated at the cache's positions (position_encodings, default 0..n−1), mapped
    and re-rotated at the same positions: each source entry becomes a latent memory slot of the
    target at its own position (3.5.3 step 2). Raises DimensionMismatch when `kv` does not come
    from the aligner's source model or does not fit its geometry.
    """
    if kv.source_model != aligner.source.name:
        raise DimensionMismatch(
            f"cache of {kv.source_model!r} given to an aligner from {aligner.source.name!r}",
            details={"source_model": kv.source_model, "aligner_source": aligner.source.name},
        )
    positions = None if kv.position_encodings is None else kv.position_encodings.astype(np.int64)
    keys, values = aligner.align(kv.keys, kv.values, positions=positions)
    return kv.model_copy(
        update={"source_model": aligner.target.name, "keys": keys, "values": values}
    )
