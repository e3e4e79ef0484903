"""ModelSpec behaviour: cache shapes, per-layer RoPE bases, and the entry validators."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from latentmas_mesh.errors import DimensionMismatch, ModelNotSupported
from latentmas_mesh.registry import ModelSpec, Registry

from .conftest import open_entry


class TestKvShape:
    def test_open_model_shape_is_layers_kv_heads_seq_head_dim(self, registry: Registry):
        """The canonical cache layout of llama-3-8b for 17 tokens."""
        assert (32, 8, 17, 128) == registry.get("llama-3-8b").kv_shape(17)

    def test_closed_model_has_no_cache_shape(self, registry: Registry):
        """A closed model exports no cache, so its shape is MODEL_NOT_SUPPORTED."""
        with pytest.raises(ModelNotSupported):
            registry.get("gpt-4").kv_shape(10)

    def test_negative_sequence_length_is_a_dimension_mismatch(self, registry: Registry):
        """A negative length is refused before any shape is built."""
        with pytest.raises(DimensionMismatch):
            registry.get("llama-3-8b").kv_shape(-1)


class TestRopeThetaForLayer:
    def test_gemma_full_attention_layers_use_the_global_base(self, registry: Registry):
        """gemma-3-270m: layers 5, 11, 17 use rope_theta 1e6, the sliding layers 1e4."""
        spec = registry.get("gemma-3-270m")
        expected = [1e6 if i in (5, 11, 17) else 1e4 for i in range(18)]

        assert expected == [spec.rope_theta_for_layer(i) for i in range(18)]

    def test_uniform_model_uses_one_base_everywhere(self, registry: Registry):
        """smollm2 rotates every layer with rope_theta 1e5."""
        spec = registry.get("smollm2-135m-instruct")

        assert {100000.0} == {spec.rope_theta_for_layer(i) for i in range(30)}

    def test_layer_out_of_range_is_a_dimension_mismatch(self, registry: Registry):
        """Layer 30 of a 30-layer model does not exist."""
        with pytest.raises(DimensionMismatch):
            registry.get("smollm2-135m-instruct").rope_theta_for_layer(30)

    def test_closed_model_has_no_rope_base(self, registry: Registry):
        """An unpublished positional encoding has no base to report."""
        with pytest.raises(ModelNotSupported):
            registry.get("claude-3-opus").rope_theta_for_layer(0)


class TestValidators:
    def test_closed_model_cannot_claim_kv_export(self):
        """open_weights false with kv_export true is refused."""
        with pytest.raises(ValidationError, match="closed model cannot export"):
            ModelSpec.model_validate(open_entry("x", open_weights=False))

    def test_dimensions_without_a_published_source_are_refused(self):
        """Numbers with source kind unknown would be invented facts."""
        entry = open_entry("x", kv_export=False, kv_export_note="n/a")
        entry["source"] = {"kind": "unknown", "note": "never published"}

        with pytest.raises(ValidationError, match="without a published source"):
            ModelSpec.model_validate(entry)

    def test_kv_heads_must_divide_attention_heads(self):
        """8 query heads cannot share 3 kv heads evenly."""
        with pytest.raises(ValidationError, match="multiple of kv heads"):
            ModelSpec.model_validate(open_entry("x", num_kv_heads=3))

    def test_per_layer_list_must_cover_every_layer(self):
        """A layer_types list shorter than num_layers is refused."""
        with pytest.raises(ValidationError, match="layer_types has 2 entries"):
            ModelSpec.model_validate(open_entry("x", layer_types=["full_attention"] * 2))

    def test_rope_without_base_is_refused(self):
        """A rotary encoding must say its base and convention."""
        entry = open_entry("x")
        entry["positional"] = {"kind": "rope"}

        with pytest.raises(ValidationError, match="needs rope_theta"):
            ModelSpec.model_validate(entry)

    def test_entries_are_frozen(self, registry: Registry):
        """Shared specs cannot be mutated by one caller under another."""
        with pytest.raises(ValidationError):
            registry.get("llama-3-8b").num_layers = 1  # type: ignore[misc]  # frozen: must fail
