"""Every SDK call, blocking and asyncio, against a real CURVE mesh of worker processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from latentmas_mesh.errors import ModelNotSupported, QualityBelowThreshold, WMatrixNotFound
from latentmas_mesh.protocol.align import REPREFILL_FALLBACK
from latentmas_mesh.registry import load_registry
from tests.client.conftest import EXTRA_MODEL, FUNDS, MAPS_VERSION
from tests.workers_align.conftest import GEMMA, SMOL, kv_cache, paired_anchors

pytestmark = pytest.mark.slow
GEMMA_SHAPE = (18, 1, 5, 256)  # gemma-3-270m: 18 layers, 1 KV head, head_dim 256; 5 tokens


class TestExchanges:
    def test_generate_w_matrix_returns_the_standard_with_its_quality(self, client):
        """generate_w_matrix answers section 4.3.3's WMatrixStandard: a new version of the
        pair, the method asked for, the held-out quality of the fitted map."""
        standard = client.generate_w_matrix(SMOL, GEMMA, method="learned")

        assert (SMOL, GEMMA, "learned", 16) == (
            standard.source_model, standard.target_model, standard.method,
            standard.unified_dimension,
        )  # fmt: skip
        assert standard.quality_metrics.information_retention > 0.99
        assert standard.version.startswith("1.0.")

    def test_w_matrix_versions_name_what_a_request_can_pin(self, client):
        """After a generate, the pair lists that W-matrix and the stored KV maps with their
        held-out quality; generating the same again adds no version."""
        standard = client.generate_w_matrix(SMOL, GEMMA, method="orthogonal")
        again = client.generate_w_matrix(SMOL, GEMMA, method="orthogonal")

        listed = client.w_matrix_versions(SMOL, GEMMA)

        assert standard == again
        assert 1 == [m.version for m in listed.w_matrices].count(standard.version)
        assert [MAPS_VERSION] == [m.version for m in listed.kv_maps]
        assert listed.kv_maps[0].alignment_quality.information_retention == pytest.approx(0.8)

    def test_align_vector_maps_one_vector_and_a_batch(self, client, rng):
        """The v1 call, for a vector [24] and a batch [3, 24], lands in gemma's 32 dimensions
        with the map's measured quality."""
        client.generate_w_matrix(SMOL, GEMMA)
        x, _ = paired_anchors(rng)

        one = client.align_vector(x[0], SMOL, GEMMA)
        batch = client.align_vector(x[:3], SMOL, GEMMA)

        assert ((32,), (3, 32)) == (one.aligned_vector.shape, batch.aligned_vectors.shape)
        assert one.alignment_quality.information_retention > 0.99

    def test_align_kv_cache_takes_a_kv_cache_and_a_numpy_pair(self, client, rng):
        """The spec's call with a KVCache and with a (keys, values) pair: both come back in
        gemma-3's geometry with the stored maps' quality."""
        cache = kv_cache(SMOL, rng)

        from_message = client.align_kv_cache(cache, SMOL, GEMMA)
        from_pair = client.align_kv_cache((cache.keys, cache.values), SMOL, GEMMA)

        for reply in (from_message, from_pair):
            assert (GEMMA_SHAPE, GEMMA) == (
                reply.aligned_kv_cache.keys.shape,
                reply.aligned_kv_cache.source_model,
            )
            assert 0.8 == reply.alignment_quality.information_retention
        np.testing.assert_array_equal(
            from_message.aligned_kv_cache.keys, from_pair.aligned_kv_cache.keys
        )

    def test_exchange_memory_returns_kv_aligned_and_quality(self, client, rng):
        """EXCHANGE_MEMORY with a pinned W version: (kv_aligned, quality) of those maps."""
        reply = client.exchange_memory(
            kv_cache(SMOL, rng), SMOL, GEMMA, w_matrix_version=MAPS_VERSION, min_quality=0.8
        )

        assert GEMMA_SHAPE == reply.kv_aligned.keys.shape
        assert 0.8 == reply.quality.information_retention


class TestRefusals:
    def test_min_quality_above_the_maps_is_quality_below_threshold(self, client, rng):
        """Asked for 0.9 of maps measured at 0.8: the refusal carries both figures and names
        re-prefilling as the fallback."""
        with pytest.raises(QualityBelowThreshold) as raised:
            client.align_kv_cache(kv_cache(SMOL, rng), SMOL, GEMMA, min_quality=0.9)

        assert (0.9, 0.8, REPREFILL_FALLBACK) == (
            raised.value.details["min_quality"],
            raised.value.details["measured"]["information_retention"],
            raised.value.details["fallback"],
        )
        assert "Try different method" == raised.value.resolution

    def test_a_pair_without_maps_is_w_matrix_not_found_with_the_fallback(self, client, rng):
        """gemma-3 -> smollm2 has no KV maps: W_MATRIX_NOT_FOUND, "Use fallback method", and
        the fallback named."""
        with pytest.raises(WMatrixNotFound) as raised:
            client.exchange_memory(kv_cache(GEMMA, rng), GEMMA, SMOL)

        assert ("Use fallback method", REPREFILL_FALLBACK) == (
            raised.value.resolution,
            raised.value.details["fallback"],
        )

    def test_closed_models_are_not_supported(self, client, rng):
        """A cache cannot go to gpt-4, and the spec's own gpt-4 -> llama-3-70b generate is
        refused saying a closed model exports no activations."""
        with pytest.raises(ModelNotSupported):
            client.align_kv_cache(kv_cache(SMOL, rng), SMOL, "gpt-4")
        with pytest.raises(ModelNotSupported, match="closed model") as generate:
            client.generate_w_matrix("gpt-4", "llama-3-70b", method="orthogonal")

        assert False is generate.value.details["open_weights"]


class TestRegistryAndLedger:
    def test_models_are_the_workers_registry_with_the_operators_file(self, client, net):
        """models() pages through the whole registry the workers loaded (two pages), the
        operator's model included, in file order."""
        expected = load_registry(Path(net.mesh.env["LATENTMAS_REGISTRY_PATH"])).models()

        listed = client.models()

        assert [m.name for m in expected] == [m.name for m in listed]
        assert EXTRA_MODEL == listed[-1].name

    def test_model_by_alias_and_an_unknown_one(self, client):
        """model() resolves aliases on the mesh; a misspelt name is MODEL_NOT_SUPPORTED with
        suggestions."""
        found = client.model(f"ACME/{EXTRA_MODEL}")
        with pytest.raises(ModelNotSupported) as unknown:
            client.model("gemma-3-27m")

        assert (EXTRA_MODEL, 4) == (found.name, found.num_layers)
        assert GEMMA in unknown.value.details["suggestions"]

    def test_balance_and_statement_are_alices_sealed_answers(self, client, net):
        """balance() and statement() answer for the keys' agent, through the sealed ledger."""
        balance = client.balance()
        statement = client.statement()

        assert (f"agent:{net.identity('alice')}", FUNDS) == (
            balance.account,
            balance.balance_units,
        )
        assert [FUNDS] == [entry.amount_units for entry in statement.entries]
        assert net.identity("alice") == client.agent
