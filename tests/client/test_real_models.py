"""A real model's DynamicCache through the SDK and the mesh, injected into a real receiver."""

from __future__ import annotations

import numpy as np
import pytest

from tests.workers_align.conftest import GEMMA, SMOL

pytestmark = [pytest.mark.realmodel, pytest.mark.slow, pytest.mark.usefixtures("one_thread_each")]
pytest.importorskip("transformers")
NEW_TOKENS = 12


def held_out_text() -> str:
    from latentmas_mesh.anchors import load_anchor_passages, split_anchor_passages

    return split_anchor_passages(load_anchor_passages())[1][0].text[:400]


def test_a_same_model_round_trip_continues_exactly_as_generate(client, model_a):
    """smollm2's own prefill as a DynamicCache, through align_kv_cache smollm2 -> smollm2 and
    back into a DynamicCache: greedy tokens equal generate()'s on the whole text."""
    import torch

    from latentmas_mesh.integrations.hf import (
        ContextTokens,
        greedy_continue,
        inject_kv_cache,
        prefill_cache,
        tokenize_context,
    )

    context = tokenize_context(model_a, held_out_text(), tokens_max=32)
    cached = ContextTokens(context.text, context.ids[:-1], context.offsets[:-1])
    with torch.inference_mode():
        expected = model_a.model.generate(
            torch.from_numpy(context.ids)[None, :],
            max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False,
        )[0, len(context) :].tolist()  # fmt: skip

    reply = client.align_kv_cache(prefill_cache(model_a, cached), SMOL, SMOL)
    received = inject_kv_cache(model_a, reply.aligned_kv_cache)
    produced = greedy_continue(model_a, received, context.ids[-1:], NEW_TOKENS)

    assert expected == produced
    assert 1.0 == reply.alignment_quality.information_retention


def test_a_cross_model_cache_lands_in_the_receivers_geometry(client, model_a, model_b):
    """smollm2's DynamicCache aligned to gemma-3 by the stored maps is injected into gemma-3,
    which continues from it with finite logits of its own vocabulary."""
    from latentmas_mesh.integrations.hf import (
        continuation_logits,
        inject_kv_cache,
        prefill_cache,
        tokenize_context,
    )

    text = held_out_text()
    sent = prefill_cache(model_a, tokenize_context(model_a, text[:200]))
    follow = tokenize_context(model_b, text).ids[20:28]

    reply = client.align_kv_cache(sent, SMOL, GEMMA)
    logits = continuation_logits(model_b, inject_kv_cache(model_b, reply.aligned_kv_cache), follow)

    assert GEMMA == reply.aligned_kv_cache.source_model
    assert (8, model_b.model.config.vocab_size) == logits.shape
    assert np.isfinite(logits).all()
