"""The four steps of 3.5.3 with real models: extract, align, inject, continue."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentmas_mesh.alignment import KVAligner, geometry_from_registry
from latentmas_mesh.alignment.kv_fit import fit_kv_aligner
from latentmas_mesh.anchors import load_anchor_passages, split_anchor_passages
from latentmas_mesh.errors import DimensionMismatch
from latentmas_mesh.integrations.hf import (
    ContextTokens,
    LoadedModel,
    continuation_logits,
    exchange_context,
    greedy_continue,
    passage_activations,
    tokenize_context,
)

pytestmark = pytest.mark.realmodel

FIT_PASSAGES = 6
FIT_TOKENS = 64


def same_text(first: LoadedModel, second: LoadedModel, text: str):
    """Both models' tokens of the text that `second`'s first FIT_TOKENS tokens cover."""
    b = tokenize_context(second, text, tokens_max=FIT_TOKENS)
    end = int(b.offsets[-1, 1])
    a = tokenize_context(first, text)
    keep = np.r_[True, a.offsets[1:, 1] <= end]
    return ContextTokens(text, a.ids[keep], a.offsets[keep]), b


@pytest.fixture(scope="module")
def aligners(model_a, model_b) -> dict[str, KVAligner]:
    """Small A->B and B->A aligners fitted on a few real anchor passages (fit split only)."""
    fit, _ = split_anchor_passages(load_anchor_passages())
    acts_a, acts_b = [], []
    for passage in fit[:: len(fit) // FIT_PASSAGES][:FIT_PASSAGES]:
        a, b = same_text(model_a, model_b, passage.text)
        acts_a.append(passage_activations(model_a, a, passage_id=passage.id, include_hidden=False))
        acts_b.append(passage_activations(model_b, b, passage_id=passage.id, include_hidden=False))
    names = {"a": model_a.name, "b": model_b.name}
    a_to_b, _ = fit_kv_aligner(
        acts_a, acts_b, source_model=names["a"], target_model=names["b"], neighbour_layers=0
    )
    b_to_a, _ = fit_kv_aligner(
        acts_b, acts_a, source_model=names["b"], target_model=names["a"], neighbour_layers=0
    )
    return {"a_to_b": a_to_b, "b_to_a": b_to_a}


def held_out_text() -> str:
    return split_anchor_passages(load_anchor_passages())[1][0].text[:400]


class TestSameModelExchange:
    def test_identity_exchange_continues_exactly_as_generate(self, model_a):
        """A to A through extract, identity align, inject: greedy tokens equal generate()'s."""
        context = tokenize_context(model_a, held_out_text(), tokens_max=48)
        cached = ContextTokens(context.text, context.ids[:-1], context.offsets[:-1])
        with torch.inference_mode():
            expected = model_a.model.generate(
                torch.from_numpy(context.ids)[None, :],
                max_new_tokens=16,
                min_new_tokens=16,
                do_sample=False,
            )[0, len(context) :].tolist()
        identity = KVAligner.identity(geometry_from_registry(model_a.name))

        exchanged = exchange_context(model_a, model_a, identity, cached)
        produced = greedy_continue(model_a, exchanged.cache, context.ids[-1:], 16)

        assert expected == produced


class TestCrossModelExchange:
    @pytest.mark.parametrize(
        ("direction", "sender", "receiver"),
        [("a_to_b", "model_a", "model_b"), ("b_to_a", "model_b", "model_a")],
    )
    def test_all_four_steps_give_finite_logits_of_the_receiver(
        self, direction, sender, receiver, aligners, request
    ):
        """Extract, align, inject, continue: logits [tokens, receiver vocab], all finite."""
        send: LoadedModel = request.getfixturevalue(sender)
        receive: LoadedModel = request.getfixturevalue(receiver)
        text = held_out_text()
        follow = tokenize_context(receive, text).ids[20:28]

        exchanged = exchange_context(send, receive, aligners[direction], text[:200])
        logits = continuation_logits(receive, exchanged.cache, follow)

        layers, heads, _, dim = receive.spec.kv_shape(1)
        assert (layers, heads, dim) == (
            exchanged.aligned.num_layers,
            exchanged.aligned.num_kv_heads,
            exchanged.aligned.head_dim,
        )
        assert (8, receive.model.config.vocab_size) == logits.shape
        assert np.isfinite(logits).all()

    def test_aligner_for_another_pair_is_refused(self, model_a, model_b, aligners):
        """An A->B aligner cannot serve a B->A exchange: DimensionMismatch."""
        with pytest.raises(DimensionMismatch):
            exchange_context(model_b, model_a, aligners["a_to_b"], held_out_text())
