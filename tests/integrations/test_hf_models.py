"""The two real models load offline, match their registry entries, and export / import caches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latentmas_mesh.errors import DimensionMismatch, ModelNotSupported
from latentmas_mesh.integrations import pair_tokens
from latentmas_mesh.integrations.hf import (
    ContextTokens,
    LoadedModel,
    extract_kv_cache,
    greedy_continue,
    inject_kv_cache,
    layer_tensors,
    load_model,
    tokenize_context,
    without_start_entry,
)

pytestmark = pytest.mark.realmodel

TEXT = "It is a truth universally acknowledged, that a single man in possession of a good fortune."


class TestLoading:
    @pytest.mark.parametrize("which", ["model_a", "model_b"])
    def test_loaded_model_matches_its_registry_entry(self, which: str, request):
        """Layers, KV heads and head_dim of the loaded config are the registry's numbers."""
        loaded: LoadedModel = request.getfixturevalue(which)
        config = loaded.model.config

        expected = (loaded.spec.num_layers, loaded.spec.num_kv_heads, loaded.spec.head_dim)
        assert expected == (
            config.num_hidden_layers,
            config.num_key_value_heads,
            config.head_dim,
        )

    def test_closed_model_is_refused_as_not_supported(self):
        """A closed model has no cache to export: ModelNotSupported, before any loading."""
        with pytest.raises(ModelNotSupported, match="cannot export"):
            load_model("gpt-4")

    def test_open_model_without_local_weights_is_not_supported(self):
        """A registered open model this machine has no weights for is refused by name."""
        with pytest.raises(ModelNotSupported, match="no local weight source"):
            load_model("llama-3-8b")


class TestExtraction:
    @pytest.mark.parametrize("which", ["model_a", "model_b"])
    def test_extracted_cache_has_the_registry_shape(self, which: str, request):
        """Keys and values come out as [layers, kv_heads, seq, head_dim] with seq = tokens + 1."""
        loaded: LoadedModel = request.getfixturevalue(which)
        context = tokenize_context(loaded, TEXT)

        kv = extract_kv_cache(loaded, context)

        assert loaded.spec.kv_shape(len(context)) == kv.keys.shape
        assert kv.keys.shape == kv.values.shape
        assert list(range(len(context))) == kv.position_encodings.tolist()

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
    def test_half_precision_export_injects_and_continues_like_float32(self, model_a, dtype):
        """A cache exported in 16 bits injects and predicts the same next token as float32."""
        context = tokenize_context(model_a, TEXT)
        cached = ContextTokens(TEXT, context.ids[:-1], context.offsets[:-1])
        full = inject_kv_cache(model_a, extract_kv_cache(model_a, cached))

        half = extract_kv_cache(model_a, cached, dtype=dtype)
        produced = greedy_continue(model_a, inject_kv_cache(model_a, half), context.ids[-1:], 1)

        assert dtype == half.keys.dtype.name
        assert greedy_continue(model_a, full, context.ids[-1:], 1) == produced

    def test_extraction_keeps_every_position_past_the_sliding_window(self, model_b):
        """Gemma-3's sliding layers export all 600 positions, not only the last 511."""
        ids = np.full(600, model_b.tokenizer.convert_tokens_to_ids("▁the"), dtype=np.int64)
        context = ContextTokens(text="", ids=ids, offsets=np.zeros((600, 2), dtype=np.int64))

        kv = extract_kv_cache(model_b, context)

        assert 600 == kv.keys.shape[2]


class TestInjection:
    @pytest.mark.parametrize("which", ["model_a", "model_b"])
    def test_reinjected_own_cache_continues_exactly_as_generate(self, which: str, request):
        """Extract, inject and continue gives the tokens plain greedy generate() gives."""
        loaded: LoadedModel = request.getfixturevalue(which)
        context = tokenize_context(loaded, TEXT)
        cached = ContextTokens(TEXT, context.ids[:-1], context.offsets[:-1])
        with torch.inference_mode():
            reference = loaded.model.generate(
                torch.from_numpy(context.ids)[None, :],
                max_new_tokens=12,
                min_new_tokens=12,
                do_sample=False,
            )[0, len(context) :].tolist()

        cache = inject_kv_cache(loaded, without_start_entry(extract_kv_cache(loaded, cached)))
        produced = greedy_continue(loaded, cache, context.ids[-1:], 12)

        assert reference == produced

    def test_injected_cache_puts_the_receiver_start_entry_first(self, model_a):
        """Position 0 of an injected cache is the receiver's own start-token entry."""
        kv = extract_kv_cache(model_a, TEXT)
        foreign = kv.model_copy(update={"keys": kv.keys + 1.0})

        cache = inject_kv_cache(model_a, foreign)

        injected = np.stack([layer_tensors(cache, i)[0][0].numpy() for i in range(30)])
        np.testing.assert_allclose(kv.keys[:, :, 0], injected[:, :, 0], atol=1e-4)
        np.testing.assert_allclose(kv.keys[:, :, 1:] + 1.0, injected[:, :, 1:], atol=1e-4)

    def test_cache_of_another_shape_is_a_dimension_mismatch(self, model_a, model_b):
        """Model A's cache (30 x 3 x 64) cannot be injected into model B (18 x 1 x 256)."""
        kv = extract_kv_cache(model_a, TEXT)

        with pytest.raises(DimensionMismatch) as caught:
            inject_kv_cache(model_b, kv)

        assert [18, 1, None, 256] == caught.value.details["expected"]

    def test_gemma_accepts_an_injected_cache_longer_than_its_window(self, model_b):
        """A 600-entry injected cache is accepted; sliding layers keep their window."""
        ids = np.full(600, model_b.tokenizer.convert_tokens_to_ids("▁the"), dtype=np.int64)
        kv = extract_kv_cache(model_b, ContextTokens("", ids, np.zeros((600, 2), np.int64)))

        cache = inject_kv_cache(model_b, kv)
        produced = greedy_continue(model_b, cache, ids[-1:], 2)

        assert 600 == cache.get_seq_length()
        assert 2 == len(produced)


class TestTokenPairingOnRealTokenizers:
    def test_paired_tokens_of_both_models_have_read_the_same_text(self, model_a, model_b):
        """Every shared_end pair decodes, on both sides, to the same prefix of the text."""
        a = tokenize_context(model_a, TEXT)
        b = tokenize_context(model_b, TEXT)

        pairs = pair_tokens(a.offsets, b.offsets)
        prefixes_a = [model_a.tokenizer.decode(a.ids[1 : s + 1]) for s in pairs.source_index]
        prefixes_b = [model_b.tokenizer.decode(b.ids[1 : t + 1]) for t in pairs.target_index]

        assert len(pairs) >= 15
        assert prefixes_a == prefixes_b
        assert TEXT == prefixes_a[-1]
