"""Closed-form pair maps: recovered on synthetic paired activations, applied to KVCache messages."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from latentmas_mesh.alignment import KVAligner, geometry_from_registry, proportional_layer_map
from latentmas_mesh.alignment.kv_fit import fit_kv_aligner, paired_rows
from latentmas_mesh.artifacts.activations import PassageActivations
from latentmas_mesh.errors import DimensionMismatch, ModelNotSupported
from latentmas_mesh.integrations.hf._exchange import align_kv_cache
from latentmas_mesh.protocol import KVCache, KVCacheMetadata

MODEL_A = "smollm2-135m-instruct"  # 30 layers, 3 kv heads, head_dim 64
MODEL_B = "gemma-3-270m"  # 18 layers, 1 kv head, head_dim 256


class SyntheticPair:
    """B's pre-RoPE keys and values are a fixed affine function of A's proportional layer."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.a = geometry_from_registry(MODEL_A)
        self.b = geometry_from_registry(MODEL_B)
        width_in = self.a.kv_heads * self.a.head_dim
        self.mixing = {
            kind: rng.normal(size=(self.b.layers, width_in, self.b.head_dim)) / 14.0
            for kind in ("keys", "values")
        }
        self.layers = proportional_layer_map(self.a.layers, self.b.layers)

    def passages(self, rng: np.random.Generator, count: int, tokens: int = 200):
        """`count` passages of `tokens` tokens, identically tokenised on both sides."""
        offsets = np.stack([np.arange(tokens), np.arange(1, tokens + 1)], axis=1)
        source, target = [], []
        for index in range(count):
            shape = (self.a.layers, self.a.kv_heads, tokens, self.a.head_dim)
            acts = {kind: rng.normal(size=shape) for kind in self.mixing}
            mapped = {}
            for kind, matrix in self.mixing.items():
                flat = (
                    acts[kind][self.layers].transpose(0, 2, 1, 3).reshape(self.b.layers, tokens, -1)
                )
                mapped[kind] = np.einsum("lnd,lde->lne", flat, matrix)[:, None] + 0.5
            pid = f"p{index}"
            ids = np.arange(tokens)
            source.append(
                PassageActivations(
                    pid, ids, offsets, acts["keys"], acts["keys"], acts["values"], None
                )
            )
            target.append(
                PassageActivations(
                    pid, ids, offsets, mapped["keys"], mapped["keys"], mapped["values"], None
                )
            )
        return source, target


def kv_message(model: str, keys: np.ndarray, values: np.ndarray) -> KVCache:
    seq = keys.shape[2]
    return KVCache(
        source_model=model,
        keys=keys.astype(np.float32),
        values=values.astype(np.float32),
        position_encodings=np.arange(1, seq + 1),
        metadata=KVCacheMetadata(
            sequence_length=seq, context_description="", token_count=seq,
            generated_at=datetime.now(UTC),
        ),
    )  # fmt: skip


class TestFit:
    def test_affine_target_is_recovered_on_held_out_passages(self, rng):
        """When B's rows are an affine function of A's window, validation R² is ~1 everywhere."""
        source, target = SyntheticPair(rng).passages(rng, 8)

        _, report = fit_kv_aligner(
            source, target, source_model=MODEL_A, target_model=MODEL_B, neighbour_layers=1
        )

        assert 18 == len(report.key_test_r2)
        assert min(report.key_test_r2 + report.value_test_r2) > 0.999

    def test_fitted_aligner_turns_a_cache_of_a_into_a_cache_of_b(self, rng):
        """Values of a fresh A cache come out as the known affine function, in B's geometry."""
        pair = SyntheticPair(rng)
        source, target = pair.passages(rng, 6)
        aligner, _ = fit_kv_aligner(
            source, target, source_model=MODEL_A, target_model=MODEL_B, neighbour_layers=0
        )
        fresh_source, fresh_target = pair.passages(rng, 1, tokens=40)

        aligned = align_kv_cache(
            kv_message(MODEL_A, fresh_source[0].keys, fresh_source[0].values), aligner
        )

        assert MODEL_B == aligned.source_model
        assert (18, 1, 40, 256) == aligned.values.shape
        np.testing.assert_allclose(fresh_target[0].values, aligned.values, atol=1e-3)

    def test_rows_pair_tokens_that_end_together(self, rng):
        """Paired rows are the tokens with shared character ends, one group per passage."""
        source, target = SyntheticPair(rng).passages(rng, 2, tokens=10)

        rows = paired_rows(source, target)

        assert (30, 3, 20, 64) == rows.source["keys"].shape
        assert [0] * 10 + [1] * 10 == rows.groups.tolist()


class TestHonestFigures:
    def test_test_passages_influence_neither_fit_nor_alpha(self, rng):
        """Noise planted in the test passages' targets collapses the measured figures and
        changes no choice; planted in a validation passage instead, it changes the choices."""
        pair = SyntheticPair(rng)
        source, target = pair.passages(rng, 10, tokens=80)
        _, clean = fit_kv_aligner(
            source, target, source_model=MODEL_A, target_model=MODEL_B, neighbour_layers=0
        )

        def planted(passage_ids):
            noisy = []
            for acts in target:
                if acts.passage_id not in passage_ids:
                    noisy.append(acts)
                    continue
                keys, values = (rng.normal(size=acts.values.shape) * 100 for _ in range(2))
                noisy.append(PassageActivations(
                    acts.passage_id, acts.token_ids, acts.offsets, keys, keys, values, None
                ))  # fmt: skip
            return fit_kv_aligner(
                source, noisy, source_model=MODEL_A, target_model=MODEL_B, neighbour_layers=0
            )[1]

        leak_free = planted(set(clean.test_passages))
        assert set(clean.test_passages).isdisjoint(clean.fit_passages + clean.validation_passages)
        assert min(clean.key_test_r2 + clean.value_test_r2) > 0.99
        assert max(leak_free.key_test_r2 + leak_free.value_test_r2) < 0.1
        assert clean.key_alphas == leak_free.key_alphas
        assert clean.value_alphas == leak_free.value_alphas

        into_validation = planted(set(clean.validation_passages))
        assert into_validation.key_alphas != clean.key_alphas


class TestErrors:
    def test_cache_of_another_model_is_a_dimension_mismatch(self):
        """An aligner from A refuses a cache that names B as its source."""
        aligner = KVAligner.identity(geometry_from_registry(MODEL_A))
        foreign = kv_message(MODEL_B, np.zeros((18, 1, 4, 256)), np.zeros((18, 1, 4, 256)))

        with pytest.raises(DimensionMismatch):
            align_kv_cache(foreign, aligner)

    def test_cache_of_wrong_shape_is_a_dimension_mismatch(self):
        """A cache naming A but shaped otherwise is refused before any arithmetic."""
        aligner = KVAligner.identity(geometry_from_registry(MODEL_A))
        wrong = kv_message(MODEL_A, np.zeros((30, 3, 4, 32)), np.zeros((30, 3, 4, 32)))

        with pytest.raises(DimensionMismatch):
            align_kv_cache(wrong, aligner)

    def test_closed_model_cannot_be_fitted(self, rng):
        """A closed model has no cache geometry: ModelNotSupported."""
        source, target = SyntheticPair(rng).passages(rng, 2, tokens=10)

        with pytest.raises(ModelNotSupported):
            fit_kv_aligner(source, target, source_model="gpt-4", target_model=MODEL_B)
