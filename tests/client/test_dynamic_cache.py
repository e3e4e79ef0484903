"""A transformers DynamicCache as an exchange's input, converted by the hf integration."""

from __future__ import annotations

import numpy as np
import pytest

from latentmas_mesh.client import calls
from latentmas_mesh.errors import DimensionMismatch, InvalidRequest
from tests.workers_align.conftest import GEMMA, SMOL

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def dynamic_cache(layers: int, shape: tuple[int, ...], dtype, seqs=None):
    """A DynamicCache with random keys and values [batch, kv_heads, seq, head_dim] per layer
    (`seqs[i]` overrides layer i's seq)."""
    generator = torch.Generator().manual_seed(7)
    cache = transformers.DynamicCache()
    for layer in range(layers):
        size = list(shape)
        if seqs is not None:
            size[2] = seqs[layer]
        keys = torch.randn(size, generator=generator).to(dtype)
        cache.update(keys, torch.randn(size, generator=generator).to(dtype), layer)
    return cache


class TestConversion:
    @pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
    def test_the_cache_arrives_bit_for_bit_in_the_canonical_layout(self, dtype):
        """A 30-layer cache of smollm2's shape becomes keys/values [30, 3, 6, 64] of the same
        dtype and bits, at positions 0..5."""
        cache = dynamic_cache(30, (1, 3, 6, 64), getattr(torch, dtype))

        kv = calls.as_kv_cache(cache, SMOL)

        expected = torch.stack([layer.keys[0] for layer in cache.layers])
        assert ((30, 3, 6, 64), dtype, SMOL) == (kv.keys.shape, kv.keys.dtype.name, kv.source_model)
        assert [0, 1, 2, 3, 4, 5] == kv.position_encodings.tolist()
        np.testing.assert_array_equal(
            expected.view(torch.int16).numpy() if dtype == "bfloat16" else expected.numpy(),
            kv.keys.view(np.int16) if dtype == "bfloat16" else kv.keys,
        )

    def test_layers_of_different_lengths_are_a_dimension_mismatch(self):
        """A sliding-window layer that dropped positions cannot be exported as one cache."""
        cache = dynamic_cache(2, (1, 1, 6, 8), torch.float32, seqs=[6, 4])

        with pytest.raises(DimensionMismatch):
            calls.as_kv_cache(cache, SMOL)

    def test_a_batch_of_two_is_refused(self):
        """A KV cache message holds one sequence."""
        with pytest.raises(InvalidRequest, match="batch of 2"):
            calls.as_kv_cache(dynamic_cache(2, (2, 1, 6, 8), torch.float32), SMOL)

    def test_the_exchange_call_takes_the_dynamic_cache(self):
        """align_kv_cache(DynamicCache, ...) sends the converted cache under the named source."""
        call = calls.align_kv_cache(
            dynamic_cache(30, (1, 3, 4, 64), torch.float32), SMOL, GEMMA,
            w_matrix_version=None, min_quality=None, reservation_id=None,
        )  # fmt: skip

        assert (SMOL, (30, 3, 4, 64)) == (
            call.message.kv_cache.source_model,
            call.message.kv_cache.keys.shape,
        )
